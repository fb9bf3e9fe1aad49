"""Parsing of ``key=value`` component arguments (``--retriever-arg``, ``--generator-arg``...)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from lamp_harness.errors import lamp_error

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_kv(pairs: Iterable[str], option: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a pair without ``=`` is a one-line error."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise lamp_error(f"{option} {pair!r} is not KEY=VALUE", fix=f"Write e.g. {option} k1=1.2.")
        result[key.strip().replace("-", "_")] = value.strip()
    return result


def reject_unknown_args(args: Mapping[str, object], known: Iterable[str], owner: str) -> None:
    """A one-line error for argument keys a component does not understand."""
    known = set(known)
    unknown = sorted(set(args) - known)
    if unknown:
        raise lamp_error(f"unknown argument(s) {', '.join(unknown)}", where=owner,
                         fix=f"Valid keys: {', '.join(sorted(known)) or 'none'}.")


def int_arg(args: Mapping[str, str], key: str, default: int, owner: str, *, minimum: int = 0) -> int:
    raw = args.get(key, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise lamp_error(f"argument {key}={raw!r} is not an integer", where=owner,
                         fix=f"Pass e.g. {key}={default}.") from None
    if value < minimum:
        raise lamp_error(f"argument {key}={value} must be at least {minimum}", where=owner)
    return value


def float_arg(args: Mapping[str, str], key: str, default: float, owner: str) -> float:
    raw = args.get(key, default)
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise lamp_error(f"argument {key}={raw!r} is not a number", where=owner,
                         fix=f"Pass e.g. {key}={default}.") from None


def bool_arg(args: Mapping[str, str], key: str, default: bool, owner: str) -> bool:
    raw = args.get(key)
    if raw is None or isinstance(raw, bool):
        return default if raw is None else raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise lamp_error(f"argument {key}={raw!r} is not a boolean", where=owner,
                     fix=f"Pass {key}=true or {key}=false.")


_DEVICE = re.compile(r"(auto|cpu|mps|(cuda|xpu)(:\d+)?)")


def check_device(value: str, option: str = "--device") -> str:
    """``value`` if it names a device (auto, cpu, cuda, cuda:N, mps, xpu), else a one-line error
    before any work (whether the device is present is checked where the model is loaded)."""
    if not _DEVICE.fullmatch(str(value).strip().lower()):
        raise lamp_error(f"{option} {value!r} is not a device", fix=f"Pass {option} auto, cpu, cuda, cuda:1 or mps.")
    return str(value).strip().lower()


def generator_spec(value: str | None, names: Iterable[str]) -> tuple[str, str | None]:
    """``--generator`` values: a generator plugin name, ``PLUGIN:MODEL``, or a model for ``hf``
    (``None``: ``hf`` with the preset's model)."""
    names = {n.lower() for n in names}
    if value is None:
        return ("hf", None)
    plugin, sep, model = value.partition(":")
    if sep and plugin.lower() in names:
        return (plugin.lower(), model or None)
    if value.lower() in names:
        return (value.lower(), None)
    return ("hf", value)
