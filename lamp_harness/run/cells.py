"""The cell: what a run is asked for (:class:`Matrix`, built from a matrix file and the command
line by :meth:`Matrix.from_config` / :meth:`Matrix.from_cli`), what one cell is (:class:`CellSpec`:
its id and label, :func:`spec`, :func:`label`), the plan that turns the one into the others, the
rules of the personalizers' capability flags, and the assembly of a cell's components
(:func:`assemble`), which the runner and the trainer share.

A cell is one (task, personalizer, retriever, k, generator) combination on one split. Planning a
matrix takes the product of its selectors (of each ``[[group]]``, :func:`expand`), applies each
personalizer's capability flags (:func:`retriever_choice`: a method without retrieval drops the
retriever, one that borrows a retriever's encoder retrieves no items, one with a default retriever
gets it...) and rejects impossible cells, all of them at once, before any work
(:func:`check_drafts`).

This module sits one floor below the runner and the trainer, and below the hook specs (which type
their arguments with :class:`CellSpec` and :class:`RunInfo`): it imports only the contracts and
small helpers (options, errors, io, secrets) and is handed the registry it looks components up in
(:class:`Registry`) and what the run resolves (datasets, generators, judges), so that no
import leads from here back to the hook specs.
"""

from __future__ import annotations

import inspect
import itertools
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lamp_harness.base.errors import LampError, lamp_error, warn
from lamp_harness.base.io import stable_hash
from lamp_harness.base.secrets import redact_text
from lamp_harness.plugin.catalog import Registry
from lamp_harness.plugin.contracts import SPLIT_ALIASES, Generator, Personalizer, RunContext, Task, check_scheme
from lamp_harness.plugin.options import (
    TASK_BUDGET_OPTION,
    ComponentUse,
    check_args,
    check_component_options,
    check_device,
    generator_kwargs,
    generator_spec,
    int_arg,
    parse_kv,
    reject_unknown_args,
    task_option_names,
)
from lamp_harness.plugin.options import prompt_budget as checked_budget

Pairs = tuple[tuple[str, str], ...]
"""Sorted ``(key, value)`` string pairs: a component's arguments as a cell records them."""


# ---------------------------------------------------------------------------------------------
# What a run is asked for, and what one cell is
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matrix:
    """What ``lamp run`` was asked for: every selector is a list; the runner takes the product."""

    tasks: tuple[str, ...]
    personalizers: tuple[str, ...] = ("none",)
    retrievers: tuple[str, ...] = ()
    ks: tuple[int, ...] = (1,)
    generators: tuple[str | None, ...] = (None,)
    split: str = "dev"
    data: str | None = None
    """The data source of every task (``--data NAME``); ``None``: each task's own default."""
    task_data: Mapping[str, str] = field(default_factory=dict)
    """Per-task data sources (``--data lamp-7=demo,toy-sentiment=toy``); they win over ``data``
    and ``data_dir``."""
    data_dir: Path | None = None
    scheme: str = "user"
    limit: int | None = None
    preset: str = "offline"
    seed: int = 0
    decode: str = "generate"
    prompt_budget: str = "official"
    """``official`` (the official LaMP prompt budget) or ``strict`` (the harness's deviation)."""
    personalizer_args: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    retriever_args: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    generator_args: Mapping[str, str] = field(default_factory=dict)
    task_args: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Task options (``--task-arg``, ``[task-args]``), under ``"*"`` for every task or a task's
    name; ``max_new_tokens`` among them is the task's generation budget."""
    train_args: Mapping[str, str] = field(default_factory=dict)
    """Overrides of the training settings (epochs, max_steps, batch_size, lr...) used when a
    trainable personalizer is trained before its cell (see ``lamp train --help``)."""
    checkpoint: Path | None = None
    device: str = "auto"
    judge: str | None = None
    """The judge of judged metrics (``--judge``, a ``--generator`` value); ``None``: each judged
    metric's default (see ``docs/judges.md``)."""
    judge_args: Mapping[str, str] = field(default_factory=dict)
    """``--judge-arg`` pairs: the judge generator's arguments, plus ``parse_retries``,
    ``max_new_tokens`` and ``decode`` for its decoding."""
    reporters: tuple[str, ...] = ()
    """Opt-in reporters (registered ``reporter`` components) to enable for the run, besides those
    named in ``LAMP_REPORTERS``."""
    groups: tuple[Matrix, ...] = ()
    """Sub-matrices whose products are run together (``[[group]]`` tables of a matrix file):
    each group sets its own selectors and component arguments; every other setting is shared."""

    def selections(self) -> tuple[Matrix, ...]:
        """The sub-matrices to expand: the ``[[group]]`` tables, or the matrix itself."""
        return self.groups or (self,)

    @classmethod
    def from_config(cls, path: Path, registry: Registry, **options: Any) -> Matrix:
        """The matrix a matrix file (TOML, see :func:`read_config`) describes; ``options`` are
        command-line values (the keyword arguments of :meth:`from_cli`), which win over the file's."""
        return cls.from_cli(registry, config=read_config(path), where=str(path), **options)

    @classmethod
    def from_cli(
        cls,
        registry: Registry,
        *,
        config: Mapping[str, Any] | None = None,
        where: str = "lamp run",
        task: str | None = None,
        personalizer: str | None = None,
        retriever: str | None = None,
        k: str | None = None,
        generator: str | None = None,
        split: str | None = None,
        data: str | None = None,
        data_dir: Path | None = None,
        scheme: str | None = None,
        limit: int | None = None,
        preset: str | None = None,
        decode: str | None = None,
        prompt_budget: str | None = None,
        batch_size: str | None = None,
        num_beams: int | None = None,
        max_input_tokens: int | None = None,
        retriever_arg: Sequence[str] = (),
        personalizer_arg: Sequence[str] = (),
        generator_arg: Sequence[str] = (),
        task_arg: Sequence[str] = (),
        judge: str | None = None,
        judge_arg: Sequence[str] = (),
        summarizer: str | None = None,
        summarizer_arg: Sequence[str] = (),
        train_arg: Sequence[str] = (),
        checkpoint: Path | None = None,
        check_checkpoint: Callable[[Path], object] | None = None,
        seed: int | None = None,
        device: str | None = None,
        reporter: Sequence[str] = (),
    ) -> Matrix:
        """The matrix of ``lamp run``'s options (``None`` / empty: not given) merged over a matrix
        file's ``config`` (as :func:`read_config` returns it; ``where`` names it in errors), each
        value checked, in one line naming the option or the file. ``registry`` finds the
        personalizers that take ``--summarizer``; ``check_checkpoint(path)`` verifies
        ``--checkpoint`` before any work."""
        cfg: Mapping[str, Any] = config or {}

        def pick(cli: Any, key: str, default: Any) -> Any:
            return cli if cli is not None else cfg.get(key, default)

        if batch_size is not None and batch_size != "auto" and not (batch_size.isdigit() and int(batch_size) >= 1):
            raise lamp_error(
                f"--batch-size {batch_size!r} is not a whole number >= 1 or auto",
                fix="Pass e.g. --batch-size 8 or --batch-size auto.",
            )
        gen_args = _stringify(cfg.get("generator-args", {}), "[generator-args]")
        gen_args.update(parse_kv(list(generator_arg), "--generator-arg"))
        for key, value in (
            ("batch_size", pick(batch_size, "batch-size", None)),
            ("num_beams", pick(num_beams, "num-beams", None)),
            ("max_input_tokens", pick(max_input_tokens, "max-input-tokens", None)),
        ):
            if value is not None:
                gen_args[key] = str(value)

        def selection(part: Mapping[str, Any], where: str) -> dict[str, Any]:
            """The selectors of the whole matrix or of one ``[[group]]`` (command-line values win)."""
            tasks = split_list(task) or _as_list(part.get("task"))
            if not tasks:
                raise lamp_error(
                    "no task given", where=where, fix="Pass --task lamp-7 (or a comma list), or task = [...] in --config."
                )
            ks_raw = split_list(k) or _as_list(part.get("k")) or ["1"]
            try:
                ks = tuple(int(x) for x in ks_raw)
            except ValueError:
                raise lamp_error(
                    f"k {','.join(ks_raw)!r} is not a list of integers", where=where, fix="Write e.g. --k 1,4."
                ) from None
            if any(x < 1 for x in ks):
                raise lamp_error("k values must be at least 1", where=where, fix="Write e.g. --k 1,4.")
            personalizers = tuple(split_list(personalizer) or _as_list(part.get("personalizer")) or ["none"])
            personalizer_args = tables(part, "personalizer-args", personalizer_arg, "--personalizer-arg")
            if summarizer or summarizer_arg:
                with_summarizer(personalizers, personalizer_args, where)
            return {
                "tasks": tuple(tasks),
                "personalizers": personalizers,
                "retrievers": tuple(split_list(retriever) or _as_list(part.get("retriever"))),
                "ks": ks,
                "generators": tuple(split_list(generator) or _as_list(part.get("generator"))) or (None,),
                "personalizer_args": personalizer_args,
                "retriever_args": tables(part, "retriever-args", retriever_arg, "--retriever-arg"),
            }

        def with_summarizer(names: tuple[str, ...], args: dict[str, dict[str, str]], where: str) -> None:
            """--summarizer / --summarizer-arg as the arguments of the personalizers that write
            summaries (those declaring ``takes_summarizer``)."""
            extra = {"summarizer": summarizer} if summarizer else {}
            extra.update({f"summarizer.{k}": v for k, v in parse_kv(list(summarizer_arg), "--summarizer-arg").items()})
            takers = [n for n in names if takes_summarizer(registry.get("personalizer", n).load())]
            if not takers:
                raise lamp_error(
                    "--summarizer applies to no personalizer of the matrix (none writes summaries)",
                    where=where,
                    fix="Add a summary method such as pag, or drop --summarizer.",
                )
            for name in takers:
                args.setdefault(name.lower(), {}).update(extra)

        def tables(part: Mapping[str, Any], key: str, cli_pairs: Sequence[str], option: str) -> dict[str, dict[str, str]]:
            merged: dict[str, dict[str, str]] = {}
            for name, table in (part.get(key) or {}).items():
                if isinstance(table, dict):
                    merged[name.lower()] = _stringify(table, f"[{key}.{name}]")
                else:
                    merged.setdefault("*", {})[name.replace("-", "_")] = str(table)
            for name, table in component_args(list(cli_pairs), option).items():
                merged.setdefault(name, {}).update(table)
            return merged

        task_args = tables(cfg, "task-args", task_arg, "--task-arg")
        groups = cfg.get("group", [])
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise lamp_error("group must be an array of tables ([[group]])", where=where, fix="See examples/demo.toml.")
        group_keys = {"task", "personalizer", "retriever", "k", "generator", "retriever-args", "personalizer-args"}
        for i, g in enumerate(groups):
            bad = sorted({key.replace("_", "-") for key in g} - group_keys)
            if bad:
                raise lamp_error(
                    f"[[group]] {i + 1} has key(s) {', '.join(bad)} that a group cannot set",
                    where=where,
                    fix=f"A group sets only {', '.join(sorted(group_keys))}; put shared settings at the top of the file.",
                )
        selected = [
            selection({**cfg, **{key.replace("_", "-"): v for key, v in g.items()}}, f"{where} [[group]] {i + 1}")
            for i, g in enumerate(groups)
        ]
        base = selection(cfg, where) if not selected or split_list(task) or cfg.get("task") else selected[0]

        data_dir_value = pick(data_dir, "data-dir", None)
        checkpoint_value = pick(checkpoint, "checkpoint", None)
        if checkpoint_value and check_checkpoint is not None:
            check_checkpoint(Path(checkpoint_value))  # missing or damaged: fail before any work
        decode_value = pick(decode, "decode", "generate")
        if decode_value not in ("generate", "labels"):
            raise lamp_error(f"--decode {decode_value!r} is not generate or labels", fix="Pass --decode labels.")
        budget_value = checked_budget(str(pick(prompt_budget, "prompt-budget", "official")))
        data_default, task_data = data_sources(pick(data, "data", None), where)
        return cls(
            **base,
            groups=tuple(cls(**sel) for sel in selected),
            split=SPLIT_ALIASES.get(pick(split, "split", "dev"), pick(split, "split", "dev")),
            data=data_default,
            task_data=task_data,
            data_dir=Path(data_dir_value) if data_dir_value else None,
            scheme=check_scheme(pick(scheme, "scheme", "user")),
            limit=pick(limit, "limit", None),
            preset=pick(preset, "preset", "offline"),
            seed=int(pick(seed, "seed", 0)),
            decode=decode_value,
            prompt_budget=budget_value,
            generator_args=gen_args,
            task_args=task_args,
            judge=pick(judge, "judge", None),
            judge_args={**_stringify(cfg.get("judge-args", {}), "[judge-args]"), **parse_kv(list(judge_arg), "--judge-arg")},
            train_args={**_stringify(cfg.get("train-args", {}), "[train-args]"), **parse_kv(list(train_arg), "--train-arg")},
            checkpoint=Path(checkpoint_value) if checkpoint_value else None,
            device=check_device(pick(device, "device", "auto")),
            reporters=tuple(
                dict.fromkeys([*_as_list(cfg.get("reporter")), *(name for value in reporter for name in split_list(value))])
            ),
        )

    def task_args_of(self, task: str, registry: Registry) -> Pairs:
        """A task's options: ``--task-arg KEY=VALUE`` for every task, overridden by
        ``--task-arg TASK:KEY=VALUE`` for this one (any spelling of its name)."""
        args = dict(self.task_args.get("*", {}))
        for name, table in self.task_args.items():
            if name != "*" and registry.get("task", name).name == task:
                args.update(table)
        return tuple(sorted(args.items()))

    def retriever_args_of(self, name: str) -> Pairs:
        """A retriever's arguments: ``--retriever-arg KEY=VALUE`` for every retriever, overridden
        by ``NAME:KEY=VALUE`` for this one."""
        return _args_of(self.retriever_args, name)

    def personalizer_args_of(self, name: str) -> Pairs:
        """A personalizer's arguments, as :meth:`retriever_args_of`."""
        return _args_of(self.personalizer_args, name)


def _args_of(tables: Mapping[str, Mapping[str, str]], name: str) -> Pairs:
    args = dict(tables.get("*", {}))
    args.update(tables.get(name, {}))
    return tuple(sorted(args.items()))


@dataclass(frozen=True)
class CellSpec:
    """One cell of a matrix, fully resolved (what its folder's ``config.json`` records).

    - ``cell_id``: the folder name, ``{task}_{personalizer}_{retriever}_k{k}-{hash}``; the hash
      covers everything that changes predictions, including the versions of the distributions
      that provide the cell's components (see ``versions``).
    - ``label``: the method's display name, ``personalizer[args] / retriever / k=K / model``, then
      ``beams=N``, ``max-input-tokens=N``, ``max-new-tokens=N`` (a user's budget),
      ``prompt-budget=strict`` when not the defaults.
    - ``task``, ``split``, ``personalizer``, ``retriever`` (``None`` without retrieval), ``k``
      (0 without retrieval), ``generator`` (the generator plugin) and ``model`` (its model, or
      ``None`` for the preset's): registry names.
    - ``personalizer_args``, ``retriever_args``, ``generator_args``: sorted ``(key, value)``
      string pairs, as given by the user.
    - ``decode``: ``generate`` or ``labels``.
    - ``dir``: the cell's folder (``config.json``, ``predictions.jsonl``, ``metrics.json``...).
    - ``versions``: ``(distribution, version)`` pairs of the cell's components' providers.
    - ``base_id``: the cell id without the versions: cells that differ only by plugin versions
      share it (how ``--allow-stale`` finds a cell computed by another version).
    - ``task_args``: the task's options (``--task-arg``), sorted ``(key, value)`` pairs.
    - ``max_new_tokens`` and ``budget_source``: the generation budget put on every request and
      where it comes from (see :func:`lamp_harness.run.cells.generation_budget`).
    """

    cell_id: str
    label: str
    task: str
    split: str
    personalizer: str
    personalizer_args: tuple[tuple[str, str], ...]
    retriever: str | None
    retriever_args: tuple[tuple[str, str], ...]
    k: int
    generator: str
    model: str | None
    generator_args: tuple[tuple[str, str], ...]
    decode: str
    dir: Path
    versions: tuple[tuple[str, str], ...] = ()
    base_id: str = ""
    task_args: tuple[tuple[str, str], ...] = ()
    max_new_tokens: int | None = None
    budget_source: str = "task"


@dataclass
class RunInfo:
    """A whole ``lamp run`` invocation, as the lifecycle hooks see it: ``out_dir`` (the run
    folder), ``cells`` (every :class:`CellSpec`), ``matrix`` (what was asked), ``context`` (the
    :class:`~lamp_harness.plugin.contracts.RunContext`) and ``console`` (a rich ``Console`` or ``None``)."""

    out_dir: Path
    cells: list[CellSpec]
    matrix: Matrix
    context: RunContext
    console: Any = None


@dataclass(frozen=True)
class Draft:
    """A planned cell before it is resolved into a :class:`CellSpec` (no id, label or folder yet)."""

    task: str
    personalizer: str
    retriever: str | None
    k: int
    generator: str
    model: str | None
    retriever_args: Pairs = ()
    personalizer_args: Pairs = ()

    @property
    def generator_key(self) -> tuple[str, str | None]:
        """``(generator plugin, model)``: cells with the same key share one loaded generator."""
        return (self.generator, self.model)


@dataclass(frozen=True)
class CellContext:
    """What a cell runs in besides its :class:`CellSpec` (what the trainer needs to train its
    personalizer first): the run's context, the matrix's shared settings, the data source the
    cell's task reads (``None`` with ``--data-dir``), and how to report progress."""

    run: RunContext
    matrix: Matrix
    data_source: str | None
    progress: bool = True
    console: Any = None
    allow_stale: bool = False


# ---------------------------------------------------------------------------------------------
# The rules of the personalizers' capability flags (read here and nowhere else)
# ---------------------------------------------------------------------------------------------


def uses_encoder(personalizer: Any) -> bool:
    """Whether a personalizer (class or instance) uses its cell's retriever's text encoder rather
    than its items (``retriever_use = "encoder"``, PPlug)."""
    return getattr(personalizer, "retriever_use", "items") == "encoder"


def is_trainable(personalizer: Any) -> bool:
    """Whether a personalizer (class or instance) trains its own weights (``trainable``)."""
    return bool(getattr(personalizer, "trainable", False))


def takes_summarizer(personalizer: Any) -> bool:
    """Whether a personalizer writes profile summaries with a summarizer (``takes_summarizer``)."""
    return bool(getattr(personalizer, "takes_summarizer", False))


def needs_encoder_decoder(personalizer: Any) -> bool:
    """Whether a personalizer needs an encoder-decoder generator (``requires_encoder_decoder``)."""
    return bool(getattr(personalizer, "requires_encoder_decoder", False))


class NeedsRetriever(LampError):
    """A personalizer that needs retrieved items, without a retriever (each caller words it)."""


def retriever_choice(
    personalizer: Any,
    retriever: str | None,
    k: int,
    args_of: Callable[[str], Mapping[str, str]],
    canonical: Callable[[str], str] = str,
) -> tuple[str | None, dict[str, str], int]:
    """The ``(retriever, its arguments, k)`` a cell of ``personalizer`` (class or instance) runs
    with, when ``retriever`` (or ``None``) and ``k`` were asked; ``args_of(name)`` gives a
    retriever's user arguments, ``canonical`` the registered name of the default retriever.

    A method that accepts no retriever drops it (k = 0); one that borrows a retriever's encoder
    retrieves no items (k = 0); without a retriever, the method's ``default_retriever`` (with its
    ``default_retriever_args`` under the user's) or none at all (k = 0), unless it
    ``needs_retriever`` (:class:`NeedsRetriever`)."""
    if not getattr(personalizer, "accepts_retriever", True):
        return None, {}, 0
    if retriever:
        return retriever, dict(args_of(retriever)), 0 if uses_encoder(personalizer) else k
    default = getattr(personalizer, "default_retriever", None)
    if default:
        name = canonical(default)
        return name, {**getattr(personalizer, "default_retriever_args", {}), **args_of(name)}, k
    if getattr(personalizer, "needs_retriever", True):
        raise NeedsRetriever(f"{getattr(personalizer, 'name', personalizer)} needs a retriever")
    return None, {}, 0


def no_encoder(personalizer: str, retriever: str, items_variant: str | None) -> tuple[str, str]:
    """The problem and the fix of a method that uses a retriever's text encoder with a retriever
    that has none (worded here once)."""
    problem = f"{personalizer!r} uses a retriever's text encoder as its own, and {retriever!r} has none"
    fix = "use a dense retriever such as contriever" + (
        f", or --personalizer {items_variant} to put its top items in the prompt" if items_variant else ""
    )
    return problem, fix


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


def expand(matrix: Matrix, registry: Registry) -> tuple[list[Draft], list[str]]:
    """The product of each selection of ``matrix`` (each ``[[group]]``, or the matrix itself)
    under the capability rules, without duplicates, in order; and the problems found (a method
    that needs a retriever and has none), to be reported with the others."""
    drafts: list[Draft] = []
    problems: list[str] = []
    for selection in matrix.selections():
        _expand(selection, registry, drafts, problems)
    return drafts, problems


def _expand(m: Matrix, reg: Registry, drafts: list[Draft], problems: list[str]) -> None:
    tasks = [reg.get("task", t).name for t in m.tasks]
    personalizers = [reg.get("personalizer", p).name for p in m.personalizers]
    retrievers = [reg.get("retriever", r).name for r in m.retrievers]
    generators = [generator_spec(g, reg.names("generator")) for g in m.generators]
    for task, pers, gen in itertools.product(tasks, personalizers, generators):
        cls = reg.get("personalizer", pers).load()
        options: list[tuple[str | None, int, Pairs]] = []
        try:
            candidates: list[str | None] = [*retrievers] or [None]
            for retriever, k in itertools.product(candidates, m.ks):
                name, args, k = retriever_choice(
                    cls, retriever, k, lambda r: dict(m.retriever_args_of(r)), lambda r: reg.get("retriever", r).name
                )
                option = (name, k, tuple(sorted(args.items())))
                if option not in options:
                    options.append(option)
        except NeedsRetriever:
            problems.append(f"{pers} needs a retriever (add --retriever, e.g. {', '.join(reg.names('retriever')[:4])})")
            continue
        pargs = m.personalizer_args_of(pers)
        for retriever, k, rargs in options:
            draft = Draft(task, pers, retriever, k, *gen, retriever_args=rargs, personalizer_args=pargs)
            if draft not in drafts:
                drafts.append(draft)


def component_uses(drafts: Sequence[Draft], matrix: Matrix, registry: Registry) -> list[ComponentUse]:
    """Every component of the planned cells with the arguments it will be built with: each
    personalizer and retriever as the plan resolved them (a personalizer's default retriever
    included), each generator with the ``--generator-arg`` keys its factory receives
    (``max_new_tokens`` aside: :func:`generation_budget` checks it with its own line)."""
    uses: list[ComponentUse] = []
    for d in drafts:
        uses.append(("personalizer", d.personalizer, dict(d.personalizer_args)))
        if d.retriever:
            uses.append(("retriever", d.retriever, dict(d.retriever_args)))
    for plugin, model in dict.fromkeys(d.generator_key for d in drafts):
        kwargs = generator_kwargs(registry.get("generator", plugin).load(), matrix.generator_args, model)
        kwargs.pop("model", None)
        kwargs.pop(TASK_BUDGET_OPTION, None)
        uses.append(("generator", plugin, kwargs))
    return uses


def check_options(matrix: Matrix, registry: Registry, drafts: Sequence[Draft] | None = None) -> None:
    """Check the options of every component of every cell of ``matrix`` (its ``drafts``, when
    already planned) against their declarations (:class:`lamp_harness.plugin.options.Options`) before
    any work: the first bad key or value is a one-line error naming the component, the valid
    keys and a did-you-mean. Components that declare no options are checked when built."""
    if drafts is None:
        drafts, _ = expand(matrix, registry)
    try:
        check_component_options(registry, component_uses(drafts, matrix, registry))
    except LampError as exc:
        text = str(exc)
        used = {"personalizer": {d.personalizer for d in drafts}, "retriever": {d.retriever for d in drafts if d.retriever}}
        for kind, names in used.items():
            if text.startswith(f"{kind} ") and len(names) > 1:  # a key meant for one of several components
                raise LampError(
                    f"{text.rstrip('.')}. A key for one {kind} only is written --{kind}-arg NAME:KEY=VALUE "
                    f"(e.g. {sorted(names)[-1]}:KEY=VALUE)."
                ) from None
        raise


def check_drafts(
    drafts: list[Draft],
    problems: list[str],
    registry: Registry,
    context: RunContext,
    *,
    generator: Callable[[tuple[str, str | None]], Generator],
    label: Callable[[Draft], str],
) -> list[Draft]:
    """The planned cells that can run: a method that borrows a retriever's encoder, with a
    retriever that has none, keeps its own encoder when another method of the plan uses that
    retriever's items (with a warning), and is impossible otherwise; a method that needs an
    encoder-decoder is impossible with a decoder-only ``generator(key)``. Every impossible cell
    (``problems`` so far included) is listed in one error, before any work."""
    drafts = list(drafts)
    for index, draft in enumerate(drafts):
        cls = registry.get("personalizer", draft.personalizer).load()
        if uses_encoder(cls) and draft.retriever:
            retriever = registry.create("retriever", draft.retriever, context, **dict(draft.retriever_args))
            variant = getattr(cls, "items_variant", None)
            if retriever.text_encoder() is None and _items_use(drafts, draft.retriever, registry):
                # The retriever is in the matrix for other methods (none,ipa,pplug x bm25):
                # this method keeps its own encoder, as a method without a retriever does.
                drafts[index] = replace(draft, retriever=None, retriever_args=())
                warn(
                    f"{draft.personalizer} uses a retriever's encoder and {draft.retriever!r} "
                    f"has none: its cell runs with {draft.personalizer}'s own encoder"
                    + (f" (--personalizer {variant} puts {draft.retriever}'s top items in the prompt)" if variant else "")
                )
            elif retriever.text_encoder() is None:
                problem, fix = no_encoder(draft.personalizer, draft.retriever, variant)
                problems.append(f"{label(draft)}: {problem} ({fix})")
        if needs_encoder_decoder(cls):
            built = generator(draft.generator_key)
            if not built.is_encoder_decoder:
                model = built.describe().get("model", draft.model or draft.generator)
                problems.append(
                    f"{label(draft)}: personalizer {draft.personalizer!r} needs an "
                    f"encoder-decoder model and {model!r} is decoder-only"
                )
    drafts = list(dict.fromkeys(drafts))
    if problems:
        unique = list(dict.fromkeys(problems))
        hint = " (e.g. --generator google/flan-t5-base for fid)" if any("encoder-decoder" in p for p in unique) else ""
        raise LampError(
            f"{len(unique)} impossible cell(s), nothing was run: " + "; ".join(unique) + f". Fix the selection{hint}."
        )
    return drafts


def _items_use(drafts: Sequence[Draft], retriever: str, registry: Registry) -> bool:
    """Whether some cell of the plan uses ``retriever``'s ranked items."""
    return any(
        d.retriever == retriever and not uses_encoder(registry.get("personalizer", d.personalizer).load()) for d in drafts
    )


def used_components(drafts: Iterable[Draft], data_source: Callable[[str], str | None]) -> list[tuple[str, str]]:
    """``(kind, name)`` of every component the planned cells use (``data_source(task)``: the data
    source a task reads, ``None`` for a ``--data-dir`` folder)."""
    used: list[tuple[str, str]] = []
    for d in drafts:
        used += [("task", d.task), ("personalizer", d.personalizer), ("generator", d.generator)]
        if d.retriever:
            used.append(("retriever", d.retriever))
        source = data_source(d.task)
        if source is not None:
            used.append(("data_source", source))
    return used


def check_task_data(matrix: Matrix, drafts: Sequence[Draft], registry: Registry) -> None:
    """Each ``--data TASK=NAME`` names a task of the run, and no task gets two sources (two
    spellings of one task); otherwise a typo would silently send that task to its default source."""
    tasks = list(dict.fromkeys(d.task for d in drafts))
    chosen: dict[str, tuple[str, str]] = {}
    for name, source in matrix.task_data.items():
        task = registry.get("task", name).name
        if task not in tasks:
            raise lamp_error(
                f"--data {name}={source} names a task this run does not include (its tasks: {', '.join(tasks)})",
                fix=f"Fix the task name (e.g. --data {tasks[0]}={source}) or add --task {name}."
                if tasks
                else "Fix the task name.",
            )
        if task in chosen and chosen[task][1] != source:
            raise lamp_error(
                f"--data gives task {task!r} two sources, {chosen[task][0]}={chosen[task][1]} and {name}={source}",
                fix="Keep one of them.",
            )
        chosen[task] = (name, source)


def check_task_args(matrix: Matrix, drafts: Sequence[Draft], registry: Registry) -> None:
    """Each ``--task-arg TASK:KEY=VALUE`` (``[task-args.TASK]``) names a task of the run, and no
    option is given two values under two spellings of one task; otherwise a typo in the task
    name would silently run the task without the option."""
    tasks = list(dict.fromkeys(d.task for d in drafts))
    chosen: dict[str, dict[str, tuple[str, str]]] = {}
    for name, table in matrix.task_args.items():
        if name == "*":
            continue
        task = registry.get("task", name).name
        if task not in tasks:
            key, value = next(iter(table.items()), ("KEY", "VALUE"))
            raise lamp_error(
                f"--task-arg {name}:{key}={value} names a task this run does not include (its tasks: {', '.join(tasks)})",
                fix=f"Fix the task name (e.g. --task-arg {tasks[0]}:{key}={value}) or add --task {name}."
                if tasks
                else "Fix the task name.",
            )
        for key, value in table.items():
            earlier = chosen.setdefault(task, {}).get(key)
            if earlier is not None and earlier[1] != value:
                raise lamp_error(
                    f"--task-arg gives task {task!r} two values of {key}, "
                    f"{earlier[0]}:{key}={earlier[1]} and {name}:{key}={value}",
                    fix="Keep one of them.",
                )
            chosen[task][key] = (name, value)


# ---------------------------------------------------------------------------------------------
# A cell's identity: its id and its label
# ---------------------------------------------------------------------------------------------


def label(
    draft: Draft,
    matrix: Matrix,
    registry: Registry,
    *,
    model: str,
    settings: Sequence[str],
    budget: tuple[int, str],
) -> str:
    """The method's display name: ``personalizer[args] / retriever / k=K / model``, then the
    generator's label ``settings`` (``beams=N``...), ``max-new-tokens=N`` when the budget is the
    user's (``budget``: the tokens and their source), ``prompt-budget=strict`` when not official."""
    args = draft.personalizer_args
    # Ablations (pplug aggregation=mean...) must get columns of their own.
    parts = [draft.personalizer + (f"[{','.join(f'{k}={v}' for k, v in args)}]" if args else "")]
    if matrix.checkpoint is not None and not is_trainable(registry.get("personalizer", draft.personalizer).load()):
        # A prompt-only method given a checkpoint runs a fine-tuned generator: it must not share
        # a column (nor a baseline selector) with the same method zero-shot.
        parts[0] += " (fine-tuned)"
    if draft.retriever:
        parts += [draft.retriever, f"k={draft.k}"] if draft.k else [f"encoder={draft.retriever}"]
    parts.append(model)
    parts += settings
    tokens, source = budget
    if source != "task":  # the user's budget, not the task's: a setting of its own
        parts.append(f"max-new-tokens={tokens}")
    if matrix.prompt_budget != "official":  # a deviation shows in the column name
        parts.append(f"prompt-budget={matrix.prompt_budget}")
    # A display name: shown, recorded and sent to reporters (run names, tags), so never a secret
    # (a model named like the key, a key inside a URL-valued setting).
    return redact_text(" / ".join(parts))


def spec(
    draft: Draft,
    matrix: Matrix,
    registry: Registry,
    out_dir: Path,
    *,
    label: str,
    fingerprint: str,
    decode: str,
    budget: tuple[int, str],
    judges: Sequence[str],
    versions: Pairs,
) -> CellSpec:
    """The fully resolved :class:`CellSpec` of a planned cell, given what the run resolved for it
    (its ``label``, its data's ``fingerprint``, the ``decode`` mode, the generation ``budget`` and
    its source, the names of its judged metrics, the ``versions`` of its components' providers).

    Its id is ``{task}_{personalizer}_{retriever}_k{k}-{hash}``: the hash covers everything that
    changes predictions, the versions included; ``base_id`` hashes the same without them."""
    m = matrix
    pargs = draft.personalizer_args
    rargs = draft.retriever_args
    gargs = tuple(sorted(m.generator_args.items()))
    identity: dict[str, Any] = {
        "task": draft.task,
        "split": m.split,
        "data": fingerprint,
        "limit": m.limit,
        "personalizer": [draft.personalizer, pargs],
        "retriever": [draft.retriever, rargs],
        "k": draft.k,
        "generator": [draft.generator, draft.model, gargs],
        "preset": m.preset,
        "decode": decode,
        "seed": m.seed,
        "prompt_budget": m.prompt_budget,
        "checkpoint": str(m.checkpoint) if m.checkpoint else None,
    }
    targs = m.task_args_of(draft.task, registry)
    tokens, budget_source = budget
    # Added only when set, so the cells of runs without them keep their ids.
    if targs:
        identity["task_args"] = [list(pair) for pair in targs]
    if budget_source != "task":
        identity["max_new_tokens"] = tokens
    if judges:  # a judged metric's judge is part of the cell: two judges never share a row
        identity["judges"] = list(judges)
    if m.train_args:  # only trained cells' predictions depend on them
        if is_trainable(registry.get("personalizer", draft.personalizer).load()):
            identity["train"] = sorted(m.train_args.items())
    slug = "_".join(
        x
        for x in (
            draft.task,
            draft.personalizer,
            draft.retriever or "",
            f"k{draft.k}" if draft.retriever and draft.k else "",
        )
        if x
    )
    slug = slug.replace("+", "plus")
    base_id = f"{slug}-{stable_hash(identity, 10)}"
    # A plugin upgrade changes the cell: its results are recomputed (or reused on request).
    cell_id = f"{slug}-{stable_hash({**identity, 'versions': dict(versions)}, 10)}"
    return CellSpec(
        cell_id,
        label,
        draft.task,
        m.split,
        draft.personalizer,
        pargs,
        draft.retriever,
        rargs,
        draft.k,
        draft.generator,
        draft.model,
        gargs,
        decode,
        out_dir / cell_id,
        versions,
        base_id,
        targs,
        tokens,
        budget_source,
    )


# ---------------------------------------------------------------------------------------------
# The assembly
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """The components a cell (or a training run) is made of, by registry name and arguments."""

    task: str
    personalizer: str
    personalizer_args: Mapping[str, str] = field(default_factory=dict)
    retriever: str | None = None
    retriever_args: Mapping[str, str] = field(default_factory=dict)
    task_args: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: CellSpec) -> Choice:
        """A cell's components."""
        return cls(
            spec.task,
            spec.personalizer,
            dict(spec.personalizer_args),
            spec.retriever,
            dict(spec.retriever_args),
            dict(spec.task_args),
        )


@dataclass(frozen=True)
class Components:
    """A cell's components, built and ready: the task (with its options), the generator and the
    personalizer (its borrowed encoder given, ``setup`` done)."""

    task: Task
    generator: Generator
    personalizer: Personalizer


def assemble(
    spec: CellSpec | Choice,
    context: RunContext,
    registry: Registry,
    *,
    generator: Generator,
    task: Task | None = None,
    where: str = "lamp run",
) -> Components:
    """Build the personalizer of ``spec`` around its ``generator`` (loaded once and shared by
    the caller) and its task (built from ``spec`` unless given): created with its arguments,
    handed its retriever's text encoder when it uses one (a retriever without one is a one-line
    error naming ``where``), then ``setup``."""
    choice = Choice.of(spec) if isinstance(spec, CellSpec) else spec
    task = task or make_task(registry, choice.task, dict(choice.task_args))
    personalizer = registry.create("personalizer", choice.personalizer, context, **dict(choice.personalizer_args))
    if choice.retriever and uses_encoder(personalizer):
        retriever = registry.create("retriever", choice.retriever, context, **dict(choice.retriever_args))
        encoder = retriever.text_encoder()
        if encoder is None:
            problem, fix = no_encoder(choice.personalizer, choice.retriever, getattr(personalizer, "items_variant", None))
            raise lamp_error(problem, where=where, fix=fix[0].upper() + fix[1:] + ".")
        personalizer.use_encoder(encoder)
    personalizer.setup(task, generator, context)
    return Components(task, generator, personalizer)


# ---------------------------------------------------------------------------------------------
# The matrix file and the command line's selectors
# ---------------------------------------------------------------------------------------------

SEED_MAX = 2**32 - 1
"""The largest ``--seed`` any command (and a matrix file's ``seed``) takes: every seeded library
accepts it (NumPy's legacy seeding, and hence ``transformers.set_seed``, stops at 2**32 - 1)."""


def split_list(value: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def data_sources(value: Any, where: str) -> tuple[str | None, dict[str, str]]:
    """``--data``: ``NAME`` for every task, ``TASK=NAME`` for one, or a comma list of both
    (``lamp-7=demo,toy-sentiment=toy``); in a matrix file also a table ``{lamp-7 = "demo"}``.
    Returns the default source and the per-task ones."""
    if value is None:
        return None, {}
    if isinstance(value, dict):
        pairs = [f"{k}={v}" for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        pairs = [str(v) for v in value]
    else:
        pairs = split_list(str(value))
    if not [pair for pair in pairs if str(pair).strip()]:
        # `--data "$DATA"` with DATA unset would otherwise send every task to its default source.
        raise lamp_error(
            f"--data {str(value)!r} names no data source",
            where=where,
            fix="Pass e.g. --data demo (or --data lamp-7=demo), or leave --data out for each task's own source.",
        )
    default: str | None = None
    per_task: dict[str, str] = {}
    for pair in pairs:
        task_name, sep, source = pair.partition("=")
        if not sep:
            if default is not None and default != pair.strip():
                raise lamp_error(
                    f"--data names two default sources, {default!r} and {pair.strip()!r}",
                    where=where,
                    fix="Give one NAME, and TASK=NAME for the other tasks (e.g. --data demo,toy-sentiment=toy).",
                )
            default = pair.strip()
        elif not task_name.strip() or not source.strip():
            raise lamp_error(
                f"--data entry {pair!r} is not TASK=SOURCE",
                where=where,
                fix="Write e.g. --data lamp-7=demo,toy-sentiment=toy.",
            )
        else:
            name, source = task_name.strip(), source.strip()
            if per_task.get(name, source) != source:
                raise lamp_error(
                    f"--data gives task {name!r} two sources, {per_task[name]!r} and {source!r}",
                    where=where,
                    fix=f"Keep one of them (e.g. --data {name}={source}).",
                )
            per_task[name] = source
    return default, per_task


def component_args(pairs: list[str], option: str) -> dict[str, dict[str, str]]:
    """``key=value`` applies to every component of the kind; ``name:key=value`` to one of them."""
    result: dict[str, dict[str, str]] = {}
    for pair in pairs:
        target, sep, rest = pair.partition(":")
        if sep and "=" not in target:
            result.setdefault(target.strip().lower(), {}).update(parse_kv([rest], option))
        else:
            result.setdefault("*", {}).update(parse_kv([pair], option))
    return result


def read_config(path: Path) -> dict[str, Any]:
    """A matrix file (TOML): the same keys as the command's options (see examples/matrix.toml).

    Checked against :data:`CONFIG_SCHEMA` before any work: a missing file, a folder, bad UTF-8, a
    TOML syntax error (with its line), an unknown key (with the closest valid one) or a value of
    the wrong type or range is a one-line error naming the file and line."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    fix = "See examples/matrix.toml for the format."
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise lamp_error("matrix file not found", where=str(path), fix="Check the path. " + fix) from None
    except IsADirectoryError:
        raise lamp_error(
            "is a folder, not a matrix file", where=str(path), fix="Pass a .toml file, e.g. --config examples/matrix.toml."
        ) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise lamp_error(
            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x})", where=f"{path}:{line}", fix="Save the file as UTF-8."
        ) from None
    except OSError as exc:
        raise lamp_error(f"cannot read it ({exc.strerror or exc})", where=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+)(?:, column (\d+))?\)", message)
        where = f"{path}:{found.group(1)}" if found else str(path)
        message = re.sub(r"\s*\(at line \d+(?:, column \d+)?\)", "", message)
        raise lamp_error(f"invalid TOML: {message}", where=where, fix="Fix the syntax. " + fix) from None
    data = {key.replace("_", "-"): value for key, value in data.items()}
    check_config(data, path, text)
    return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _ints(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    if isinstance(value, str):
        items = split_list(value)
    try:
        return bool(items) and all((_is_int(v) or isinstance(v, str)) and int(v) >= 1 for v in items)
    except ValueError:
        return False


def _table(value: Any) -> bool:
    return isinstance(value, dict)


CONFIG_SCHEMA: dict[str, tuple[Callable[[Any], bool], str]] = {
    "task": (_names, 'a name or a list of names, e.g. ["lamp-7"]'),
    "personalizer": (_names, 'a name or a list of names, e.g. ["none", "ipa"]'),
    "retriever": (_names, 'a name or a list of names, e.g. ["bm25"]'),
    "generator": (_names, "a model or a list of models"),
    "k": (_ints, "a whole number >= 1 or a list of them, e.g. [1, 4]"),
    "split": (lambda v: isinstance(v, str), "a string: train, dev or test"),
    "data": (
        lambda v: isinstance(v, str) or (isinstance(v, dict) and all(isinstance(x, str) for x in v.values())),
        "a source as a string (lamp, demo) or a table of task = source",
    ),
    "data-dir": (lambda v: isinstance(v, str) and bool(v.strip()), "a folder path as a string"),
    "scheme": (lambda v: v in ("user", "time", "temporal"), '"user" or "time" (alias "temporal")'),
    "limit": (lambda v: _is_int(v) and v >= 1, "a whole number >= 1"),
    "preset": (lambda v: isinstance(v, str), "a preset name as a string (see `lamp models`)"),
    "seed": (lambda v: _is_int(v) and 0 <= v <= SEED_MAX, f"a whole number from 0 to {SEED_MAX}"),
    "decode": (lambda v: v in ("generate", "labels"), '"generate" or "labels"'),
    "reporter": (_names, 'a reporter name or a list of names, e.g. ["mlflow"]'),
    "prompt-budget": (lambda v: v in ("official", "strict"), '"official" or "strict"'),
    "out": (lambda v: isinstance(v, str) and bool(v.strip()), "a folder path as a string"),
    "batch-size": (lambda v: (_is_int(v) and v >= 1) or v == "auto", 'a whole number >= 1 or "auto"'),
    "num-beams": (lambda v: _is_int(v) and v >= 1, "a whole number >= 1"),
    "max-input-tokens": (lambda v: _is_int(v) and v >= 1, "a whole number >= 1"),
    "device": (lambda v: isinstance(v, str), "a string: auto, cpu, cuda or mps"),
    "checkpoint": (lambda v: isinstance(v, str) and bool(v.strip()), "a folder path as a string"),
    "retriever-args": (_table, "a table, e.g. [retriever-args.bm25]"),
    "personalizer-args": (_table, "a table, e.g. [personalizer-args.pplug]"),
    "generator-args": (_table, "a table, e.g. [generator-args]"),
    "task-args": (_table, "a table, e.g. [task-args] or [task-args.lamp-7]"),
    "train-args": (_table, "a table, e.g. [train-args]"),
    "judge": (lambda v: isinstance(v, str) and bool(v.strip()), 'a judge as a string, e.g. "openai:MODEL"'),
    "judge-args": (_table, "a table, e.g. [judge-args]"),
    "group": (lambda v: isinstance(v, list) and all(isinstance(g, dict) for g in v), "an array of tables ([[group]])"),
}
"""Every key of a matrix file: whether a value is valid, and what a valid one looks like."""


def check_config(data: dict[str, Any], path: Path, text: str = "") -> None:
    """One-line errors for unknown keys (with a did-you-mean) and values of the wrong type."""
    import difflib

    for key, value in data.items():
        where = f"{path}:{_line_of(text, key)}" if _line_of(text, key) else str(path)
        if key not in CONFIG_SCHEMA:
            close = difflib.get_close_matches(key, list(CONFIG_SCHEMA), n=1)
            hint = f"Did you mean {close[0]!r}? " if close else ""
            raise lamp_error(f"unknown key {key!r}", where=where, fix=f"{hint}Valid keys: {', '.join(CONFIG_SCHEMA)}.")
        valid, expected = CONFIG_SCHEMA[key]
        if not valid(value):
            raise lamp_error(f"{key} = {_show(value)} is not valid", where=where, fix=f"Write {expected}.")
        if key.endswith("-args"):
            _check_secrets(value, f"[{key}]", path, text)
        if key == "group":
            for group in value:
                check_config({k.replace("_", "-"): v for k, v in group.items()}, path, text)


def _check_secrets(table: dict[str, Any], name: str, path: Path, text: str) -> None:
    """A one-line error naming the file and line for a secret in an arguments table (nested
    tables such as ``[retriever-args.bm25]`` included)."""
    for key, value in table.items():
        if isinstance(value, dict):
            _check_secrets(value, f"{name.rstrip(']')}.{key}]", path, text)
            continue
        line = _line_of(text, str(key))
        check_args({str(key): value}, name, where=f"{path}:{line}" if line else str(path))


def _line_of(text: str, key: str) -> int | None:
    """The line of ``key = ...`` (or ``[key``) in a TOML text, for error messages."""
    variants = {key, key.replace("-", "_")}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip().lstrip("[").strip()
        for name in variants:
            if re.match(rf"{re.escape(name)}\s*(=|\]|\.)", stripped) or stripped.startswith(f'"{name}"'):
                return number
    return None


def _show(value: Any) -> str:
    import json

    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return split_list(str(value))


def _stringify(table: Any, where: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise lamp_error(f"{where} must be a table of key = value", fix="See examples/matrix.toml.")
    return {str(k).replace("-", "_"): str(v).lower() if isinstance(v, bool) else str(v) for k, v in table.items()}


# ---------------------------------------------------------------------------------------------
# A cell's task and its generation budget
# ---------------------------------------------------------------------------------------------


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
