"""Component options: declared once, typed, checked before any work.

A retriever, personalizer or generator declares the ``--retriever-arg`` / ``--personalizer-arg``
/ ``--generator-arg`` keys it takes once, as a frozen dataclass deriving from :class:`Options`
whose fields carry a type, a default, a range or choices and a help line (:func:`option`), and
names it on its class (``options = MyOptions``). Then:

- the component turns the ``KEY=VALUE`` strings it is given into the typed object with
  ``MyOptions.parse(args, owner)`` (a bad key gets a did-you-mean and the valid keys, a bad value
  its range or choices, in one line);
- the harness checks every cell's options against the declarations before the first cell runs
  (:func:`lamp_harness.run.cells.check_options`, on the cells the plan expands), so a typo in the
  last cell of a matrix does not wait for the first ones;
- ``lamp plugins show NAME`` prints them as a table (:meth:`Options.describe`).

What is recorded (the cell id, ``config.json``) stays the strings the user gave, as before.
The older helpers (:func:`int_arg`, :func:`bool_arg`, :func:`reject_unknown_args`...) keep working
for components that parse by hand; such a component's options are checked when it is built.
This module also holds the other ``key=value`` parsing of the command line (:func:`parse_kv`).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from lamp_harness.base.errors import lamp_error
from lamp_harness.base.secrets import redact_text, refusal

if TYPE_CHECKING:
    pass

PROMPT_BUDGETS = ("official", "strict")
"""``--prompt-budget`` values: the official LaMP code's budget (default) and the harness's stricter one."""
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_kv(pairs: Iterable[str], option: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a pair without ``=`` is a one-line error,
    and so is a secret (``api_key=...``, a URL with credentials: see :mod:`lamp_harness.base.secrets`),
    since arguments are recorded."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise lamp_error(f"{option} {redact_text(pair)!r} is not KEY=VALUE", fix=f"Write e.g. {option} k1=1.2.")
        item = {key.strip().replace("-", "_"): value.strip()}
        check_args(item, option)
        result.update(item)
    return result


def check_args(args: Mapping[str, object], option: str, where: str | None = None) -> None:
    """A one-line error for a secret among component arguments (``api_key=...``, ``hf_token=...``,
    a URL with credentials), pointing to an environment variable (see :mod:`lamp_harness.base.secrets`)."""
    problem = refusal(args, option)
    if problem is not None:
        raise lamp_error(problem[0], where=where, fix=problem[1])


def reject_unknown_args(args: Mapping[str, object], known: Iterable[str], owner: str) -> None:
    """A one-line error for argument keys a component does not understand."""
    known = set(known)
    unknown = sorted(set(args) - known)
    if unknown:
        raise lamp_error(
            f"unknown argument(s) {', '.join(unknown)}",
            where=owner,
            fix=f"Valid keys: {', '.join(sorted(known)) or 'none'}.",
        )


def int_arg(args: Mapping[str, str], key: str, default: int, owner: str, *, minimum: int = 0) -> int:
    """``args[key]`` as an int (``default`` when absent); a one-line error naming ``owner`` when
    it is not an integer or is below ``minimum``."""
    raw = args.get(key, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise lamp_error(
            f"argument {key}={raw!r} is not an integer", where=owner, fix=f"Pass e.g. {key}={default}."
        ) from None
    if value < minimum:
        raise lamp_error(f"argument {key}={value} must be at least {minimum}", where=owner)
    return value


def batch_size_arg(value: object, default: int, owner: str) -> int:
    """A generator's ``batch_size`` parameter as an int: ``--batch-size`` arrives as a string,
    either a positive integer or ``"auto"``. ``"auto"`` (or ``None``) gives ``default``: the
    generator's own choice, which a generator able to probe memory may refine; anything else is a
    one-line error naming ``owner``."""
    if value is None or str(value).strip().lower() == "auto":
        return default
    return int_arg({"batch_size": str(value).strip()}, "batch_size", default, owner, minimum=1)


def float_arg(
    args: Mapping[str, str], key: str, default: float, owner: str, *, minimum: float | None = None, positive: bool = False
) -> float:
    """``args[key]`` as a finite float (``default`` when absent); a one-line error naming ``owner``
    when it is not a number, is ``nan`` or infinite, is below ``minimum``, or (``positive``) is not
    above 0."""
    raw = args.get(key, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise lamp_error(f"argument {key}={raw!r} is not a number", where=owner, fix=f"Pass e.g. {key}={default}.") from None
    if not math.isfinite(value):
        raise lamp_error(f"argument {key}={raw} is not a finite number", where=owner, fix=f"Pass e.g. {key}={default}.")
    if positive and value <= 0:
        raise lamp_error(f"argument {key}={raw} must be above 0", where=owner, fix=f"Pass e.g. {key}={default}.")
    if minimum is not None and value < minimum:
        raise lamp_error(
            f"argument {key}={raw} must be at least {minimum:g}", where=owner, fix=f"Pass e.g. {key}={default}."
        )
    return value


def bool_arg(args: Mapping[str, str], key: str, default: bool, owner: str) -> bool:
    """``args[key]`` as a bool (true/false, yes/no, on/off, 1/0; ``default`` when absent)."""
    raw = args.get(key)
    if raw is None or isinstance(raw, bool):
        return default if raw is None else raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise lamp_error(f"argument {key}={raw!r} is not a boolean", where=owner, fix=f"Pass {key}=true or {key}=false.")


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


def prompt_budget(value: str | None) -> str:
    """A ``--prompt-budget`` value normalised, or a one-line error naming the valid ones."""
    budget = (value or "official").strip().lower()
    if budget not in PROMPT_BUDGETS:
        raise lamp_error(
            f"prompt budget {value!r} is not one of {', '.join(PROMPT_BUDGETS)}",
            fix="Pass --prompt-budget official (the official LaMP code) or strict.",
        )
    return budget


RUN_LEVEL_ARGS = ("model", "batch_size", "num_beams", "max_input_tokens", "max_new_tokens")
"""Run-level generator settings (``--generator``'s model, ``--batch-size``, ``--num-beams``,
``--max-input-tokens``). A generator factory receives each one only when it declares a parameter
of that name, so a generator that rejects unknown ``--generator-arg`` keys never sees them."""


def generator_kwargs(
    factory: Any, args: Mapping[str, str], model: str | None = None, owner: str = "generator", notes: list[str] | None = None
) -> dict[str, Any]:
    """The keyword arguments a generator ``factory`` is called with (after the run context).

    Every ``--generator-arg`` key is passed. A run-level setting (:data:`RUN_LEVEL_ARGS`) is passed
    only when the factory's signature names it; otherwise it is dropped, with a line in ``notes``
    so the user learns that, e.g., ``--num-beams`` does not apply to this generator.
    ``max_new_tokens`` (the budget of every task, see :func:`generation_budget`) reaches every
    generator on each request whatever its signature, so dropping it needs no note; a generator
    that validates its own arguments never refuses it."""
    declared = _declared_parameters(factory)
    settings = {k: v for k, v in args.items() if k in RUN_LEVEL_ARGS}
    if model is not None:
        settings["model"] = model
    kwargs: dict[str, Any] = {k: v for k, v in args.items() if k not in RUN_LEVEL_ARGS}
    for key, value in settings.items():
        if key in declared:
            kwargs[key] = value
        elif notes is not None and key != TASK_BUDGET_OPTION:
            notes.append(f"{owner} takes no {key!r} parameter: {key}={value} is not used by it")
    return kwargs


TASK_BUDGET_OPTION = "max_new_tokens"
"""The task option every task accepts (``--task-arg max_new_tokens=N``): handled by the harness,
never passed to a task's factory."""


def task_option_names(factory: Any) -> list[str]:
    """The options a task factory accepts: :data:`TASK_BUDGET_OPTION` and the keyword parameters
    its ``__init__`` declares."""
    return sorted({TASK_BUDGET_OPTION, *_declared_parameters(factory)})


LABEL_SETTINGS = {"num_beams": "beams", "max_input_tokens": "max-input-tokens"}
"""Run-level settings that change a generator's outputs, with their short name in a cell label
(``--batch-size`` changes only speed, so it is left out)."""


def label_settings(factory: Any, args: Mapping[str, str], preset_defaults: Mapping[str, str] | None = None) -> list[str]:
    """``["beams=4", ...]``: the output-changing run-level settings (:data:`LABEL_SETTINGS`) that
    ``factory`` declares and receives with a value other than its default, so cells that differ
    only in them get labels of their own (and leaderboard columns of their own). A declared default
    of ``None`` means "the preset decides" (``hf``): the preset's value in ``preset_defaults`` is
    then the default."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return []
    declared = _declared_parameters(factory)
    parts = []
    for key, short in LABEL_SETTINGS.items():
        if key in args and key in declared:
            default = parameters[key].default
            if default is None and key in (preset_defaults or {}):
                default = preset_defaults[key]  # type: ignore[index]
            if default is inspect.Parameter.empty or str(default) != str(args[key]).strip():
                parts.append(f"{short}={str(args[key]).strip()}")
    return parts


def _declared_parameters(factory: Any) -> set[str]:
    """Names of the parameters ``factory`` (a class or callable) declares explicitly."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return set()
    return {
        name
        for name, p in signature.parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


# ---------------------------------------------------------------------------------------------
# Declared options
# ---------------------------------------------------------------------------------------------

_SPEC = "lamp_harness.option"
_INT_FLOOR = -(2**63)


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """What :func:`option` records on a field besides its default: the help line and the values
    allowed (``minimum``/``maximum`` inclusive, ``above``: strictly greater, ``choices``: the
    words of a text option, ``words``: words a number option also takes, such as ``auto``)."""

    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    choices: tuple[str, ...] = ()
    words: tuple[str, ...] = ()


def option(
    default: Any,
    help: str = "",
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    choices: Sequence[str] = (),
    words: Sequence[str] = (),
) -> Any:
    """A field of an :class:`Options` dataclass: ``min_len: int = option(1, "shortest word
    counted", minimum=1)``. The field's annotation gives the type (``int``, ``float``, ``bool``, ``str``,
    or one of them ``| None`` for an option that may stay unset); ``choices`` lists the values of
    a text option (matched without case; an empty value means the default); ``words`` the words a
    number option takes besides numbers (``batch_size: int | str = option("auto", words=("auto",))``)."""
    spec = OptionSpec(
        help=help,
        minimum=minimum,
        maximum=maximum,
        above=above,
        choices=tuple(str(c).lower() for c in choices),
        words=tuple(str(w).lower() for w in words),
    )
    return dataclasses.field(default=default, metadata={_SPEC: spec})


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """One declared option as ``lamp plugins show`` prints it."""

    name: str
    type: str
    default: str
    allowed: str
    help: str


OptionsT = TypeVar("OptionsT", bound="Options")


class Options:
    """Base of a component's declared options. Subclass it as a frozen dataclass whose fields
    are :func:`option` s, and name the subclass on the component (``options = OverlapOptions``)::

        @dataclass(frozen=True)
        class OverlapOptions(Options):
            min_len: int = option(1, "shortest word counted", minimum=1)
            case: str = option("fold", "fold or keep letter case", choices=("fold", "keep"))

        class OverlapRetriever(Retriever):
            name = "overlap"
            options = OverlapOptions

            def __init__(self, context, **args):
                self.opts = OverlapOptions.parse(args, f"retriever {self.name!r}")

    ``passthrough`` (a sentence) declares that keys not declared are handed on elsewhere (the
    ``hf`` generator gives them to ``from_pretrained`` / ``generate``): they are then not
    refused.

    ``prefixes`` names sub-components whose own arguments travel as ``PREFIX.KEY`` (OPPU's
    summarizer takes ``summarizer.KEY=VALUE``): such keys are not parsed here, and
    :meth:`sub_args` hands them on with the prefix removed."""

    passthrough: ClassVar[str] = ""
    prefixes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The declared keys, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def parse(cls: type[OptionsT], args: Mapping[str, Any], owner: str, **defaults: Any) -> OptionsT:
        """The typed options from ``KEY=VALUE`` strings (values may also be Python values, as the
        Python API passes them). ``defaults`` replace declared defaults known only at run time
        (e.g. ``seed=context.seed``). An unknown key (unless :attr:`passthrough`), a value of the
        wrong type or out of range is a one-line error naming ``owner``."""
        args = {k: v for k, v in args.items() if not (k.partition(".")[0] in cls.prefixes and k.partition(".")[2])}
        if not cls.passthrough:
            check_keys(args, cls.names(), owner)
        else:
            _check_passed_on(args, cls.names(), owner, cls.passthrough)
        values: dict[str, Any] = {}
        hints = _hints(cls)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            default = defaults.get(f.name, f.default)
            if f.name in args:
                values[f.name] = _convert(f, hints[f.name], args[f.name], default, owner)
            else:
                values[f.name] = default
        parsed = cls(**values)
        parsed.validate(owner)
        return parsed

    @classmethod
    def sub_args(cls, args: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        """The ``PREFIX.KEY`` arguments of one of :attr:`prefixes`, as ``{KEY: value}``."""
        return {k.split(".", 1)[1]: v for k, v in args.items() if k.startswith(f"{prefix}.") and k != f"{prefix}."}

    def validate(self, owner: str) -> None:
        """Rules across options (``aggregation=mean`` with ``history_top_k``...): override to raise
        a one-line :func:`~lamp_harness.base.errors.lamp_error` naming ``owner``. Runs after every
        option parsed, also in the check before any work."""

    @classmethod
    def check(cls, args: Mapping[str, Any], owner: str) -> None:
        """Raise the one-line error :meth:`parse` would raise for ``args``, without building anything."""
        cls.parse(args, owner)

    @classmethod
    def describe(cls) -> list[OptionInfo]:
        """Each option's name, type, default, allowed values and help, for tables and docs."""
        hints = _hints(cls)
        rows = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            spec = _spec(f)
            base, optional = _base(hints[f.name])
            kind = {int: "integer", float: "number", bool: "boolean"}.get(base, "text")
            if spec.words:
                kind += " or " + " or ".join(spec.words)
            default = "unset" if f.default is None else _show(f.default)
            rows.append(OptionInfo(f.name, kind, default, _allowed(spec), spec.help))
        return rows


@dataclasses.dataclass(frozen=True)
class NoOptions(Options):
    """The declaration of a component that takes no options: any key is refused."""


def declared_options(factory: Any) -> type[Options] | None:
    """The :class:`Options` subclass a component factory declares (its ``options`` attribute),
    or ``None`` for a component that parses its arguments by hand."""
    declared = getattr(factory, "options", None)
    if isinstance(declared, type) and issubclass(declared, Options) and dataclasses.is_dataclass(declared):
        return declared
    return None


def check_keys(args: Mapping[str, object], known: Iterable[str], owner: str) -> None:
    """A one-line error for keys a component does not declare, with a did-you-mean and the valid
    keys (``retriever 'bm25': unknown argument(s) k2 (did you mean k1?). Valid keys: b, epsilon, k1.``)."""
    known = sorted(set(known))
    unknown = sorted(set(args) - set(known))
    if not unknown:
        return
    guesses = [g for key in unknown if "." not in key for g in difflib.get_close_matches(key, known, n=1, cutoff=0.5)]
    hint = f" (did you mean {', '.join(dict.fromkeys(guesses))}?)" if guesses else ""
    raise lamp_error(
        f"unknown argument(s) {', '.join(unknown)}{hint}",
        where=owner,
        fix=f"Valid keys: {', '.join(known) or 'none'}.",
    )


def _check_passed_on(args: Mapping[str, object], known: Sequence[str], owner: str, passthrough: str) -> None:
    """For options with a :attr:`Options.passthrough`: a key handed on that is one letter away
    from a declared one (``num_beam``) is almost surely a typo, which would otherwise fail late
    (when the model loads) or not at all; a ``PREFIX.KEY`` key is always handed on as written."""
    for key in sorted(args):
        if key in known or "." in key:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.85)
        if close:
            raise lamp_error(
                f"unknown argument {key} (did you mean {close[0]}?)",
                where=owner,
                fix=f"Valid keys: {', '.join(sorted(known))}; {passthrough}.",
            )


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: treat every option as text
        return {f.name: str for f in dataclasses.fields(cls)}


def _spec(f: dataclasses.Field[Any]) -> OptionSpec:
    spec = f.metadata.get(_SPEC)
    return spec if isinstance(spec, OptionSpec) else OptionSpec()


def _base(hint: Any) -> tuple[type, bool]:
    """``int | None`` -> ``(int, True)``; ``int | str`` (a number or a word) -> ``(int, False)``."""
    parts = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    optional = type(None) in parts
    for kind in (bool, int, float, str):
        if kind in parts:
            return kind, optional
    return str, optional


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _or(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _allowed(spec: OptionSpec) -> str:
    if spec.choices:
        return " | ".join(spec.choices)
    parts = []
    if spec.minimum is not None:
        parts.append(f">= {spec.minimum:g}")
    if spec.above is not None:
        parts.append(f"> {spec.above:g}")
    if spec.maximum is not None:
        parts.append(f"<= {spec.maximum:g}")
    return ", ".join(parts)


def _convert(f: dataclasses.Field[Any], hint: Any, raw: Any, default: Any, owner: str) -> Any:
    """One value, converted and checked with the messages of :func:`int_arg`, :func:`float_arg`
    and :func:`bool_arg`."""
    spec = _spec(f)
    base, optional = _base(hint)
    key = f.name
    text = str(raw).strip().lower()
    if spec.words and text in spec.words:
        return text
    if base is str:
        if not spec.choices:
            return raw if isinstance(raw, str) or raw is None else str(raw)
        if not text:
            return default
        if text not in spec.choices:
            raise lamp_error(
                f"argument {key}={raw!r} is not one of {', '.join(spec.choices)}",
                where=owner,
                fix=f"Pass {_or([f'{key}={c}' for c in spec.choices])}.",
            )
        return text
    if base is bool:
        return bool_arg({key: raw}, key, bool(default), owner)
    example = default if isinstance(default, (int, float)) and not isinstance(default, bool) else None
    if base is int:
        if example is None:
            example = int(spec.minimum) if spec.minimum is not None else 1
        value: float = int_arg(
            {key: raw}, key, int(example), owner, minimum=int(spec.minimum) if spec.minimum is not None else _INT_FLOOR
        )
    else:
        if example is None:
            example = spec.minimum if spec.minimum is not None else 1.0
        value = float_arg(
            {key: raw}, key, example, owner, minimum=spec.minimum, positive=spec.above is not None and spec.above == 0
        )
    if spec.above is not None and value <= spec.above:
        raise lamp_error(
            f"argument {key}={raw} must be above {spec.above:g}", where=owner, fix=f"Pass e.g. {key}={example}."
        )
    if spec.maximum is not None and value > spec.maximum:
        raise lamp_error(
            f"argument {key}={raw} must be at most {spec.maximum:g}", where=owner, fix=f"Pass e.g. {key}={example}."
        )
    return value


# ---------------------------------------------------------------------------------------------
# Every cell's options, before any work
# ---------------------------------------------------------------------------------------------


class RegistryLike(Protocol):
    """What :func:`check_component_options` reads of the registry."""

    def get(self, kind: str, name: str) -> Any:
        """The registered component ``name`` of ``kind`` (a one-line error when unknown)."""
        ...


ComponentUse = tuple[str, str, Mapping[str, str]]
"""``(kind, name, args)``: a component of a cell and the arguments it will be built with."""


def check_component_options(registry: RegistryLike, uses: Iterable[ComponentUse], owner: str = "") -> None:
    """Check each ``(kind, name, args)`` against the declaration of the component ``name``
    (``owner``: what the error names before the component, e.g. ``--judge-arg for ...: judge``)."""
    for kind, name, args in dict.fromkeys((k, n, tuple(sorted(a.items()))) for k, n, a in uses):
        declared = _declaration(registry, kind, name)
        if declared is not None:
            declared.check(dict(args), f"{owner or kind} {registry.get(kind, name).name!r}")


def _declaration(registry: RegistryLike, kind: str, name: str) -> type[Options] | None:
    from lamp_harness.base.errors import LampError

    try:
        return declared_options(registry.get(kind, name).load())
    except LampError:  # an unknown name or a broken plugin: the planner's one line says it
        return None
