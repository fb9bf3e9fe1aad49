"""Parsing of ``key=value`` component arguments (``--retriever-arg``, ``--generator-arg``...)."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from lamp_harness.errors import lamp_error
from lamp_harness.secrets import redact_text, refusal

if TYPE_CHECKING:
    from lamp_harness.catalog import Registry
    from lamp_harness.contracts import Task

PROMPT_BUDGETS = ("official", "strict")
"""``--prompt-budget`` values: the official LaMP code's budget (default) and the harness's stricter one."""
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_kv(pairs: Iterable[str], option: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a pair without ``=`` is a one-line error,
    and so is a secret (``api_key=...``, a URL with credentials: see :mod:`lamp_harness.secrets`),
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
    a URL with credentials), pointing to an environment variable (see :mod:`lamp_harness.secrets`)."""
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


def make_task(registry: Registry, name: str, args: Mapping[str, str] | None = None) -> Task:
    """The task ``name`` built with its ``--task-arg`` strings (``max_new_tokens`` excepted, which
    the harness applies). A key the task does not declare is a one-line error listing the valid
    options; a bad value is the task's own one-line error. Both happen before any cell runs: the
    runner builds every task of the plan once while planning."""
    factory = registry.get("task", name).load()
    args = dict(args or {})
    owner = f"task {name!r} (--task-arg)"
    if TASK_BUDGET_OPTION in args:
        int_arg(args, TASK_BUDGET_OPTION, 1, owner, minimum=1)
    passed = {k: v for k, v in args.items() if k != TASK_BUDGET_OPTION}
    try:
        accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        accepts_any = False
    if not accepts_any:
        reject_unknown_args(args, task_option_names(factory), owner)
    return factory(**passed)


def generation_budget(
    task: Task, generator_args: Mapping[str, str], task_args: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """The number of new tokens a cell's generator is allowed per example, and where it comes
    from. The precedence, most specific first:

    1. ``--task-arg max_new_tokens=N`` (``[task-args]``): the user's budget for this task;
    2. ``--generator-arg max_new_tokens=N`` (``[generator-args]``): the user's budget for every task;
    3. the task's own default, ``Task.max_new_tokens``.

    A user's budget is kept within the task's hard limit, ``Task.max_new_tokens_limit`` (when the
    task declares one). The runner puts the result on every request of the cell and records it in
    the cell's ``config.json`` (``generation``), so what is recorded is what the generator used.
    Returns ``(budget, source)``; ``source`` is ``task-arg``, ``generator-arg``, ``task`` or, when
    the limit cut a user's value, ``task-limit``."""
    owner = f"task {getattr(task, 'name', '?')!r}"
    default = int(task.max_new_tokens)
    if TASK_BUDGET_OPTION in (task_args or {}):
        value = int_arg(task_args or {}, TASK_BUDGET_OPTION, default, f"{owner} (--task-arg)", minimum=1)
        source = "task-arg"
    elif TASK_BUDGET_OPTION in generator_args:
        value = int_arg(generator_args, TASK_BUDGET_OPTION, default, "--generator-arg", minimum=1)
        source = "generator-arg"
    else:
        return default, "task"
    limit = getattr(task, "max_new_tokens_limit", None)
    if limit is not None and value > int(limit):
        return int(limit), "task-limit"
    return value, source


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
