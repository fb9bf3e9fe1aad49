"""What a secret setting is, and how the harness keeps secrets out of everything it writes or prints.

One notion, used everywhere:

- **Secret names.** A setting is secret when its name (case-insensitive, ``-``, ``.`` and spaces
  read as ``_``) is ``key`` or ends in ``_key``/``apikey`` (``api_key``, ``secret_key``), or contains ``token``
  (``hf_token``, ``access_token``; names about tokens of text are not secrets: ``*tokens*``,
  ``tokeniz*``, ``token_id(s)``, ``token_type``, ``token_logprobs``, ``token_budget``/``count``/
  ``limit``/``len(gth)``/``level``, and the special tokens ``cls_token``, ``pad_token``,
  ``eos_token``..., as in ``max_new_tokens``, ``detokenize``, ``pad_token_id``), ``password``,
  ``passwd``, ``passphrase``, ``secret``, ``credential``, ``authorization`` or ``cookie``. A name
  ending in ``_env`` (``api_key_env``) names an environment variable, not a secret.
- **Secret values.** Credentials inside a URL (``http://user:KEY@host/v1``), a ``Bearer ...``
  token, and every value a component registered with :func:`remember` (the openai generator
  registers the key it reads from ``$api_key_env``).

:func:`refusal` (raised by :func:`lamp_harness.plugin.options.check_args`) refuses a secret given as a
component argument (``--generator-arg``, ``--retriever-arg``..., a matrix file's tables) in one
line pointing to an environment variable: an argument is recorded (``config.json``, cell ids and
labels, events, reporters), a variable is not. :func:`redact` and :func:`redact_text` replace
secrets by ``***`` in what is written or printed (``config.json``, events, reporter params, error
and warning lines), as a second line of defence.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "***"
"""What a secret is replaced with."""

_COUNTING = re.compile(
    r"tokens|tokeniz|token_?(?:ids?|type|logprobs?|budget|count|limit|len|length|level)"
    r"|(?:cls|pad|eos|bos|unk|sep|mask|special)_token"
)
_WORDS = ("password", "passwd", "passphrase", "secret", "credential", "authorization", "cookie")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/?#@\s\"'<>]+@")
_BEARER = re.compile(r"(?i)\b(bearer)\s+(?=[A-Za-z._~+/=\-]*[0-9])[A-Za-z0-9._~+/=\-]{8,}")
_ASSIGNMENT = re.compile(r"(?<![\w-])([A-Za-z_][\w-]*)(\s*[=:]\s*)([^\s,;/\])\"'*][^\s,;\])\"']*)")
_known: set[str] = set()
_lock = threading.Lock()


def is_secret_name(name: str) -> bool:
    """Whether a setting called ``name`` holds a secret (see the module doc)."""
    text = re.sub(r"[-.\s]+", "_", str(name).strip().lower())  # "api-key", "api.key", "Api Key"
    if not text or text.endswith("_env"):
        return False
    if text == "key" or text.endswith(("_key", "apikey")):
        return True
    if any(word in text for word in _WORDS):
        return True
    return "token" in _COUNTING.sub("", text)


def has_url_credentials(value: Any) -> bool:
    """Whether ``value`` is text holding a URL with credentials (``scheme://user:pass@host``)."""
    return isinstance(value, str) and _URL_CREDENTIALS.search(value) is not None


def remember(value: str | None) -> None:
    """Register a secret value (e.g. an API key read from the environment) so that
    :func:`redact_text` masks it wherever it appears, such as a server echoing a header back.
    Values shorter than 8 characters are not registered: keys are longer, and masking every
    ``true`` or ``1234`` would garble what is written."""
    if value and len(value.strip()) >= 8:
        with _lock:
            _known.add(value.strip())


def remember_environment(environ: Mapping[str, str] | None = None) -> None:
    """Register the values of the environment variables with secret names (``OPENAI_API_KEY``,
    ``HF_TOKEN``, ``WANDB_API_KEY``...), so that no line the harness prints or writes repeats them."""
    import os

    for name, value in (os.environ if environ is None else environ).items():
        if is_secret_name(name):
            remember(value)


def redact_text(text: str) -> str:
    """``text`` with URL credentials, ``NAME=VALUE`` (or ``NAME: VALUE``) where ``NAME`` is a secret
    name other than a bare ``key``, ``Bearer`` tokens (8 characters or more, with a digit) and every registered secret value
    replaced by ``***``."""
    if not isinstance(text, str) or not text:
        return text
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    if "@" in text:
        text = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    if "=" not in text and ":" not in text:
        return text
    return _ASSIGNMENT.sub(lambda m: m.group(1) + m.group(2) + MASK if _secret_in_text(m) else m.group(0), text)


def _secret_in_text(match: re.Match[str]) -> bool:
    # A bare "key" in prose is the placeholder of "KEY=VALUE" far more often than a secret (an
    # argument named key is refused, and a mapping's "key" is masked by :func:`redact`); inside a
    # URL (after "?", "&", ";" or "/": "...?key=VALUE", "/key=VALUE") it is a credential.
    name = match.group(1)
    if name.lower() == "key":
        start = match.start()
        return start > 0 and match.string[start - 1] in "?&;/" and "=" in match.group(2)
    return is_secret_name(name)


class RedactedStream:
    """A text stream (``sys.stdout``/``sys.stderr``, looked up at each write so that redirections
    apply) that masks secrets (:func:`redact_text`) in everything written to it: the consoles of
    ``lamp`` commands print through it, so a line written by any reporter or plugin never repeats
    a secret (a model named like a key, a label, a server's echo)."""

    def __init__(self, name: str = "stderr") -> None:
        self._name = name

    def _stream(self) -> Any:
        import sys

        return getattr(sys, self._name)

    def write(self, text: str) -> int:
        """Write ``text`` to the stream, secrets masked."""
        return self._stream().write(redact_text(text))

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._stream(), attribute)


def redact(obj: Any) -> Any:
    """A copy of ``obj`` (mappings, lists, tuples, text) with every secret masked: values under
    secret names (:func:`is_secret_name`), secret values in text (:func:`redact_text`), and
    ``(name, value)`` pairs whose name is secret (how cell specs keep arguments)."""
    if isinstance(obj, Mapping):
        return {
            key: (MASK if is_secret_name(str(key)) and value not in (None, "") else redact(value))
            for key, value in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        if (
            isinstance(obj, tuple)
            and len(obj) == 2
            and isinstance(obj[0], str)
            and is_secret_name(obj[0])
            and obj[1] not in (None, "")
        ):
            return (obj[0], MASK)
        items = [redact(item) for item in obj]
        return tuple(items) if isinstance(obj, tuple) else items
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


ENV_FIX = (
    "Put the secret in an environment variable instead: the openai generator reads its key from "
    "$OPENAI_API_KEY, or from the variable named by api_key_env=NAME (sent as the Authorization header, "
    "never recorded); Hugging Face reads $HF_TOKEN."
)
"""How to pass a secret instead of as an argument."""


def refusal(args: Mapping[str, Any], option: str) -> tuple[str, str] | None:
    """``(what, fix)`` when ``args`` holds a secret (by name, or a URL with credentials), else
    ``None``: arguments are recorded (``config.json``, cell ids, labels, events, reporters), so a
    secret must come from the environment. ``what`` never repeats the secret.
    :func:`lamp_harness.plugin.options.check_args` raises it as a one-line error."""
    for key, value in args.items():
        if is_secret_name(str(key)):
            return (
                f"{option} {key}={MASK} is a secret, and arguments are recorded in config.json, cell labels and reporters",
                ENV_FIX,
            )
        if has_url_credentials(value):
            return (
                f"{option} {key}={redact_text(str(value))} carries credentials inside the URL, and arguments "
                "are recorded in config.json, cell labels and reporters",
                "Remove 'user:password@' from the URL. " + ENV_FIX,
            )
    return None
