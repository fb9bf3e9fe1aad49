"""The ``openai`` generator: any OpenAI-compatible HTTP server (vLLM, SGLang, TGI, llama.cpp's
server, OpenAI, Azure OpenAI...).

``--generator openai:MODEL --generator-arg base_url=http://host:8000/v1``. Requests go out
``concurrency`` at a time, under client-side requests-per-minute and tokens-per-minute limits; 429,
5xx, timeouts, connection errors and malformed answers are retried with exponential backoff and
full jitter, waiting at least what a ``Retry-After`` header asks (up to ``max_retry_wait``). When
the server stays down after the retries the run stops with one line naming the URL; every answer
received so far is kept in the response cache (and the run store keeps every finished batch), so a
resume only sends what is missing.

**The API key** is read from the environment variable named by ``api_key_env`` (default
``OPENAI_API_KEY``) and sent as the ``Authorization: Bearer`` header (and Azure's ``api-key``). It
is never an argument: ``--generator-arg api_key=...`` (any secret name, see
:mod:`lamp_harness.base.secrets`) and a ``base_url`` with ``user:password@`` are refused in one line, so
the key cannot reach ``config.json``, cell ids, labels, events or reporters; a server echoing the
header back in an error is masked in the line printed. The response cache key hashes the URL and
the request body, never the key.

**Answers are checked before use.** An answer must be a JSON object with a first choice that is an
object holding a text (``message.content`` for ``chat``, ``text`` for ``completions``), no
``error`` object, and a ``usage`` whose token counts are finite non-negative numbers. Anything else
(``message: null``, ``content: null`` beside an ``error``, a string choice, ``usage`` of
``"NaN"``...) is retried like a server error and never cached or scored; a cached answer that fails
the check is asked again.

**Response cache.** Answers are stored in SQLite under ``$LAMP_HOME/openai-cache.sqlite``, keyed by a
SHA-256 of the endpoint URL, the model and the full request body (prompt and decoding parameters).
A rerun, a resumed run or another matrix with the same requests sends nothing; ``lamp run --force``
asks again (and stores the new answers). The file is verified when opened (its schema and SQLite's
``quick_check``); a damaged one (garbage, truncated, another schema, a folder in its place) is moved
aside to ``openai-cache.sqlite.damaged-TIME`` with a warning and rebuilt empty. Opening takes a
file lock (``openai-cache.sqlite.lock``), so concurrent runs never rebuild it twice; SQLite's own
locking (WAL) serialises their writes.

**Time bounds.** ``timeout`` bounds each network wait (connect, each read, each write); ``deadline``
bounds a whole request (connect + headers + body), so a server that drips one byte a second times
out too. A ``Retry-After`` (seconds, HTTP date, or ``retry-after-ms``) longer than ``max_retry_wait``
(default 300 s) stops the run at once in one line (finished work is kept); a wait over 5 s is
announced on stderr.

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

Arguments (``--generator-arg KEY=VALUE``), every one checked before any request:

====================  =====================================================================
``base_url``          the API root, ``http(s)://host[:port]/path``, e.g.
                      ``http://127.0.0.1:8000/v1`` (default: ``$OPENAI_BASE_URL``, else
                      ``https://api.openai.com/v1``); no ``user:password@``
``api_key_env``       name of the environment variable holding the key (default
                      ``OPENAI_API_KEY``; no key is sent when it is unset)
``endpoint``          ``chat`` (default) or ``completions``
``concurrency``       requests in flight at once (default 8, at least 1)
``rpm`` / ``tpm``     requests / tokens per minute, client side, paced evenly (default 0: no
                      limit); a request's tokens are the prompt's count plus ``max_tokens``
``timeout``           seconds of each network wait: connect, read, write (default 60, > 0)
``deadline``          seconds of a whole request, connect to last byte (default 600, > 0)
``max_retries``       retries per request before giving up (default 6, >= 0)
``backoff``           first backoff in seconds (default 1, >= 0; doubles per retry, capped at 60)
``max_retry_wait``    the longest ``Retry-After`` honoured, in seconds (default 300, >= 0)
``cache``             ``true`` (default) / ``false`` (bypass the response cache)
``max_new_tokens``    budget when a request sets none (default 128)
``max_input_tokens``  prompt-text budget (default 256)
``tokenizer``         tokenizer for budgets and label scoring (see above)
====================  =====================================================================

Any other key (``temperature``, ``top_p``, ``seed``, ``stop``...) goes into every request body
(numbers must be finite); ``temperature`` defaults to 0 (greedy), as the other generators decode.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from lamp_harness import (
    MASK,
    DecodeMode,
    Generation,
    GenerationRequest,
    Generator,
    HFTokenCounter,
    LampError,
    Options,
    RunContext,
    WhitespaceTokenCounter,
    check_args,
    lamp_error,
    option,
    preset_generator_args,
    redact,
    redact_text,
    remember,
    warn,
)

OWNER = "generator 'openai'"
MAX_BACKOFF = 60.0
"""The longest backoff between two attempts (seconds), whatever ``backoff`` and the attempt."""
MAX_RETRY_WAIT = 300.0
"""Default of ``max_retry_wait``: the longest ``Retry-After`` honoured (seconds)."""
ANNOUNCE_WAIT = 5.0
"""Waits longer than this (seconds) are announced on stderr."""


@dataclass(frozen=True)
class OpenAIOptions(Options):
    """The ``openai`` generator's options (``--generator-arg``; ``--batch-size``, ``--num-beams``
    and ``--max-input-tokens`` set the options of the same names)."""

    passthrough: ClassVar[str] = "any other KEY=VALUE goes into each request's body (temperature, top_p, seed...)"

    base_url: str | None = option(
        None, "the server's URL, e.g. http://127.0.0.1:8000/v1 (unset: $OPENAI_BASE_URL, else OpenAI)"
    )
    api_key_env: str = option("OPENAI_API_KEY", "the environment variable holding the key (never the key itself)")
    endpoint: str = option(
        "chat",
        "chat (the chat template applied by the server) or completions (plain prompts)",
        choices=("chat", "completions"),
    )
    concurrency: int = option(8, "requests in flight at once", minimum=1)
    batch_size: int | None = option(None, "prompts handed to the pool at once (unset: max(16, 4 x concurrency))", minimum=1)
    rpm: int = option(0, "requests per minute at most (0: no limit)", minimum=0)
    tpm: int = option(0, "tokens per minute at most (0: no limit)", minimum=0)
    timeout: float = option(60.0, "seconds per request", above=0)
    deadline: float = option(600.0, "seconds per request, retries included", above=0)
    max_retries: int = option(6, "retries of a failed request", minimum=0)
    backoff: float = option(1.0, "first wait between retries in seconds (doubles each time)", minimum=0)
    max_retry_wait: float = option(MAX_RETRY_WAIT, "the longest Retry-After honoured, in seconds", minimum=0)
    cache: bool = option(True, "read and write the response cache ($LAMP_HOME/openai-cache.sqlite)")
    max_new_tokens: int = option(128, "new tokens per answer", minimum=1)
    max_input_tokens: int = option(256, "the prompt budget L in tokens", minimum=1)
    tokenizer: str | None = option(None, "a tokenizer to count prompt tokens with (unset: the model's, else whitespace)")
    num_beams: int = option(1, "beam width: only 1, the OpenAI API has no beam search", minimum=1)

    def validate(self, owner: str) -> None:
        if self.num_beams > 1:
            raise lamp_error(
                "beam search is not part of the OpenAI API",
                where=owner,
                fix="Drop num_beams (the offline preset's greedy decoding is used), or use --generator vllm / hf for beams.",
            )


KNOWN_ARGS = OpenAIOptions.names()
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _value(text: Any) -> Any:
    """A pass-through argument as JSON when it parses (numbers, booleans, lists), else text."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _finite(value: Any) -> bool:
    """Whether every number in ``value`` (nested lists and objects included) is finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def check_base_url(url: str, source: str) -> str:
    """``url`` without a trailing slash when it is an ``http(s)://host[:port][/path]`` URL without
    credentials; else a one-line error naming ``source`` (the argument or the variable)."""
    url = str(url).strip().rstrip("/")
    fix = "Pass base_url=http://HOST:PORT/v1 (the API root of an OpenAI-compatible server)."
    # What an error repeats: credentials masked, and no query or fragment (where keys travel too:
    # "?key=...", "#token").
    shown = re.sub(r"[?#].*", lambda m: m.group(0)[0] + MASK, redact_text(url), count=1)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError:
        raise lamp_error(f"{source}={shown!r} is not a usable URL (bad port)", where=OWNER, fix=fix) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise lamp_error(f"{source}={shown!r} is not an http(s) URL with a host", where=OWNER, fix=fix)
    if parts.username is not None or parts.password is not None:
        raise lamp_error(
            f"{source}={shown!r} carries credentials inside the URL, which would be recorded with it",
            where=OWNER,
            fix="Remove 'user:password@' from the URL and put the key in an environment variable: "
            "$OPENAI_API_KEY, or api_key_env=NAME (sent as the Authorization header).",
        )
    if parts.query or parts.fragment:
        raise lamp_error(
            f"{source}={shown!r} has a query or fragment (not recorded: keys travel there too)", where=OWNER, fix=fix
        )
    return url


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------


class MalformedAnswer(ValueError):
    """An answer with HTTP 200 that cannot be used (retried like a server error, never cached)."""


@dataclass(frozen=True)
class Answer:
    """A checked answer: its text, the echoed prompt's per-token logprobs (label scoring; ``None``
    when the server sent none) and the tokens it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    token_logprobs: tuple[float | None, ...] | None = None


def _count(usage: Mapping[str, Any], name: str) -> int:
    value = usage.get(name)
    if value is None:
        return 0
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or value != int(value)
    ):
        raise MalformedAnswer(f"usage.{name} is {json.dumps(value)[:40]}, not a token count")
    return int(value)


def check_answer(answer: Any, chat: bool) -> Answer:
    """The usable content of a ``/chat/completions`` (``chat``) or ``/completions`` answer, or
    :class:`MalformedAnswer` saying what is wrong with it."""
    if not isinstance(answer, Mapping):
        raise MalformedAnswer(f"the answer is a JSON {type(answer).__name__}, not an object")
    if answer.get("error"):
        raise MalformedAnswer(f"the answer carries an error ({_error_text(answer['error'])})")
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedAnswer("the answer has no choices")
    choice = choices[0]
    if not isinstance(choice, Mapping):
        raise MalformedAnswer(f"choices[0] is a JSON {type(choice).__name__}, not an object")
    if choice.get("error"):
        raise MalformedAnswer(f"choices[0] carries an error ({_error_text(choice['error'])})")
    if chat:
        message = choice.get("message")
        if not isinstance(message, Mapping):
            raise MalformedAnswer(
                "choices[0].message is "
                + (
                    "missing"
                    if message is None and "message" not in choice
                    else f"{json.dumps(message)[:40]}, not an object"
                )
            )
        text = message.get("content")
        where = "choices[0].message.content"
    else:
        text = choice.get("text")
        where = "choices[0].text"
    if not isinstance(text, str):
        raise MalformedAnswer(f"{where} is {'missing' if text is None else 'not text'}")
    usage = answer.get("usage")
    if usage is not None and not isinstance(usage, Mapping):
        raise MalformedAnswer("usage is not an object")
    usage = usage or {}
    logprobs = choice.get("logprobs")
    token_logprobs = None
    if logprobs is not None:
        if not isinstance(logprobs, Mapping):
            raise MalformedAnswer("choices[0].logprobs is not an object")
        values = logprobs.get("token_logprobs")
        if values is not None:
            if not isinstance(values, list) or not all(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)) for v in values
            ):
                raise MalformedAnswer("choices[0].logprobs.token_logprobs is not a list of finite numbers")
            token_logprobs = tuple(None if v is None else float(v) for v in values)
    return Answer(text, _count(usage, "prompt_tokens"), _count(usage, "completion_tokens"), token_logprobs)


def _error_text(error: Any) -> str:
    message = error.get("message", error) if isinstance(error, Mapping) else error
    return " ".join(redact_text(str(message)).split())[:120]


# ---------------------------------------------------------------------------------------------
# Response cache
# ---------------------------------------------------------------------------------------------

_SCHEMA = [("key", "TEXT"), ("body", "TEXT"), ("created", "REAL")]


class _Damaged(Exception):
    """The cache file cannot be used as it is (the reason is the message)."""


class ResponseCache:
    """Answers of an OpenAI-compatible server in SQLite, keyed by request hash (thread-safe).

    Verified when opened (schema and ``PRAGMA quick_check``), under a file lock so that concurrent
    runs never rebuild it twice; a damaged file is moved aside with a warning and rebuilt empty."""

    def __init__(self, path: Path) -> None:
        from filelock import FileLock

        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.path.with_name(self.path.name + ".lock")), thread_local=False):
                try:
                    self._db = self._open()
                except _Damaged as exc:
                    aside = self._move_aside()
                    warn(
                        f"{self.path} is damaged ({exc}); moved to {aside.name} and rebuilt empty (its answers "
                        "will be asked again)"
                    )
                    self._db = self._open()
        except (OSError, sqlite3.OperationalError, _Damaged) as exc:
            raise lamp_error(
                f"cannot open the response cache ({getattr(exc, 'strerror', None) or exc})",
                where=str(self.path),
                fix="Check that $LAMP_HOME is writable and has free space (or pass --generator-arg cache=false).",
            ) from None

    def _open(self) -> sqlite3.Connection:
        """The verified connection; :class:`_Damaged` when the file is not a sound cache, and
        ``sqlite3.OperationalError`` when it cannot be used now (a full disk, no permission): a
        sound cache is never moved aside for that."""
        if self.path.exists() and not self.path.is_file():
            raise _Damaged("not a file")
        db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, body TEXT NOT NULL, created REAL NOT NULL)"
            )
            db.commit()
            columns = [(row[1], str(row[2]).upper()) for row in db.execute("PRAGMA table_info(responses)")]
            if columns != _SCHEMA:
                raise _Damaged(f"another schema: responses({', '.join(c for c, _ in columns)})")
            check = db.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise _Damaged(f"integrity check: {check[0] if check else 'no answer'}")
        except sqlite3.OperationalError:
            db.close()
            raise
        except (sqlite3.Error, _Damaged) as exc:  # "file is not a database", "disk image is malformed"
            db.close()
            raise _Damaged(str(exc)) from None
        return db

    def _move_aside(self) -> Path:
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm", "-journal"):  # SQLite's side files belong to the damaged one
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.replace(side, aside.with_name(aside.name + suffix))
        return aside

    @staticmethod
    def key(url: str, body: Mapping[str, Any]) -> str:
        """SHA-256 of the endpoint URL and the request body (model, prompt, decoding parameters),
        secrets masked (they are refused as arguments anyway: see :mod:`lamp_harness.base.secrets`)."""
        return hashlib.sha256(
            json.dumps({"url": redact_text(url), "body": redact(dict(body))}, sort_keys=True).encode()
        ).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored answer under ``key``, or ``None``."""
        try:
            with self._lock:
                row = self._db.execute("SELECT body FROM responses WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        if row is None:
            return None
        try:
            found = json.loads(row[0])
        except (TypeError, ValueError, RecursionError):  # a torn or foreign row: ask the server again
            return None
        return found if isinstance(found, dict) else None

    def put(self, key: str, body: Mapping[str, Any]) -> None:
        """Store a checked answer (committed at once, so a crash keeps every answer received)."""
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", (key, redact_text(json.dumps(body)), time.time())
                )
                self._db.commit()
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> LampError:
        return lamp_error(
            f"the response cache failed ({exc}); finished predictions are kept",
            where=str(self.path),
            fix="Free disk space under $LAMP_HOME (or pass --generator-arg cache=false), then rerun "
            "the same command to resume.",
        )


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


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else max(0.0, value)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms`` header asks to wait:
    ``None`` when absent or unreadable (``nan``, garbage), ``inf`` when it says so (the caller
    compares with ``max_retry_wait``), 0 for a past date or a negative number."""
    millis = headers.get("retry-after-ms")
    if millis:
        value = _seconds(millis.strip())
        if value is not None:
            return value / 1000
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def _announce(message: str) -> None:
    print(f"{OWNER}: {message}", file=sys.stderr, flush=True)


class _Deadline:
    """A per-thread deadline (``time.monotonic()`` value) that every network wait of the current
    request is clamped to, so a request cannot outlive it however the server paces its bytes."""

    local = threading.local()

    @classmethod
    def clamp(cls, timeout: float | None, kind: str) -> float | None:
        at = getattr(cls.local, "at", None)
        if at is None:
            return timeout
        left = at - time.monotonic()
        if left <= 0:
            import httpcore

            error = {"connect": httpcore.ConnectTimeout, "write": httpcore.WriteTimeout}.get(kind, httpcore.ReadTimeout)
            raise error("the request's deadline passed")
        return left if timeout is None else min(timeout, left)


def _deadline_backend(inner: Any) -> Any:
    """An httpcore network backend whose every connect, read and write waits at most until the
    current request's deadline (see :class:`_Deadline`)."""
    import httpcore

    class Stream(httpcore.NetworkStream):
        def __init__(self, stream: Any) -> None:
            self._stream = stream

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._stream.read(max_bytes, _Deadline.clamp(timeout, "read"))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._stream.write(buffer, _Deadline.clamp(timeout, "write"))

        def close(self) -> None:
            self._stream.close()

        def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
            return Stream(self._stream.start_tls(ssl_context, server_hostname, _Deadline.clamp(timeout, "connect")))

        def get_extra_info(self, info: str) -> Any:
            return self._stream.get_extra_info(info)

    class Backend(httpcore.NetworkBackend):
        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> Any:
            return Stream(inner.connect_tcp(host, port, _Deadline.clamp(timeout, "connect"), local_address, socket_options))

        def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
            return Stream(inner.connect_unix_socket(path, _Deadline.clamp(timeout, "connect"), socket_options))

        def sleep(self, seconds: float) -> None:
            inner.sleep(seconds)

    return Backend()


def _with_deadlines(client: Any) -> bool:
    """Put :func:`_deadline_backend` under every connection pool of an ``httpx.Client`` (its
    default transport and any proxy mounts); ``False`` when this httpx keeps its pools elsewhere."""
    transports = [client._transport, *(t for t in client._mounts.values() if t is not None)]
    pools = [getattr(t, "_pool", None) for t in transports]
    if not all(hasattr(pool, "_network_backend") for pool in pools):
        return False
    for pool in pools:
        pool._network_backend = _deadline_backend(pool._network_backend)
    return True


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------


class OpenAIGenerator(Generator):
    """A model behind an OpenAI-compatible HTTP API (see module doc)."""

    name = "openai"
    options = OpenAIOptions

    def __init__(
        self,
        context: RunContext,
        model: str | None = None,
        *,
        batch_size: Any = None,
        num_beams: Any = None,
        max_input_tokens: Any = None,
        max_new_tokens: Any = None,
        **args: Any,
    ) -> None:
        try:
            import httpx
        except ImportError:
            raise lamp_error(
                "the openai generator needs httpx", where=OWNER, fix='Install it: pip install "lamp-harness[openai]".'
            ) from None
        self.context = context
        check_args(args, "--generator-arg", where=OWNER)  # also for the Python API
        run_level = {
            k: v
            for k, v in (
                ("batch_size", batch_size),
                ("num_beams", num_beams),
                ("max_input_tokens", max_input_tokens),
                ("max_new_tokens", max_new_tokens),
            )
            if v is not None
        }
        args = {**preset_generator_args(context.preset), **run_level, **args}
        known = {k: v for k, v in args.items() if k in KNOWN_ARGS}
        self.body_args = {k: _value(v) for k, v in args.items() if k not in KNOWN_ARGS and k != "model"}
        self.body_args.setdefault("temperature", 0)
        if self.body_args.get("stream") not in (None, False):
            raise lamp_error(
                "argument stream is not supported (answers are read whole, then checked and cached)",
                where=OWNER,
                fix="Drop --generator-arg stream.",
            )
        for key, value in self.body_args.items():
            # "nan"/"inf" are not JSON numbers, so they would go out as text ("temperature": "nan")
            if not _finite(value) or (
                isinstance(value, str) and value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity")
            ):
                raise lamp_error(
                    f"argument {key}={args.get(key, value)} is not a finite number",
                    where=OWNER,
                    fix="JSON has no NaN or Infinity: pass a finite value.",
                )
        if known.get("base_url"):
            self.base_url = check_base_url(known["base_url"], "argument base_url")
        elif os.environ.get("OPENAI_BASE_URL"):
            self.base_url = check_base_url(os.environ["OPENAI_BASE_URL"], "$OPENAI_BASE_URL")
        else:
            self.base_url = "https://api.openai.com/v1"
        self.api_key_env = str(known.get("api_key_env", "OPENAI_API_KEY")).strip()
        if not _ENV_NAME.fullmatch(self.api_key_env):
            raise lamp_error(
                "argument api_key_env is not the name of an environment variable (it names the "
                "variable that holds the key; the key itself is never an argument)",
                where=OWNER,
                fix="export MY_KEY=... and pass api_key_env=MY_KEY (default: OPENAI_API_KEY).",
            )
        if "api_key_env" in known and self.api_key_env not in os.environ:
            # Named on purpose but unset: a key pasted in place of the name would be recorded and
            # no key sent. The name is not repeated, as it may be the key itself.
            raise lamp_error(
                "argument api_key_env names an environment variable that is not set (it names the "
                "variable that holds the key; the key itself is never an argument)",
                where=OWNER,
                fix="Set the variable (export MY_API_KEY) and pass api_key_env=MY_API_KEY, or drop "
                "api_key_env for a server that needs no key.",
            )
        opts = OpenAIOptions.parse(known, OWNER)
        self.endpoint = opts.endpoint
        self.concurrency = opts.concurrency
        self.batch_size = opts.batch_size if opts.batch_size is not None else max(16, 4 * self.concurrency)
        self.limiter = RateLimiter(opts.rpm, opts.tpm)
        self.timeout = opts.timeout
        self.deadline = opts.deadline
        self.max_retries = opts.max_retries
        self.backoff = opts.backoff
        self.max_retry_wait = opts.max_retry_wait
        self.use_cache = opts.cache
        self.max_new_tokens = opts.max_new_tokens
        self._max_input_tokens = opts.max_input_tokens
        remember(os.environ.get(self.api_key_env))  # masked wherever a line could repeat it
        self.client = httpx.Client(
            timeout=self.timeout, headers=self._headers(), limits=httpx.Limits(max_connections=self.concurrency)
        )
        if not _with_deadlines(self.client):
            context.note(
                f"{OWNER}: this httpx version hides its connection pools: deadline={self.deadline:g} "
                "is not enforced (timeout still is)"
            )
        self.model = model or self._served_model(httpx)
        self.tokenizer = self._load_tokenizer(known.get("tokenizer"))
        self._counter = HFTokenCounter(self.tokenizer) if self.tokenizer is not None else WhitespaceTokenCounter()
        self.cache = ResponseCache(context.lamp_home / "openai-cache.sqlite") if self.use_cache else None
        self._lock = threading.Lock()
        self._usage = {"requests_sent": 0, "retries": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0}

    # -- setup ----------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env, "")
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
            headers["api-key"] = key  # Azure OpenAI reads this header instead
        return headers

    def _served_model(self, httpx: Any) -> str:
        """The only model the server serves, when ``openai`` is given without one (``/models``
        answering ``{"data": [...]}``, ``{"models": [...]}`` or a bare list, of objects with an
        ``id`` (or ``name``) or of names)."""
        url = f"{self.base_url}/models"
        fix = "Name the model: --generator openai:MODEL."
        try:
            response = self._send(httpx, "GET", url)
            response.raise_for_status()
            payload = response.json()
        except (httpx.HTTPError, ValueError, RecursionError) as exc:
            detail = f"HTTP {exc.response.status_code}" if isinstance(exc, httpx.HTTPStatusError) else type(exc).__name__
            raise lamp_error(
                f"no model given and {url} did not list the served models ({detail})", where=OWNER, fix=fix
            ) from None
        listed = payload.get("data", payload.get("models")) if isinstance(payload, Mapping) else payload
        models = []
        for item in listed if isinstance(listed, list) else [None]:
            name = item.get("id", item.get("name")) if isinstance(item, Mapping) else item
            if not isinstance(name, str) or not name:
                raise lamp_error(
                    f"no model given and {url} answered a model list this client cannot read ({json.dumps(payload)[:80]})",
                    where=OWNER,
                    fix=fix,
                )
            models.append(name)
        if len(models) != 1:
            raise lamp_error(
                f"no model given and {url} serves {len(models)} models ({', '.join(models)})", where=OWNER, fix=fix
            )
        return models[0]

    def _load_tokenizer(self, spec: Any) -> Any:
        from lamp_harness import pretrained_kwargs, resolve_model

        candidates = [str(spec)] if spec else [self.model]
        for name in candidates:
            try:
                resolved = resolve_model("generator", self.context, name)
                from transformers import AutoTokenizer

                return AutoTokenizer.from_pretrained(resolved.path, **pretrained_kwargs(resolved))
            except (LampError, OSError, ValueError):
                if spec:
                    raise lamp_error(
                        f"cannot load the tokenizer {spec!r}",
                        where=OWNER,
                        fix="Give an alias, hub id or local folder with a tokenizer.",
                    ) from None
        self.context.note(
            f"generator 'openai': no local tokenizer for {self.model!r}; prompt budgets "
            "count whitespace words (pass tokenizer=... for exact budgets)"
        )
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
        return redact(
            {
                "name": self.name,
                "model": self.model,
                "base_url": self.base_url,
                "endpoint": self.endpoint,
                "api_key_env": self.api_key_env,
                "concurrency": self.concurrency,
                "rpm": self.limiter.rpm,
                "tpm": self.limiter.tpm,
                "max_input_tokens": self.max_input_tokens,
                "max_new_tokens": self.max_new_tokens,
                "request_args": dict(self.body_args),
                "tokenizer": getattr(self.tokenizer, "name_or_path", None),
            }
        )

    def usage(self) -> Mapping[str, int]:
        """Counters since this generator was created: requests sent (retries included), retries,
        cache hits, and the prompt and completion tokens of every answer used."""
        with self._lock:
            return dict(self._usage)

    def generate(self, requests: Sequence[GenerationRequest], *, decode: DecodeMode = "generate") -> list[Generation]:
        """One generation per request, in order, ``concurrency`` requests in flight."""
        for request in requests:
            if request.is_fusion or request.has_soft_tokens:
                what = "fusion-in-decoder" if request.is_fusion else "soft-token (PPlug)"
                raise lamp_error(
                    f"{what} requests cannot be sent over the OpenAI API (model {self.model!r})",
                    where=OWNER,
                    fix="Use --generator vllm or --generator hf for this personalizer.",
                )
        if decode == "labels" and any(r.choices for r in requests):
            return self._labels(requests)
        jobs = [self._job(r) for r in requests]
        with ThreadPoolExecutor(self.concurrency) as pool:
            answers = list(pool.map(lambda job: self._call(*job), jobs))
        return [
            Generation(text=redact_text(a.text).strip(), prompt_tokens=a.prompt_tokens, generated_tokens=a.completion_tokens)
            for a in answers
        ]

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

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._usage[key] += n

    def _send(self, httpx: Any, method: str, url: str, body: Mapping[str, Any] | None = None) -> Any:
        """One HTTP request, whole within ``deadline`` seconds (body read included)."""
        _Deadline.local.at = time.monotonic() + self.deadline
        try:
            return self.client.request(method, url, json=body)
        finally:
            _Deadline.local.at = None

    def _call(self, path: str, body: dict[str, Any], tokens: int) -> Answer:
        """One checked answer: from the cache (unless the run is forced), or from the server with
        rate limits and retries; a server's answer is cached only once it passed the check."""
        import httpx

        url = self.base_url + path
        chat = path == "/chat/completions"
        key = ResponseCache.key(url, body)
        if self.cache is not None and not self.context.force:
            cached = self.cache.get(key)
            if cached is not None:
                try:
                    answer = check_answer(cached, chat)
                except MalformedAnswer:  # stored by an older version: ask again (and replace it)
                    pass
                else:
                    self._count("cache_hits")
                    self._add_usage(answer)
                    return answer
        last = ""
        for attempt in range(self.max_retries + 1):
            self.limiter.acquire(tokens)
            self._count("requests_sent")
            wait = None
            sent = time.monotonic()
            try:
                response = self._send(httpx, "POST", url, body)
            except httpx.RequestError as exc:  # timeouts, connection, protocol and decoding errors
                last = type(exc).__name__
                if isinstance(exc, httpx.TimeoutException) and time.monotonic() - sent >= self.deadline - 0.05:
                    last = f"no complete answer within deadline={self.deadline:g} s"
            else:
                if response.status_code == 200:
                    try:
                        payload = response.json()
                        answer = check_answer(payload, chat)
                    except (ValueError, RecursionError) as exc:  # MalformedAnswer, or not JSON (too deep)
                        last = (
                            f"a malformed answer: {exc}"
                            if isinstance(exc, MalformedAnswer)
                            else "a malformed answer: not JSON"
                        )
                    else:
                        if self.cache is not None:
                            self.cache.put(key, payload)
                        self._add_usage(answer)
                        return answer
                elif response.status_code not in RETRY_STATUS:
                    raise lamp_error(
                        f"{url} answered HTTP {response.status_code}: {_detail(response)}",
                        where=OWNER,
                        fix=_fix_for(response.status_code, self.api_key_env),
                    )
                else:
                    last = f"HTTP {response.status_code}"
                    wait = retry_after(response.headers)
                    if wait is not None and wait > self.max_retry_wait:
                        raise lamp_error(
                            f"{url} answered {last} and asks to wait {_duration(wait)} before retrying "
                            f"(Retry-After), more than max_retry_wait={self.max_retry_wait:g} s; "
                            "finished predictions are kept",
                            where=OWNER,
                            fix="Rerun the same command later to resume, or raise --generator-arg max_retry_wait=SECONDS.",
                        )
            if attempt == self.max_retries:
                break
            self._count("retries")
            pause = max(random.uniform(0, min(MAX_BACKOFF, self.backoff * 2**attempt)), wait or 0.0)
            if pause > ANNOUNCE_WAIT:
                reason = "as its Retry-After asks" if wait is not None and wait >= pause else "(backoff)"
                _announce(
                    f"{url} answered {last}; waiting {pause:.0f} s {reason} before retry {attempt + 1} of {self.max_retries}"
                )
            time.sleep(pause)
        raise lamp_error(
            f"{url} did not answer after {self.max_retries + 1} attempts (last: {last}); finished predictions are kept",
            where=OWNER,
            fix="Check that the server is up and serves this model, then rerun the same command to resume.",
        )

    def _add_usage(self, answer: Answer) -> None:
        with self._lock:
            self._usage["prompt_tokens"] += answer.prompt_tokens
            self._usage["completion_tokens"] += answer.completion_tokens

    # -- label scoring --------------------------------------------------------------------------
    def _labels(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Label scoring from echoed prompt logprobs on the completions endpoint: each choice's
        tokens (and end-of-sequence) after the chat-formatted prompt, summed."""
        if self.tokenizer is None:
            raise lamp_error(
                f"label scoring needs the model's tokenizer and none was found for {self.model!r}",
                where=OWNER,
                fix="Pass tokenizer=ALIAS_OR_FOLDER, or --decode generate.",
            )
        jobs, spans = [], []
        for request in requests:
            prompt = self._prompt_ids(request)
            for choice in request.choices:
                target = self._ids(choice) + [self.tokenizer.eos_token_id]
                body = {
                    "model": self.model,
                    "prompt": prompt + target,
                    "max_tokens": 1,
                    "echo": True,
                    "logprobs": 1,
                    "temperature": 0,
                }  # echo + logprobs >= 1: prompt logprobs
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
                logprobs = answers[pos].token_logprobs
                if not logprobs or len(logprobs) < start + n or any(v is None for v in logprobs[start : start + n]):
                    raise lamp_error(
                        f"{self.base_url} returned no prompt logprobs for label scoring",
                        where=OWNER,
                        fix="Use --decode generate with this server, or a server that supports echo with logprobs (vLLM).",
                    )
                scores.append(float(sum(v for v in logprobs[start : start + n] if v is not None)))
                pos += 1
            best = max(range(len(scores)), key=lambda j: (scores[j], -j))
            label = request.choices[best]
            results.append(
                Generation(text=label, prompt_tokens=spans[pos - 1][0], generated_tokens=len(self._ids(label)) + 1)
            )
        return results

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        text = self._text(request)
        if getattr(self.tokenizer, "chat_template", None):
            return list(
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": text}], tokenize=True, add_generation_prompt=True, return_dict=False
                )
            )
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])


def _detail(response: Any) -> str:
    """The server's error message (its JSON ``error.message``, else the body), masked and short."""
    try:
        payload = response.json()
    except (ValueError, RecursionError):
        message: Any = response.text
    else:
        message = payload.get("error", payload) if isinstance(payload, Mapping) else payload
        message = message.get("message", message) if isinstance(message, Mapping) else message
    return " ".join(redact_text(str(message)).split())[:200] or "(no message)"


def _duration(seconds: float) -> str:
    if math.isinf(seconds):
        return "forever"
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _fix_for(status: int, key_env: str) -> str:
    if status in (401, 403):
        return f"Check the API key in ${key_env} (api_key_env=NAME picks another variable)."
    if status == 404:
        return "Check base_url (it usually ends in /v1), the model name and the endpoint argument."
    return "Check the request arguments (--generator-arg)."
