"""The experiment runner: expands a matrix into cells, validates them all before any work, shares
expensive work across cells (data, rankings, loaded models), and runs each cell resumably.

A cell is one (task, personalizer, retriever, k, generator) combination on one split. Its id is a
hash of its resolved configuration, so re-running the same command finds the same folders: finished
cells are skipped, partial ones resume from their last whole batch (see :mod:`lamp_harness.store`).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lamp_harness import __version__, distributed
from lamp_harness.contracts import (
    Dataset,
    Example,
    Generator,
    Prediction,
    RunContext,
)
from lamp_harness.errors import LampError, lamp_error, warn
from lamp_harness.io import atomic_write_json, lamp_home, stable_hash
from lamp_harness.models import preset_generator_args
from lamp_harness.options import generation_budget, generator_kwargs, generator_spec, label_settings, make_task
from lamp_harness.prediction import chunk_size, predict, timing_summary, top_k
from lamp_harness.progress import ProgressBar
from lamp_harness.registry import REPORTERS_ENV, PluginHost, host
from lamp_harness.scores import score_cell
from lamp_harness.secrets import redact_text
from lamp_harness.store import METRICS, CellBusy, CellStore


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
class _Draft:
    task: str
    personalizer: str
    retriever: str | None
    k: int
    generator: str
    model: str | None
    retriever_args: tuple[tuple[str, str], ...] = ()
    personalizer_args: tuple[tuple[str, str], ...] = ()

    @property
    def generator_key(self) -> tuple[str, str | None]:
        return (self.generator, self.model)


class Runner:
    """Runs a :class:`Matrix`. Use :func:`run_matrix` unless you need the pieces."""

    def __init__(
        self,
        matrix: Matrix,
        out_dir: Path,
        *,
        force: bool = False,
        console: Any = None,
        plugin_host: PluginHost | None = None,
        progress: bool = True,
        allow_stale: bool = False,
    ) -> None:
        self.matrix = matrix
        self.out_dir = Path(out_dir)
        self.force = force
        self.allow_stale = allow_stale
        self.console = console
        self.progress = progress
        self.host = plugin_host or host()
        self.registry = self.host.registry
        self.world = distributed.current()
        self.context = RunContext(
            lamp_home=lamp_home(),
            preset=matrix.preset,
            seed=matrix.seed,
            device=distributed.device_for(matrix.device, self.world),
            prompt_budget=matrix.prompt_budget,
            force=force,
        )
        self._generators: dict[tuple[str, str | None], Generator] = {}
        self._checkpoint_stale: dict[str, Any] = {}
        self._datasets: dict[str, Dataset] = {}
        self._rankings: dict[tuple[str, str], dict[str, Any]] = {}

    # -- planning -------------------------------------------------------------------------------
    def plan(self) -> list[_Draft]:
        """The cells to run: the product (of each group), minus meaningless cells, with impossible
        ones rejected, all of them listed at once, before any work."""
        drafts: list[_Draft] = []
        problems: list[str] = []
        self.registry.get("preset", self.matrix.preset)  # a typo fails here, before any work
        for selection in self.matrix.selections():
            self._expand(selection, drafts, problems)
        self._check_task_data(drafts)
        self._check_task_args(drafts)
        # Import every factory now: a typo in a plugin's lazy target fails before any work.
        self.host.check_components(self._used_components(drafts))
        for name in dict.fromkeys(d.task for d in drafts):  # a bad --task-arg fails here too
            self.budget(name)
        for index, draft in enumerate(drafts):
            cls = self.registry.get("personalizer", draft.personalizer).load()
            if cls.retriever_use == "encoder" and draft.retriever:
                retriever = self.registry.create("retriever", draft.retriever, self.context, **dict(draft.retriever_args))
                if retriever.text_encoder() is None and self._items_use(drafts, draft.retriever):
                    # The retriever is in the matrix for other methods (none,ipa,pplug x bm25):
                    # this method keeps its own encoder, as a method without a retriever does.
                    drafts[index] = replace(draft, retriever=None, retriever_args=())
                    warn(
                        f"{draft.personalizer} uses a retriever's encoder and {draft.retriever!r} "
                        f"has none: its cell runs with {draft.personalizer}'s own encoder"
                        + (
                            f" (--personalizer {cls.items_variant} puts {draft.retriever}'s top items in the prompt)"
                            if cls.items_variant
                            else ""
                        )
                    )
                elif retriever.text_encoder() is None:
                    instead = (
                        f"; use --personalizer {cls.items_variant} to put its top items in the prompt instead"
                        if cls.items_variant
                        else ""
                    )
                    problems.append(
                        f"{self._label(draft)}: {draft.personalizer!r} uses a retriever's "
                        f"text encoder as its own, and {draft.retriever!r} has none (use a "
                        f"dense retriever such as contriever{instead})"
                    )
            if cls.requires_encoder_decoder:
                generator = self.generator(draft.generator_key)
                if not generator.is_encoder_decoder:
                    model = generator.describe().get("model", draft.model or draft.generator)
                    problems.append(
                        f"{self._label(draft)}: personalizer {draft.personalizer!r} needs an "
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

    def _items_use(self, drafts: Sequence[_Draft], retriever: str) -> bool:
        """Whether some cell of the plan uses ``retriever``'s ranked items."""
        return any(
            d.retriever == retriever and self.registry.get("personalizer", d.personalizer).load().retriever_use == "items"
            for d in drafts
        )

    def _expand(self, m: Matrix, drafts: list[_Draft], problems: list[str]) -> None:
        reg = self.registry
        tasks = [reg.get("task", t).name for t in m.tasks]
        personalizers = [reg.get("personalizer", p).name for p in m.personalizers]
        retrievers = [reg.get("retriever", r).name for r in m.retrievers]
        generators = [self._generator_spec(g) for g in m.generators]
        for task, pers, gen in itertools.product(tasks, personalizers, generators):
            cls = reg.get("personalizer", pers).load()
            options: list[tuple[str | None, int, tuple[tuple[str, str], ...]]]
            if not cls.accepts_retriever:
                options = [(None, 0, ())]
            elif retrievers and cls.retriever_use == "encoder":
                # The retriever lends its encoder, not items: k plays no part.
                options = [(r, 0, self._retriever_args(m, r)) for r in retrievers]
            elif retrievers:
                options = [(r, k, self._retriever_args(m, r)) for r in retrievers for k in m.ks]
            elif cls.default_retriever:
                name = reg.get("retriever", cls.default_retriever).name
                args = tuple(sorted({**cls.default_retriever_args, **dict(self._retriever_args(m, name))}.items()))
                options = [(name, k, args) for k in m.ks]
            elif cls.needs_retriever:
                problems.append(f"{pers} needs a retriever (add --retriever, e.g. {', '.join(reg.names('retriever')[:4])})")
                continue
            else:
                options = [(None, 0, ())]
            pargs = self._personalizer_args(m, pers)
            for retriever, k, rargs in options:
                draft = _Draft(task, pers, retriever, k, *gen, retriever_args=rargs, personalizer_args=pargs)
                if draft not in drafts:
                    drafts.append(draft)

    def _generator_spec(self, value: str | None) -> tuple[str, str | None]:
        return generator_spec(value, self.registry.names("generator"))

    def _used_components(self, drafts: Sequence[_Draft]) -> list[tuple[str, str]]:
        used: list[tuple[str, str]] = []
        for d in drafts:
            used += [("task", d.task), ("personalizer", d.personalizer), ("generator", d.generator)]
            if d.retriever:
                used.append(("retriever", d.retriever))
            source = self.data_source_name(d.task)
            if source is not None:
                used.append(("data_source", source))
        return used

    def _check_task_data(self, drafts: Sequence[_Draft]) -> None:
        """Each ``--data TASK=NAME`` names a task of the run, and no task gets two sources (two
        spellings of one task); otherwise a typo would silently send that task to its default source."""
        tasks = list(dict.fromkeys(d.task for d in drafts))
        chosen: dict[str, tuple[str, str]] = {}
        for name, source in self.matrix.task_data.items():
            task = self.registry.get("task", name).name
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

    def _check_task_args(self, drafts: Sequence[_Draft]) -> None:
        """Each ``--task-arg TASK:KEY=VALUE`` (``[task-args.TASK]``) names a task of the run, and no
        option is given two values under two spellings of one task; otherwise a typo in the task
        name would silently run the task without the option."""
        tasks = list(dict.fromkeys(d.task for d in drafts))
        chosen: dict[str, dict[str, tuple[str, str]]] = {}
        for name, table in self.matrix.task_args.items():
            if name == "*":
                continue
            task = self.registry.get("task", name).name
            if task not in tasks:
                key, value = next(iter(table.items()), ("KEY", "VALUE"))
                raise lamp_error(
                    f"--task-arg {name}:{key}={value} names a task this run does not include "
                    f"(its tasks: {', '.join(tasks)})",
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

    def data_source_name(self, task_name: str) -> str | None:
        """The data source a task reads: ``--data TASK=NAME``, else ``None`` when ``--data-dir``
        is given, else ``--data NAME``, else the task's declared ``data_source``, else ``lamp``."""
        from lamp_harness.data import DEFAULT_SOURCE
        from lamp_harness.registry import normalize

        m = self.matrix
        for name, source in m.task_data.items():
            if self.registry.get("task", name).name == task_name:
                return source
        if m.data_dir is not None:
            return None
        if m.data:
            return m.data
        declared = getattr(self.registry.get("task", task_name).load(), "data_source", None)
        return normalize(declared) if declared else DEFAULT_SOURCE

    # -- shared resources -----------------------------------------------------------------------
    def generator(self, key: tuple[str, str | None]) -> Generator:
        """The generator for ``(plugin, model)``, built once per run and shared by its cells."""
        if key not in self._generators:
            plugin, model = key
            factory = self.registry.get("generator", plugin).load()
            notes: list[str] = []
            kwargs = generator_kwargs(factory, self.matrix.generator_args, model, f"generator {plugin!r}", notes)
            for note in notes:
                self.context.note(note)
            # Rank 0 first: a model converted or downloaded on first use is written once.
            self._generators[key] = distributed.main_first(
                lambda: factory(self.context, **kwargs), f"loading generator {model or plugin}"
            )
        return self._generators[key]

    def dataset(self, task_name: str) -> Dataset:
        """The task's dataset for the run's split (loaded once, cut to ``--limit``)."""
        if task_name not in self._datasets:
            # Read once, by rank 0, and handed to the other ranks.
            self._datasets[task_name] = distributed.on_main(
                lambda: self._read_dataset(task_name), f"reading the {task_name} data"
            )
        return self._datasets[task_name]

    def _read_dataset(self, task_name: str, split: str | None = None) -> Dataset:
        """The run's split cut to ``--limit``, or another ``split`` of the same source, whole."""
        from lamp_harness.data import resolve_dataset

        m = self.matrix
        task = self.task(task_name)
        source = self.data_source_name(task_name)
        dataset = resolve_dataset(
            task,
            data=source,
            data_dir=m.data_dir if source is None else None,
            split=split or m.split,
            scheme=m.scheme,
            context=self.context,
        )
        if m.limit is not None and split is None:
            dataset = Dataset(dataset.task, dataset.split, dataset.examples[: m.limit], dataset.source, dataset.checksums)
        return dataset

    def rankings(self, task_name: str, retriever_name: str, args: tuple[tuple[str, str], ...]) -> Mapping[str, Any]:
        """Every example's full profile ranking by a retriever (cached on disk)."""
        key = (task_name, retriever_name, args)
        if key not in self._rankings:
            from lamp_harness.cache import rank_examples

            dataset = self.dataset(task_name)

            def rank() -> Mapping[str, Any]:
                task = self.task(task_name)
                retriever = self.registry.create("retriever", retriever_name, self.context, **dict(args))
                return rank_examples(retriever, task, dataset.fingerprint, dataset.examples, self.context)

            # Ranked once, by rank 0 (the only writer of the ranking cache), and handed on.
            self._rankings[key] = distributed.on_main(rank, f"ranking {task_name} with {retriever_name}")
        return self._rankings[key]

    def task_args(self, task_name: str) -> tuple[tuple[str, str], ...]:
        """The task's options: ``--task-arg KEY=VALUE`` for every task, overridden by
        ``--task-arg TASK:KEY=VALUE`` for this one."""
        args = dict(self.matrix.task_args.get("*", {}))
        for name, table in self.matrix.task_args.items():
            if name != "*" and self.registry.get("task", name).name == task_name:
                args.update(table)
        return tuple(sorted(args.items()))

    def task(self, task_name: str) -> Any:
        """The task built with its options (a bad option is a one-line error)."""
        return make_task(self.registry, task_name, dict(self.task_args(task_name)))

    def budget(self, task_name: str) -> tuple[int, str]:
        """The cell's generation budget for this task and its source (see
        :func:`~lamp_harness.options.generation_budget`)."""
        return generation_budget(self.task(task_name), self.matrix.generator_args, dict(self.task_args(task_name)))

    @staticmethod
    def _retriever_args(m: Matrix, name: str) -> tuple[tuple[str, str], ...]:
        args = dict(m.retriever_args.get("*", {}))
        args.update(m.retriever_args.get(name, {}))
        return tuple(sorted(args.items()))

    @staticmethod
    def _personalizer_args(m: Matrix, name: str) -> tuple[tuple[str, str], ...]:
        args = dict(m.personalizer_args.get("*", {}))
        args.update(m.personalizer_args.get(name, {}))
        return tuple(sorted(args.items()))

    # -- cells ----------------------------------------------------------------------------------
    def _label(self, draft: _Draft) -> str:
        args = draft.personalizer_args
        # Ablations (pplug aggregation=mean...) must get columns of their own.
        parts = [draft.personalizer + (f"[{','.join(f'{k}={v}' for k, v in args)}]" if args else "")]
        if self.matrix.checkpoint is not None and not getattr(
            self.registry.get("personalizer", draft.personalizer).load(), "trainable", False
        ):
            # A prompt-only method given a checkpoint runs a fine-tuned generator: it must not share
            # a column (nor a baseline selector) with the same method zero-shot.
            parts[0] += " (fine-tuned)"
        if draft.retriever:
            parts += [draft.retriever, f"k={draft.k}"] if draft.k else [f"encoder={draft.retriever}"]
        parts.append(self._model_name(draft))
        # --num-beams 4 vs the default are different methods: the label must tell them apart.
        try:
            parts += label_settings(
                self.registry.get("generator", draft.generator).load(),
                self.matrix.generator_args,
                preset_generator_args(self.matrix.preset, self.registry),
            )
        except (ImportError, LampError):  # a broken generator is reported where it is built
            pass
        budget, source = self.budget(draft.task)
        if source != "task":  # the user's budget, not the task's: a setting of its own
            parts.append(f"max-new-tokens={budget}")
        if self.matrix.prompt_budget != "official":  # a deviation shows in the column name
            parts.append(f"prompt-budget={self.matrix.prompt_budget}")
        # A display name: shown, recorded and sent to reporters (run names, tags), so never a secret
        # (a model named like the key, a key inside a URL-valued setting).
        return redact_text(" / ".join(parts))

    def _model_name(self, draft: _Draft) -> str:
        if draft.model is None and draft.generator == "hf":
            try:
                from lamp_harness.models import resolve_model

                return resolve_model("generator", self.context, None, materialize=False).name
            except (ImportError, LampError):
                return f"{self.matrix.preset} preset"
        return draft.model or draft.generator

    def _decode_for(self, task_name: str) -> str:
        task = self.task(task_name)
        # Label scoring needs a label set: generation tasks always generate.
        return self.matrix.decode if task.labels else "generate"

    def cell(self, draft: _Draft) -> CellSpec:
        """The fully resolved :class:`CellSpec` of a planned cell (its id hashes the identity)."""
        m = self.matrix
        dataset = self.dataset(draft.task)
        decode = self._decode_for(draft.task)
        pargs = draft.personalizer_args
        rargs = draft.retriever_args
        gargs = tuple(sorted(m.generator_args.items()))
        identity = {
            "task": draft.task,
            "split": m.split,
            "data": dataset.fingerprint,
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
        targs = self.task_args(draft.task)
        budget, budget_source = self.budget(draft.task)
        # Added only when set, so the cells of runs without them keep their ids.
        if targs:
            identity["task_args"] = [list(pair) for pair in targs]
        if budget_source != "task":
            identity["max_new_tokens"] = budget
        judges = self.judges(draft.task)
        if judges:  # a judged metric's judge is part of the cell: two judges never share a row
            identity["judges"] = [j.metric_name for j in judges]
        if m.train_args:  # only trained cells' predictions depend on them
            cls = self.registry.get("personalizer", draft.personalizer).load()
            if getattr(cls, "trainable", False):
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
        versions = self.component_versions(draft)
        # A plugin upgrade changes the cell: its results are recomputed (or reused on request).
        cell_id = f"{slug}-{stable_hash({**identity, 'versions': dict(versions)}, 10)}"
        return CellSpec(
            cell_id,
            self._label(draft),
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
            self.out_dir / cell_id,
            versions,
            base_id,
            targs,
            budget,
            budget_source,
        )

    def component_versions(self, draft: _Draft) -> tuple[tuple[str, str], ...]:
        """``(distribution, version)`` of every package providing one of the cell's components
        (task, data source, retriever, personalizer, generator), sorted."""
        wanted = [("task", draft.task), ("personalizer", draft.personalizer), ("generator", draft.generator)]
        if draft.retriever:
            wanted.append(("retriever", draft.retriever))
        source = self.data_source_name(draft.task)
        if source is not None:
            wanted.append(("data_source", source))
        return tuple(sorted({self.registry.provider(kind, name) for kind, name in wanted}))

    def resolved_config(self, spec: CellSpec, personalizer: Any, generator: Generator) -> dict[str, Any]:
        """The cell's ``config.json``: every resolved setting, the data, the versions."""
        dataset = self.dataset(spec.task)
        retriever = None
        if spec.retriever:
            retriever = {"name": spec.retriever, **dict(spec.retriever_args)}
        versions = {"lamp-harness": __version__}
        for plugin in self.host.loaded:
            versions[plugin.distribution] = plugin.version
        return {
            "cell_id": spec.cell_id,
            "label": spec.label,
            "task": spec.task,
            "split": spec.split,
            "scheme": self.matrix.scheme,
            "data": {
                "source": dataset.source,
                "checksums": dict(dataset.checksums),
                "fingerprint": dataset.fingerprint,
                "examples": len(dataset.examples),
            },
            "limit": self.matrix.limit,
            "personalizer": dict(personalizer.describe()) | dict(spec.personalizer_args),
            "retriever": retriever,
            "k": spec.k,
            "generator": {
                **dict(generator.describe()),
                "plugin": spec.generator,
                # what every request carried, whatever the generator's own default
                "max_new_tokens": spec.max_new_tokens,
            },
            "generation": {"max_new_tokens": spec.max_new_tokens, "max_new_tokens_from": spec.budget_source},
            "task_args": dict(spec.task_args),
            "decode": spec.decode,
            "prompt_budget": self.matrix.prompt_budget,
            "preset": self.matrix.preset,
            "preset_notes": list(self.context.events),
            "seed": self.matrix.seed,
            "checkpoint": str(self.matrix.checkpoint) if self.matrix.checkpoint else None,
            "versions": versions,
            "component_versions": dict(spec.versions),
            "base_id": spec.base_id,
            **(
                {"judges": [asdict(j) | {"metric_name": j.metric_name} for j in self.judges(spec.task)]}
                if self.judges(spec.task)
                else {}
            ),
        }

    def judges(self, task_name: str) -> list[Any]:
        """The judge of each judged metric of the task (``--judge`` or the metric's default)."""
        from lamp_harness.judge import JudgeChoice, resolve_judge

        task = self.registry.create("task", task_name)
        choice = JudgeChoice(self.matrix.judge, dict(self.matrix.judge_args))
        return [
            resolve_judge(self.registry, metric, choice, self.matrix.preset, self.context)
            for metric in getattr(task, "judged_metrics", ())
        ]

    def score(
        self, task: Any, spec: CellSpec, examples: Sequence[Example], done: Sequence[Prediction]
    ) -> tuple[Any, dict[str, Any] | None]:
        """The cell's metrics: the task's own, then its judged ones (judge calls cached under
        ``$LAMP_HOME``; the rationale goes to the cell's ``judgments.json``). Returns the scored
        cell and the judges' usage (``None`` without judged metrics)."""
        from lamp_harness.judge import judge_examples, write_judgments
        from lamp_harness.scores import with_metrics

        scored = score_cell(task, examples, done, seed=self.matrix.seed)
        metrics = {m.name: m for m in getattr(task, "judged_metrics", ())}
        if not metrics or not any(ex.gold is not None for ex in examples):
            return scored, None
        outputs = {p.example_id: p.output for p in done}
        judged = [
            judge_examples(
                task,
                metrics[j.metric],
                j,
                examples,
                outputs,
                registry=self.registry,
                context=self.context,
                console=self.console,
                progress=self.progress,
                label=f"{spec.label} ({spec.task})",
            )
            for j in self.judges(spec.task)
        ]
        write_judgments(spec.dir, judged)
        scored = with_metrics(scored, examples, [j.scores for j in judged], seed=self.matrix.seed)
        return scored, {"judges": [j.usage for j in judged]}

    # -- running --------------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        """Plan, check and run every cell; returns one summary per cell."""
        drafts = self.plan()
        specs = [self.cell(d) for d in drafts]
        if self.matrix.checkpoint is not None:
            self._check_checkpoint_versions(specs)
        info = RunInfo(self.out_dir, specs, self.matrix, self.context, self.console)
        for warning in self.host.warnings:  # e.g. a hook function missing @hookimpl: it would never run
            self._warn(warning)
        wanted = [*self.matrix.reporters, *os.environ.get(REPORTERS_ENV, "").split(",")]
        for name in self.host.enable_reporters(wanted):
            if self.console is not None:
                self.console.print(f"reporter [bold]{name}[/] enabled")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.notify("lamp_run_started", run=info)
        results = []
        # Cells sharing a generator run back to back, so a loaded model is reused.
        order = sorted(
            range(len(specs)),
            key=lambda i: (drafts[i].generator_key != drafts[0].generator_key, str(drafts[i].generator_key), i),
        )
        busy: list[tuple[int, CellBusy]] = []
        taken_by: list[str] = []  # a data-parallel job's cells that another process holds
        for i in order:
            if self.world.distributed:  # the ranks of a data-parallel job compute each cell together
                with ExitStack() as held:
                    # Rank 0 holds the cell's lock for the whole job (all ranks learn whether it got it),
                    # so a second job or a resume on the same --out cannot compute the cell meanwhile.
                    taken: str | None = None
                    if self.world.is_main:
                        try:
                            held.enter_context(CellStore(specs[i].dir).lock())
                        except CellBusy as exc:
                            taken = str(exc)
                    taken = distributed.broadcast(taken)
                    if taken is None:
                        results.append(self.run_cell(info, drafts[i], specs[i]))
                        continue
                taken_by.append(taken)
                continue
            # A cell another process is computing (a second `lamp run` on the same --out) is left
            # to it; this process does the other cells first, then waits for those.
            with ExitStack() as held:
                try:
                    held.enter_context(CellStore(specs[i].dir).lock())
                except CellBusy as exc:
                    busy.append((i, exc))
                    continue
                results.append(self.run_cell(info, drafts[i], specs[i]))
        if taken_by:
            # Waiting would hold every other rank in a collective until LAMP_DIST_TIMEOUT: the job
            # ends after the free cells, naming the cells another process is computing.
            raise lamp_error(
                f"{len(taken_by)} cell(s) are being computed by another job: {'; '.join(taken_by)}",
                fix="The other cells are done; run the same command again when that job has finished.",
            )
        for i, exc in busy:
            self._say(f"waiting for {specs[i].label}: {exc}")
            with CellStore(specs[i].dir).lock(wait=True):
                results.append(self.run_cell(info, drafts[i], specs[i]))
        self.notify("lamp_run_finished", run=info, results=results)
        return results

    def _check_checkpoint_versions(self, specs: Sequence[CellSpec]) -> None:
        """A ``--checkpoint`` trained with other versions of the cells' components is refused
        before any cell runs, or used with ``--allow-stale`` (its cells labelled ``(stale
        weights)``), exactly like weights trained before a cell."""
        from lamp_harness import training

        checkpoint = self.matrix.checkpoint
        assert checkpoint is not None
        for spec in specs:
            stale = training.checkpoint_staleness(checkpoint, dict(spec.versions))
            if stale is None:
                continue
            if not self.allow_stale:
                raise LampError(
                    f"{checkpoint}: the checkpoint was trained with other versions "
                    f"({stale.changed}) than {spec.label} ({spec.task}) runs with. Train it again "
                    "with `lamp train` (same options), or pass --allow-stale to use it anyway."
                )
            self._warn(
                f"{spec.label} ({spec.task}): using {checkpoint}, trained with other versions "
                f"({stale.changed}), because of --allow-stale"
            )
            self._checkpoint_stale[spec.cell_id] = stale

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Fire a lifecycle hook; in a data-parallel job only rank 0 reports."""
        if self.world.is_main:
            self.host.notify(hook, **kwargs)

    def _say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(f"[dim]{redact_text(text)}[/dim]", highlight=False, soft_wrap=True)

    def stale_cell(self, spec: CellSpec) -> tuple[CellStore, dict[str, str]] | None:
        """A finished cell in the run folder that differs from ``spec`` only by the versions of
        its components' distributions (its ``config.json`` has the same ``base_id``; cells from
        before versions were recorded have it as their folder name), with its versions."""
        if not self.out_dir.is_dir():
            return None
        for config_path in sorted(self.out_dir.glob("*/config.json")):
            folder = config_path.parent
            if folder == spec.dir:
                continue
            store = CellStore(folder)
            if not store.finished:
                continue
            try:
                config = store.read_config()
            except (LampError, OSError, ValueError):
                continue
            if config.get("base_id", folder.name) == spec.base_id:
                return store, dict(config.get("component_versions") or {})
        return None

    def _reuse_stale(self, info: RunInfo, spec: CellSpec) -> dict[str, Any] | None:
        found = self.stale_cell(spec)
        if found is None:
            return None
        store, versions = found
        now = dict(spec.versions)
        changed = ", ".join(f"{d} {versions.get(d, '?')} -> {v}" for d, v in now.items() if versions.get(d) != v)
        if not self.allow_stale:
            self._warn(
                f"{spec.label} ({spec.task}): the finished cell {store.dir.name} was computed with "
                f"other versions ({changed or 'unrecorded'}); recomputing it as {spec.cell_id} "
                "(pass --allow-stale to keep the old results)"
            )
            return None
        self._warn(
            f"{spec.label} ({spec.task}): keeping {store.dir.name}, computed with other versions "
            f"({changed or 'unrecorded'}), because of --allow-stale"
        )
        metrics = store.read_metrics()
        timing = {**store.read_timing(), "skipped": True, "stale": True}
        self.notify("lamp_cell_finished", run=info, cell=spec, metrics=metrics, timing=timing)
        return {
            "cell_id": store.dir.name,
            "label": spec.label,
            "task": spec.task,
            "metrics": metrics,
            "skipped": True,
            "stale": True,
            "dir": str(store.dir),
        }

    def _warn(self, message: str) -> None:
        import sys

        if not self.world.is_main:
            return
        message = redact_text(message)
        if self.console is not None:
            self.console.print(f"[yellow]warning[/]: {message}", soft_wrap=True)
        else:
            print(f"warning: {message}", file=sys.stderr)

    def run_cell(self, info: RunInfo, draft: _Draft, spec: CellSpec) -> dict[str, Any]:
        """Run one cell (skip it when finished, resume it when partial); returns its summary."""
        store = CellStore(spec.dir)
        if self.force and self.world.is_main:
            store.reset()
            store.remove_shards()
        # Every rank must take the same branch: rank 0 decides, and alone repairs.
        problem = None
        if self.world.is_main:
            problem = store.inconsistency([ex.id for ex in self.dataset(spec.task).examples])
            if problem is not None and (spec.dir / METRICS).exists():
                warn(
                    f"{spec.dir}: {problem}; repairing the cell (its valid predictions are kept, the rest "
                    "is predicted again)"
                )
                store.unfinish()
            elif problem is None and not self.allow_stale and self._stale_weights(store):
                # Kept earlier with --allow-stale: without it, the cell follows the versions again.
                self._warn(
                    f"{spec.label} ({spec.task}): its predictions were made with weights trained "
                    "by other versions (--allow-stale); recomputing it with weights trained by "
                    "these versions (pass --allow-stale to keep it)"
                )
                store.reset()
                problem = "stale weights"
        finished = distributed.broadcast(problem is None)
        if not finished and not self.force:
            reused = self._reuse_stale(info, spec)
            if reused is not None:
                return reused
        if finished:
            metrics = store.read_metrics()
            timing = {**store.read_timing(), "skipped": True}
            self.notify("lamp_cell_finished", run=info, cell=spec, metrics=metrics, timing=timing)
            return {
                "cell_id": spec.cell_id,
                "label": spec.label,
                "task": spec.task,
                "metrics": metrics,
                "skipped": True,
                "dir": str(spec.dir),
            }

        task = self.task(spec.task)
        dataset = self.dataset(spec.task)
        generator = self.generator(draft.generator_key)
        personalizer = self.registry.create("personalizer", spec.personalizer, self.context, **dict(spec.personalizer_args))
        if spec.retriever and personalizer.retriever_use == "encoder":
            retriever = self.registry.create("retriever", spec.retriever, self.context, **dict(spec.retriever_args))
            personalizer.use_encoder(retriever.text_encoder() or {})
        personalizer.setup(task, generator, self.context)
        personalizer.use_train_split(lambda: self._read_dataset(spec.task, split="train").examples)
        # Rank 0 first: it fills the embedding cache and trains; the others then only read.
        distributed.main_first(lambda: personalizer.prepare(task, dataset.examples), f"preparing {spec.personalizer}")
        restore, checkpoint, stale = distributed.main_first(
            lambda: self._prepare_training(personalizer, spec, task, generator), f"training {spec.personalizer}"
        )
        if stale is not None:  # weights kept by --allow-stale: the column says so
            spec = replace(spec, label=f"{spec.label} (stale weights)")
        try:
            summary = self._predict(info, spec, store, task, dataset, generator, personalizer, checkpoint, stale)
        finally:
            restore()
        if self.world.is_main:  # what the method produced on the way (PAG's summaries), kept with the cell
            for name, value in dict(getattr(personalizer, "artifacts", dict)()).items():
                atomic_write_json(spec.dir / name, value)
        return summary

    @staticmethod
    def _stale_weights(store: CellStore) -> bool:
        """Whether a finished cell was predicted with weights kept by ``--allow-stale``."""
        try:
            return bool(store.read_config().get("stale_weights"))
        except (LampError, OSError, ValueError):
            return False

    def _predict(
        self,
        info: RunInfo,
        spec: CellSpec,
        store: CellStore,
        task: Any,
        dataset: Dataset,
        generator: Generator,
        personalizer: Any,
        checkpoint: Path | None,
        stale: Any = None,
    ) -> dict[str, Any]:
        rankings = self.rankings(spec.task, spec.retriever, spec.retriever_args) if spec.retriever and spec.k > 0 else {}
        config = self.resolved_config(spec, personalizer, generator)
        config["checkpoint"] = str(checkpoint) if checkpoint else None
        if checkpoint:  # how the weights were trained, so a leaderboard can say it
            from lamp_harness.training import recorded_budget

            config["training"] = recorded_budget(checkpoint)
        config["stale_weights"] = stale.describe() if stale is not None else None
        if self.world.is_main:
            store.write_config(config)

        chunk = chunk_size(generator)
        if self.world.distributed or store.has_shards():
            return self._predict_sharded(info, spec, store, task, dataset, generator, personalizer, rankings, chunk)
        examples = dataset.examples
        done = store.recover_predictions(chunk, [ex.id for ex in examples])
        done_ids = {p.example_id for p in done}
        self.notify("lamp_cell_started", run=info, cell=spec, total=len(examples), done=len(done))

        usage_before = dict(generator.usage())
        started = time.perf_counter()
        with ProgressBar(self.console, self.progress, spec.label, len(examples), len(done)) as bar:

            def reported(batch: Sequence[Example], predictions: Sequence[Prediction]) -> None:
                for ex, pred in zip(batch, predictions, strict=True):
                    self.host.notify("lamp_example_predicted", cell=spec, example=ex, prediction=pred)
                bar.advance(len(batch))

            todo = [ex for ex in examples if ex.id not in done_ids]
            new = predict(
                task,
                personalizer,
                generator,
                todo,
                store,
                chunk=chunk,
                retrieved=lambda ex: top_k(ex, rankings, spec.k),
                decode=spec.decode,
                on_batch=reported,
                max_new_tokens=spec.max_new_tokens,
            )
        done.extend(new)
        # In split order, whatever the file order (a repaired cell): the bootstrap depends on order.
        position = {ex.id: i for i, ex in enumerate(examples)}
        done.sort(key=lambda p: position[p.example_id])
        wall = time.perf_counter() - started

        usage = {k: v - usage_before.get(k, 0) for k, v in generator.usage().items()}
        scored, judging = self.score(task, spec, examples, done)
        metrics = scored.metrics
        timing = timing_summary(done, len(new), wall)
        if usage:
            timing["usage"] = usage
        if judging:
            timing["judging"] = judging
        store.write_results(spec.task, spec.split, metrics, timing, scored.scores.to_json() if scored.scores else None)
        self.notify("lamp_cell_finished", run=info, cell=spec, metrics=metrics, timing=timing)
        return {
            "cell_id": spec.cell_id,
            "label": spec.label,
            "task": spec.task,
            "metrics": metrics,
            "skipped": False,
            "dir": str(spec.dir),
            "timing": timing,
        }

    def _predict_sharded(
        self,
        info: RunInfo,
        spec: CellSpec,
        store: CellStore,
        task: Any,
        dataset: Dataset,
        generator: Generator,
        personalizer: Any,
        rankings: Mapping[str, Any],
        chunk: int,
    ) -> dict[str, Any]:
        """The data-parallel prediction of a cell (also a 1-process resume of one).

        The batches are those of a 1-process run (``chunk`` consecutive examples), so every batch
        is generated exactly as one process would generate it; whole batches are dealt to ranks,
        balanced by prompt length. Each rank appends to its own shard; rank 0 merges the shards
        into ``predictions.jsonl`` in example order, then scores, times and reports.
        """
        world = self.world
        examples = dataset.examples
        batches = [examples[i : i + chunk] for i in range(0, len(examples), chunk)]
        # Resume by example id: whatever world size wrote them, whole batches already predicted
        # are kept; a batch cut short is predicted again, whole.
        kept = distributed.on_main(lambda: store.consolidate_shards(batches), f"reading {spec.label}'s earlier predictions")
        todo = [b for b, batch in enumerate(batches) if batch[0].id not in kept]

        def cost(batch: Sequence[Example]) -> float:
            # Prompt length, estimated from the input and the retrieved items it will carry.
            return sum(len(ex.input) + sum(len(str(item.fields)) for item in top_k(ex, rankings, spec.k)) for ex in batch)

        mine = [todo[i] for i in distributed.deal([cost(batches[b]) for b in todo], world.size)[world.rank]]
        self.notify("lamp_cell_started", run=info, cell=spec, total=len(examples), done=len(kept))
        shard = store.shard(world.rank)
        new: list[Prediction] = []
        started = time.perf_counter()
        with ProgressBar(self.console, self.progress, spec.label, sum(len(batches[b]) for b in mine)) as bar:
            for b in mine:
                new.extend(
                    predict(
                        task,
                        personalizer,
                        generator,
                        batches[b],
                        shard,
                        chunk=chunk,
                        retrieved=lambda ex: top_k(ex, rankings, spec.k),
                        decode=spec.decode,
                        on_batch=lambda batch, _: bar.advance(len(batch)),
                        max_new_tokens=spec.max_new_tokens,
                    )
                )
        wall = time.perf_counter() - started
        speeds = distributed.gather(
            {
                "rank": world.rank,
                "examples": len(new),
                "wall_s": round(wall, 3),
                "examples_per_s": round(len(new) / wall, 3) if wall > 0 and new else None,
            }
        )

        def merge() -> dict[str, Any]:
            assert speeds is not None
            done = store.merge_shards(examples, kept)
            for ex, prediction in zip(examples, done, strict=True):
                if ex.id not in kept:
                    self.host.notify("lamp_example_predicted", cell=spec, example=ex, prediction=prediction)
            scored, judging = self.score(task, spec, examples, done)
            metrics = scored.metrics
            longest = max(s["wall_s"] for s in speeds)
            timing = {
                **timing_summary(done, sum(s["examples"] for s in speeds), longest),
                "world_size": world.size,
                "ranks": speeds,
                **({"judging": judging} if judging else {}),
            }
            store.write_results(spec.task, spec.split, metrics, timing, scored.scores.to_json() if scored.scores else None)
            self.host.notify("lamp_cell_finished", run=info, cell=spec, metrics=metrics, timing=timing)
            return {
                "cell_id": spec.cell_id,
                "label": spec.label,
                "task": spec.task,
                "metrics": metrics,
                "skipped": False,
                "dir": str(spec.dir),
                "timing": timing,
            }

        return distributed.on_main(merge, f"merging {spec.label}'s predictions")

    def _prepare_training(
        self, personalizer: Any, spec: CellSpec, task: Any, generator: Generator
    ) -> tuple[Callable[[], None], Path | None, Any]:
        """Load ``--checkpoint`` into the personalizer, or train a trainable one first (cached by
        config hash and the versions of the components). Returns how to undo it (weights fine-tuned
        into a generator that other cells share are restored after the cell), the checkpoint used,
        and, when ``--allow-stale`` kept weights trained by other versions, what made them stale."""
        checkpoint = self.matrix.checkpoint
        if checkpoint is None and not getattr(personalizer, "trainable", False):
            return (lambda: None), None, None
        from lamp_harness import training

        restore: Callable[[], None] = lambda: None  # noqa: E731
        # Only a generator that overrides serve_fine_tuned loads weights itself (the checkpoint is
        # verified once, here or in load_checkpoint below).
        serves = getattr(type(generator), "serve_fine_tuned", None) not in (None, Generator.serve_fine_tuned)
        if checkpoint is not None and serves and not getattr(personalizer, "trainable", False):
            # An inference engine loads fine-tuned weights itself (it cannot be handed tensors).
            undo = generator.serve_fine_tuned(training.fine_tuned_weights(personalizer, checkpoint))
            if undo is not None:
                return undo, checkpoint, self._checkpoint_stale.get(spec.cell_id)
        if training.fine_tunes_generator(personalizer):
            module = generator.trainable_module()
            saved = {name: value.detach().clone() for name, value in module.state_dict().items()}
            restore = lambda: module.load_state_dict(saved)  # noqa: E731
        stale = self._checkpoint_stale.get(spec.cell_id)
        if checkpoint is not None:
            training.load_checkpoint(personalizer, checkpoint, generator=generator)
        else:
            checkpoint, stale = training.ensure_trained_for_cell(self, personalizer, spec, task, generator)
        return restore, checkpoint, stale


def run_matrix(
    matrix: Matrix,
    out_dir: Path,
    *,
    force: bool = False,
    console: Any = None,
    plugin_host: PluginHost | None = None,
    progress: bool = True,
    allow_stale: bool = False,
) -> list[dict[str, Any]]:
    """Run every cell of ``matrix`` into ``out_dir``; returns one summary per cell
    (``cell_id``, ``label``, ``task``, ``metrics``, ``skipped``, ``dir``).

    ``force`` recomputes finished cells; ``allow_stale`` keeps a finished cell computed with other
    versions of its plugins (with a warning) instead of recomputing it."""
    return Runner(
        matrix, out_dir, force=force, console=console, plugin_host=plugin_host, progress=progress, allow_stale=allow_stale
    ).run()
