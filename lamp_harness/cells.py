"""The cell: what a run is asked for (:class:`Matrix`), what one cell is (:class:`CellSpec`), the
plan that turns the one into the others, the rules of the personalizers' capability flags, and
the assembly of a cell's components (:func:`assemble`), which the runner and the trainer share.

A cell is one (task, personalizer, retriever, k, generator) combination on one split. Planning a
matrix takes the product of its selectors (of each ``[[group]]``), applies each personalizer's
capability flags (:func:`retriever_choice`: a method without retrieval drops the retriever, one
that borrows a retriever's encoder retrieves no items, one with a default retriever gets it...) and
rejects impossible cells, all of them at once, before any work (:func:`check_drafts`).

This module sits one floor below the runner and the trainer, and below the hook specs (which type
their arguments with :class:`CellSpec` and :class:`RunInfo`): it imports only the contracts and
small helpers, and is handed the registry it looks components up in (:class:`ComponentRegistry`),
so that no import leads from here back to the hook specs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from lamp_harness.contracts import Generator, Personalizer, RunContext, Task
from lamp_harness.errors import LampError, lamp_error, warn
from lamp_harness.options import generator_spec, make_task

Pairs = tuple[tuple[str, str], ...]
"""Sorted ``(key, value)`` string pairs: a component's arguments as a cell records them."""


class ComponentRegistry(Protocol):
    """What the plan and the assembly need of :class:`lamp_harness.registry.Registry` (passed in,
    not imported: the registry loads the hook specs, which import this module)."""

    def get(self, kind: str, name: str) -> Any:
        """The registered component (its ``name`` and ``load()``), or a one-line error."""

    def create(self, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        """A component instance: ``factory(*args, **kwargs)``."""

    def names(self, kind: str) -> list[str]:
        """The registered names of ``kind``, sorted."""


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
      where it comes from (see :func:`lamp_harness.options.generation_budget`).
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
    :class:`~lamp_harness.contracts.RunContext`) and ``console`` (a rich ``Console`` or ``None``)."""

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


def expand(matrix: Matrix, registry: ComponentRegistry) -> tuple[list[Draft], list[str]]:
    """The product of each selection of ``matrix`` (each ``[[group]]``, or the matrix itself)
    under the capability rules, without duplicates, in order; and the problems found (a method
    that needs a retriever and has none), to be reported with the others."""
    drafts: list[Draft] = []
    problems: list[str] = []
    for selection in matrix.selections():
        _expand(selection, registry, drafts, problems)
    return drafts, problems


def _expand(m: Matrix, reg: ComponentRegistry, drafts: list[Draft], problems: list[str]) -> None:
    tasks = [reg.get("task", t).name for t in m.tasks]
    personalizers = [reg.get("personalizer", p).name for p in m.personalizers]
    retrievers = [reg.get("retriever", r).name for r in m.retrievers]
    generators = [generator_spec(g, reg.names("generator")) for g in m.generators]
    for task, pers, gen in itertools.product(tasks, personalizers, generators):
        cls = reg.get("personalizer", pers).load()
        options: list[tuple[str | None, int, Pairs]] = []
        try:
            for retriever, k in itertools.product(retrievers or [None], m.ks):
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


def check_drafts(
    drafts: list[Draft],
    problems: list[str],
    registry: ComponentRegistry,
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


def _items_use(drafts: Sequence[Draft], retriever: str, registry: ComponentRegistry) -> bool:
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
    registry: ComponentRegistry,
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
