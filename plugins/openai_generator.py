"""The ``openai`` generator: any OpenAI-compatible HTTP server (vLLM, SGLang, TGI, llama.cpp's
server, OpenAI, Azure OpenAI...).

``--generator openai:MODEL --generator-arg base_url=http://host:8000/v1``. Requests go out
``concurrency`` at a time, under client-side requests-per-minute and tokens-per-minute limits; 429,
5xx, timeouts and connection errors are retried with exponential backoff and full jitter, waiting at
least what a ``Retry-After`` header asks. When the server stays down after the retries the run stops
with one line naming the URL; every answer received so far is kept in the response cache (and the
run store keeps every finished batch), so a resume only sends what is missing.

**Response cache.** Answers are stored in SQLite under ``$LAMP_HOME/openai-cache.sqlite``, keyed by a
SHA-256 of the endpoint URL, the model and the full request body (prompt and decoding parameters).
A rerun, a resumed run or another matrix with the same requests sends nothing. The API key is
never part of the key, the cache, ``config.json``, events or logs.

**Usage.** Prompt and completion tokens come from the server's ``usage`` of each answer (also for
cached answers: they are what the answer cost); :meth:`OpenAIGenerator.usage` adds the requests
sent, retries and cache hits, and the run writes them into ``timing.json``.

**Prompts.** The chat endpoint (default) sends the prompt as the user turn and the server applies
the model's chat template; ``endpoint=completions`` sends the raw prompt. The prompt text is cut
to ``max_input_tokens`` with the tokenizer of ``tokenizer=`` (alias, hub id or folder; default:
the model itself when it names a local folder, alias or cached hub model, else a whitespace
count). Soft-token prompts (PPlug) and FiD cannot go over this API: use ``vllm`` or ``hf``.

**Label scoring** (``--decode labels``) uses the completions endpoint with ``echo`` and
``logprobs`` on token-id prompts built with the local tokenizer and the chat template (vLLM and
compatible servers); servers that return no prompt logprobs give a one-line error.

Arguments (``--generator-arg KEY=VALUE``):

====================  =====================================================================
``base_url``          the API root, e.g. ``http://127.0.0.1:8000/v1`` (default:
                      ``$OPENAI_BASE_URL``, else ``https://api.openai.com/v1``)
``api_key_env``       name of the environment variable holding the key (default
                      ``OPENAI_API_KEY``; no key is sent when it is unset)
``endpoint``          ``chat`` (default) or ``completions``
``concurrency``       requests in flight at once (default 8)
``rpm`` / ``tpm``     requests / tokens per minute, client side, paced evenly (default 0: no
                      limit); a request's tokens are the prompt's count plus ``max_tokens``
``timeout``           seconds per request (default 60)
``max_retries``       retries per request before giving up (default 6)
``backoff``           first backoff in seconds (default 1; doubles per retry, capped at 60)
``cache``             ``true`` (default) / ``false`` (bypass the response cache)
``max_new_tokens``    budget when a request sets none (default 128)
``max_input_tokens``  prompt-text budget (default 256)
``tokenizer``         tokenizer for budgets and label scoring (see above)
====================  =====================================================================

Any other key (``temperature``, ``top_p``, ``seed``, ``stop``...) goes into every request body;
``temperature`` defaults to 0 (greedy), as the other generators decode.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from lamp_harness.contracts import DecodeMode, Generation, GenerationRequest, Generator, RunContext
from lamp_harness.errors import LampError, lamp_error
from lamp_harness.models import preset_generator_args
from lamp_harness.options import bool_arg, float_arg, int_arg
from lamp_harness.tokens import HFTokenCounter, WhitespaceTokenCounter

OWNER = "generator 'openai'"
KNOWN_ARGS = ("base_url", "api_key_env", "endpoint", "concurrency", "rpm", "tpm", "timeout", "max_retries",
              "backoff", "cache", "max_new_tokens", "max_input_tokens", "tokenizer", "num_beams",
              "batch_size")
MAX_BACKOFF = 60.0
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


def _value(text: Any) -> Any:
    """A pass-through argument as JSON when it parses (numbers, booleans, lists), else text."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


# ---------------------------------------------------------------------------------------------
# Response cache
# ---------------------------------------------------------------------------------------------


class ResponseCache:
    """Answers of an OpenAI-compatible server in SQLite, keyed by request hash (thread-safe)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, body TEXT NOT NULL, "
                         "created REAL NOT NULL)")
        self._db.commit()

    @staticmethod
    def key(url: str, body: Mapping[str, Any]) -> str:
        """SHA-256 of the endpoint URL and the request body (model, prompt, decoding parameters)."""
        return hashlib.sha256(json.dumps({"url": url, "body": body}, sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored answer under ``key``, or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT body FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return dict(json.loads(row[0]))
        except ValueError:  # a torn or foreign row: ask the server again
            return None

    def put(self, key: str, body: Mapping[str, Any]) -> None:
        """Store an answer (committed at once, so a crash keeps every answer received). A full
        disk is an ``OSError`` naming the cache file (the CLI's one line)."""
        with self._lock:
            try:
                self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)",
                                 (key, json.dumps(body), time.time()))
                self._db.commit()
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc) and "disk I/O" not in str(exc):
                    raise
                raise OSError(errno.ENOSPC, f"cannot store an answer ({exc})", str(self.path)) from exc


# ---------------------------------------------------------------------------------------------
# Flow control
# ---------------------------------------------------------------------------------------------


class RateLimiter:
    """Client-side requests-per-minute and tokens-per-minute limits, as a pacing schedule.

    Every request (retries included) reserves a start time: at least ``60 / rpm`` seconds after the
    previous request's, and, for tokens, ``60 * tokens / tpm`` seconds after the previous request's
    (its token cost spread over the minute). No 60-second window can then hold more than ``rpm``
    requests or ``tpm`` tokens (plus one request), with no burst that a server's own per-minute
    limiter would refuse. A limit of 0 is no limit.
    """

    def __init__(self, rpm: int = 0, tpm: int = 0, clock: Any = time.monotonic, sleep: Any = time.sleep) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.clock = clock
        self.sleep = sleep
        self._request_free = float("-inf")
        self._tokens_free = float("-inf")
        self._lock = threading.Lock()

    def acquire(self, tokens: int) -> None:
        """Block until this request's reserved start time."""
        if not self.rpm and not self.tpm:
            return
        with self._lock:
            now = self.clock()
            start = max(now, self._request_free, self._tokens_free)
            if self.rpm:
                self._request_free = start + 60.0 / self.rpm
            if self.tpm:
                self._tokens_free = start + 60.0 * max(tokens, 1) / self.tpm
        if start > now:
            self.sleep(start - now)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a ``Retry-After`` (or ``retry-after-ms``) header asks to wait, if any."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------


class OpenAIGenerator(Generator):
    """A model behind an OpenAI-compatible HTTP API (see module doc)."""

    name = "openai"

    def __init__(self, context: RunContext, model: str | None = None, *, batch_size: Any = None,
                 num_beams: Any = None, max_input_tokens: Any = None, max_new_tokens: Any = None,
                 **args: Any) -> None:
        try:
            import httpx
        except ImportError:
            raise lamp_error("the openai generator needs httpx", where=OWNER,
                             fix='Install it: pip install "lamp-harness[openai]".') from None
        self.context = context
        run_level = {k: v for k, v in (("batch_size", batch_size), ("num_beams", num_beams),
                                       ("max_input_tokens", max_input_tokens), ("max_new_tokens", max_new_tokens))
                     if v is not None}
        args = {**preset_generator_args(context.preset), **run_level, **args}
        known = {k: v for k, v in args.items() if k in KNOWN_ARGS}
        self.body_args = {k: _value(v) for k, v in args.items() if k not in KNOWN_ARGS and k != "model"}
        self.body_args.setdefault("temperature", 0)
        self.base_url = str(known.get("base_url") or os.environ.get("OPENAI_BASE_URL")
                            or "https://api.openai.com/v1").rstrip("/")
        self.api_key_env = str(known.get("api_key_env", "OPENAI_API_KEY"))
        self.endpoint = str(known.get("endpoint", "chat")).strip().lower()
        if self.endpoint not in ("chat", "completions"):
            raise lamp_error(f"argument endpoint={self.endpoint!r} is not chat or completions", where=OWNER,
                             fix="Pass endpoint=chat (chat template on the server) or endpoint=completions.")
        self.concurrency = int_arg(known, "concurrency", 8, OWNER, minimum=1)
        self.batch_size = int_arg(known, "batch_size", max(16, 4 * self.concurrency), OWNER, minimum=1)
        self.limiter = RateLimiter(int_arg(known, "rpm", 0, OWNER), int_arg(known, "tpm", 0, OWNER))
        self.timeout = float_arg(known, "timeout", 60.0, OWNER)
        self.max_retries = int_arg(known, "max_retries", 6, OWNER)
        self.backoff = float_arg(known, "backoff", 1.0, OWNER)
        self.use_cache = bool_arg(known, "cache", True, OWNER)
        self.max_new_tokens = int_arg(known, "max_new_tokens", 128, OWNER, minimum=1)
        self._max_input_tokens = int_arg(known, "max_input_tokens", 256, OWNER, minimum=1)
        if int_arg(known, "num_beams", 1, OWNER, minimum=1) > 1:
            raise lamp_error("beam search is not part of the OpenAI API", where=OWNER,
                             fix="Drop num_beams (the offline preset's greedy decoding is used), or use "
                                 "--generator vllm / hf for beams.")
        self.model = model or self._served_model(httpx)
        self.tokenizer = self._load_tokenizer(known.get("tokenizer"))
        self._counter = HFTokenCounter(self.tokenizer) if self.tokenizer is not None else WhitespaceTokenCounter()
        self.cache = ResponseCache(context.lamp_home / "openai-cache.sqlite") if self.use_cache else None
        self.client = httpx.Client(timeout=self.timeout, headers=self._headers(),
                                   limits=httpx.Limits(max_connections=self.concurrency))
        self._lock = threading.Lock()
        self._usage = {"requests_sent": 0, "retries": 0, "cache_hits": 0, "prompt_tokens": 0,
                       "completion_tokens": 0}

    # -- setup ----------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env, "")
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
            headers["api-key"] = key  # Azure OpenAI reads this header instead
        return headers

    def _served_model(self, httpx: Any) -> str:
        """The only model the server serves, when ``openai`` is given without one."""
        url = f"{self.base_url}/models"
        try:
            response = httpx.get(url, headers=self._headers(), timeout=self.timeout)
            response.raise_for_status()
            models = [m["id"] for m in response.json().get("data", [])]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise lamp_error(f"no model given and {url} did not list the served models "
                             f"({type(exc).__name__})", where=OWNER,
                             fix="Name the model: --generator openai:MODEL.") from None
        if len(models) != 1:
            raise lamp_error(f"no model given and {url} serves {len(models)} models ({', '.join(models)})",
                             where=OWNER, fix="Name the model: --generator openai:MODEL.")
        return models[0]

    def _load_tokenizer(self, spec: Any) -> Any:
        from lamp_harness.models import pretrained_kwargs, resolve_model

        candidates = [str(spec)] if spec else [self.model]
        for name in candidates:
            try:
                resolved = resolve_model("generator", self.context, name)
                from transformers import AutoTokenizer

                return AutoTokenizer.from_pretrained(resolved.path, **pretrained_kwargs(resolved))
            except (LampError, OSError, ValueError):
                if spec:
                    raise lamp_error(f"cannot load the tokenizer {spec!r}", where=OWNER,
                                     fix="Give an alias, hub id or local folder with a tokenizer.") from None
        self.context.note(f"generator 'openai': no local tokenizer for {self.model!r}; prompt budgets "
                          "count whitespace words (pass tokenizer=... for exact budgets)")
        return None

    # -- contract -------------------------------------------------------------------------------
    @property
    def tokens(self) -> Any:
        """The local tokenizer as a token counter (a whitespace counter when there is none)."""
        return self._counter

    @property
    def max_input_tokens(self) -> int:
        """The prompt budget (``max_input_tokens`` argument, default 256)."""
        return self._max_input_tokens

    def describe(self) -> Mapping[str, Any]:
        """Model, server, endpoint, flow control and decoding settings (never the API key)."""
        return {
            "name": self.name, "model": self.model, "base_url": self.base_url, "endpoint": self.endpoint,
            "api_key_env": self.api_key_env, "concurrency": self.concurrency, "rpm": self.limiter.rpm,
            "tpm": self.limiter.tpm, "max_input_tokens": self.max_input_tokens,
            "max_new_tokens": self.max_new_tokens, "request_args": dict(self.body_args),
            "tokenizer": getattr(self.tokenizer, "name_or_path", None),
        }

    def usage(self) -> Mapping[str, int]:
        """Counters since this generator was created: requests sent (retries included), retries,
        cache hits, and the prompt and completion tokens of every answer used."""
        with self._lock:
            return dict(self._usage)

    def generate(self, requests: Sequence[GenerationRequest], *,
                 decode: DecodeMode = "generate") -> list[Generation]:
        """One generation per request, in order, ``concurrency`` requests in flight."""
        for request in requests:
            if request.is_fusion or request.has_soft_tokens:
                what = "fusion-in-decoder" if request.is_fusion else "soft-token (PPlug)"
                raise lamp_error(f"{what} requests cannot be sent over the OpenAI API (model {self.model!r})",
                                 where=OWNER, fix="Use --generator vllm or --generator hf for this personalizer.")
        if decode == "labels" and any(r.choices for r in requests):
            return self._labels(requests)
        jobs = [self._job(r) for r in requests]
        with ThreadPoolExecutor(self.concurrency) as pool:
            answers = list(pool.map(lambda job: self._call(*job), jobs))
        return [self._generation(a) for a in answers]

    # -- requests -------------------------------------------------------------------------------
    def _text(self, request: GenerationRequest) -> str:
        text = request.prompt
        if self._counter.count(text) > self.max_input_tokens:
            text = self._counter.truncate(text, self.max_input_tokens)
        return "".join(s for s in request.prefix if isinstance(s, str)) + text

    def _job(self, request: GenerationRequest) -> tuple[str, dict[str, Any], int]:
        budget = request.max_new_tokens or self.max_new_tokens
        text = self._text(request)
        body: dict[str, Any] = {"model": self.model, "max_tokens": budget, **self.body_args}
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": text}]
            path = "/chat/completions"
        else:
            body["prompt"] = text
            path = "/completions"
        return path, body, self._counter.count(text) + budget

    def _generation(self, answer: Mapping[str, Any]) -> Generation:
        choice = answer["choices"][0]
        text = choice["message"].get("content") or "" if "message" in choice else choice.get("text", "")
        usage = answer.get("usage") or {}
        return Generation(text=str(text).strip(), prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          generated_tokens=int(usage.get("completion_tokens") or 0))

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._usage[key] += n

    def _call(self, path: str, body: dict[str, Any], tokens: int) -> dict[str, Any]:
        """One answer: from the cache, or from the server with rate limits and retries."""
        import httpx

        url = self.base_url + path
        key = ResponseCache.key(url, body)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                self._count("cache_hits")
                self._add_usage(cached)
                return cached
        last = ""
        for attempt in range(self.max_retries + 1):
            self.limiter.acquire(tokens)
            self._count("requests_sent")
            wait = None
            try:
                response = self.client.post(url, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = type(exc).__name__
            else:
                if response.status_code == 200:
                    try:
                        answer = response.json()
                        answer["choices"][0]
                    except (ValueError, KeyError, IndexError, TypeError):
                        last = "a malformed answer"
                    else:
                        if self.cache is not None:
                            self.cache.put(key, answer)
                        self._add_usage(answer)
                        return answer
                elif response.status_code not in RETRY_STATUS:
                    raise lamp_error(f"{url} answered HTTP {response.status_code}: {_detail(response)}",
                                     where=OWNER, fix=_fix_for(response.status_code, self.api_key_env))
                else:
                    last = f"HTTP {response.status_code}"
                    wait = retry_after(response.headers)
            if attempt == self.max_retries:
                break
            self._count("retries")
            backoff = random.uniform(0, min(MAX_BACKOFF, self.backoff * 2 ** attempt))
            time.sleep(max(backoff, wait or 0.0))
        raise lamp_error(f"{url} did not answer after {self.max_retries + 1} attempts (last: {last}); "
                         "finished predictions are kept", where=OWNER,
                         fix="Check that the server is up, then rerun the same command to resume.")

    def _add_usage(self, answer: Mapping[str, Any]) -> None:
        usage = answer.get("usage") or {}
        with self._lock:
            self._usage["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
            self._usage["completion_tokens"] += int(usage.get("completion_tokens") or 0)

    # -- label scoring --------------------------------------------------------------------------
    def _labels(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Label scoring from echoed prompt logprobs on the completions endpoint: each choice's
        tokens (and end-of-sequence) after the chat-formatted prompt, summed."""
        if self.tokenizer is None:
            raise lamp_error(f"label scoring needs the model's tokenizer and none was found for {self.model!r}",
                             where=OWNER, fix="Pass tokenizer=ALIAS_OR_FOLDER, or --decode generate.")
        jobs, spans = [], []
        for request in requests:
            prompt = self._prompt_ids(request)
            for choice in request.choices:
                target = self._ids(choice) + [self.tokenizer.eos_token_id]
                body = {"model": self.model, "prompt": prompt + target, "max_tokens": 1, "echo": True,
                        "logprobs": 1, "temperature": 0}  # echo + logprobs >= 1: prompt logprobs
                jobs.append(("/completions", body, len(prompt) + len(target) + 1))
                spans.append((len(prompt), len(target)))
        with ThreadPoolExecutor(self.concurrency) as pool:
            answers = list(pool.map(lambda job: self._call(*job), jobs))
        results, pos = [], 0
        for request in requests:
            if not request.choices:
                results.extend(self.generate([request]))
                continue
            scores = []
            for _ in request.choices:
                start, n = spans[pos]
                logprobs = (answers[pos]["choices"][0].get("logprobs") or {}).get("token_logprobs")
                if not logprobs or len(logprobs) < start + n:
                    raise lamp_error(f"{self.base_url} returned no prompt logprobs for label scoring",
                                     where=OWNER, fix="Use --decode generate with this server, or a "
                                                      "server that supports echo with logprobs (vLLM).")
                scores.append(float(sum(logprobs[start:start + n])))
                pos += 1
            best = max(range(len(scores)), key=lambda j: (scores[j], -j))
            label = request.choices[best]
            results.append(Generation(text=label, prompt_tokens=spans[pos - 1][0],
                                      generated_tokens=len(self._ids(label)) + 1))
        return results

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        text = self._text(request)
        if getattr(self.tokenizer, "chat_template", None):
            return list(self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=True,
                                                           add_generation_prompt=True, return_dict=False))
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])


def _detail(response: Any) -> str:
    try:
        payload = response.json()
        message = payload.get("error", payload)
        message = message.get("message", message) if isinstance(message, dict) else message
    except ValueError:
        message = response.text
    return " ".join(str(message).split())[:200]


def _fix_for(status: int, key_env: str) -> str:
    if status in (401, 403):
        return f"Check the API key in ${key_env} (api_key_env=NAME picks another variable)."
    if status == 404:
        return "Check base_url (it usually ends in /v1), the model name and the endpoint argument."
    return "Check the request arguments (--generator-arg)."
