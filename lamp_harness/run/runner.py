"""The experiment runner, a scheduler: it has a :class:`~lamp_harness.run.cells.Matrix` planned and
checked (:mod:`lamp_harness.run.cells`, before any work), shares expensive work across cells (data,
rankings, loaded models), orders the cells, holds their locks, deals their batches to the ranks of
a data-parallel job, resumes them, and notifies the reporters.

A cell is one (task, personalizer, retriever, k, generator) combination on one split. Its id is a
hash of its resolved configuration, so re-running the same command finds the same folders: finished
cells are skipped, partial ones resume from their last whole batch (see :mod:`lamp_harness.run.store`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from lamp_harness import __version__
from lamp_harness.base import distributed
from lamp_harness.base.errors import LampError, lamp_error, warn
from lamp_harness.base.io import lamp_home
from lamp_harness.base.progress import ProgressBar
from lamp_harness.base.secrets import redact_text
from lamp_harness.inputs.models import preset_generator_args
from lamp_harness.plugin.contracts import (
    Dataset,
    Example,
    Generator,
    Prediction,
    RunContext,
)
from lamp_harness.plugin.options import generator_kwargs, label_settings
from lamp_harness.plugin.registry import REPORTERS_ENV, PluginHost, host
from lamp_harness.report.scores import score_cell
from lamp_harness.run import cells
from lamp_harness.run.cells import CellSpec, Draft, Matrix, RunInfo, generation_budget, make_task
from lamp_harness.run.prediction import chunk_size, predict, timing_summary, top_k
from lamp_harness.run.records import CellRecord, CellResult, Timing
from lamp_harness.run.store import CellBusy, CellStore, run_cells


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
            reporter=self._say if progress and self.world.is_main else None,
        )
        self._generators: dict[tuple[str, str | None], Generator] = {}
        self._checkpoint_stale: dict[str, Any] = {}
        self._datasets: dict[str, Dataset] = {}
        self._rankings: dict[tuple[str, str, tuple[tuple[str, str], ...]], Mapping[str, Any]] = {}

    # -- planning -------------------------------------------------------------------------------
    def plan(self) -> list[Draft]:
        """The cells to run: the product (of each group), minus meaningless cells, with impossible
        ones rejected, all of them listed at once, before any work (see :mod:`lamp_harness.run.cells`)."""
        self.registry.get("preset", self.matrix.preset)  # a typo fails here, before any work
        drafts, problems = cells.expand(self.matrix, self.registry)
        cells.check_task_data(self.matrix, drafts, self.registry)
        cells.check_task_args(self.matrix, drafts, self.registry)
        # Import every factory now: a typo in a plugin's lazy target fails before any work.
        self.host.check_components(cells.used_components(drafts, self.data_source_name))
        cells.check_options(self.matrix, self.registry, drafts)  # the Python API's runs too
        for name in dict.fromkeys(d.task for d in drafts):  # a bad --task-arg or --judge-arg fails here too
            self.budget(name)
            self.judges(name)
        return cells.check_drafts(drafts, problems, self.registry, self.context, generator=self.generator, label=self._label)

    def data_source_name(self, task_name: str) -> str | None:
        """The data source a task reads: ``--data TASK=NAME``, else ``None`` when ``--data-dir``
        is given, else ``--data NAME``, else the task's declared ``data_source``, else ``lamp``."""
        from lamp_harness.inputs.data import DEFAULT_SOURCE
        from lamp_harness.plugin.registry import normalize

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
        from lamp_harness.inputs.data import resolve_dataset

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
            from lamp_harness.inputs.cache import rank_examples

            dataset = self.dataset(task_name)

            def rank() -> Mapping[str, Any]:
                task = self.task(task_name)
                retriever = self.registry.create("retriever", retriever_name, self.context, **dict(args))
                return rank_examples(retriever, task, dataset.fingerprint, dataset.examples, self.context)

            # Ranked once, by rank 0 (the only writer of the ranking cache), and handed on.
            self._rankings[key] = distributed.on_main(rank, f"ranking {task_name} with {retriever_name}")
        return self._rankings[key]

    def task_args(self, task_name: str) -> tuple[tuple[str, str], ...]:
        """The task's options (see :meth:`~lamp_harness.run.cells.Matrix.task_args_of`)."""
        return self.matrix.task_args_of(task_name, self.registry)

    def task(self, task_name: str) -> Any:
        """The task built with its options (a bad option is a one-line error)."""
        return make_task(self.registry, task_name, dict(self.task_args(task_name)))

    def budget(self, task_name: str) -> tuple[int, str]:
        """The cell's generation budget for this task and its source (see
        :func:`~lamp_harness.run.cells.generation_budget`)."""
        return generation_budget(self.task(task_name), self.matrix.generator_args, dict(self.task_args(task_name)))

    # -- cells ----------------------------------------------------------------------------------
    def _label(self, draft: Draft) -> str:
        model = self._model_name(draft)
        settings: list[str] = []
        try:  # --num-beams 4 vs the default are different methods: the label must tell them apart
            settings = label_settings(
                self.registry.get("generator", draft.generator).load(),
                self.matrix.generator_args,
                preset_generator_args(self.matrix.preset, self.registry),
            )
        except (ImportError, LampError):  # a broken generator is reported where it is built
            pass
        return cells.label(draft, self.matrix, self.registry, model=model, settings=settings, budget=self.budget(draft.task))

    def _model_name(self, draft: Draft) -> str:
        if draft.model is None and draft.generator == "hf":
            try:
                from lamp_harness.inputs.models import resolve_model

                return resolve_model("generator", self.context, None, materialize=False).name
            except (ImportError, LampError):
                return f"{self.matrix.preset} preset"
        return draft.model or draft.generator

    def _decode_for(self, task_name: str) -> str:
        task = self.task(task_name)
        # Label scoring needs a label set: generation tasks always generate.
        return self.matrix.decode if task.labels else "generate"

    def cell(self, draft: Draft) -> CellSpec:
        """The fully resolved :class:`CellSpec` of a planned cell (its id hashes the identity)."""
        dataset = self.dataset(draft.task)
        decode = self._decode_for(draft.task)
        budget = self.budget(draft.task)
        judges = tuple(j.metric_name for j in self.judges(draft.task))
        versions = self.component_versions(draft)
        label = self._label(draft)
        return cells.spec(
            draft,
            self.matrix,
            self.registry,
            self.out_dir,
            label=label,
            fingerprint=dataset.fingerprint,
            decode=decode,
            budget=budget,
            judges=judges,
            versions=versions,
        )

    def component_versions(self, draft: Draft) -> tuple[tuple[str, str], ...]:
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
        from lamp_harness.run.judge import JudgeChoice, resolve_judge

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
        from lamp_harness.report.scores import with_metrics
        from lamp_harness.run.judge import judge_examples, write_judgments

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
    def run(self) -> list[CellResult]:
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
        results: list[CellResult] = []
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
        for i, reason in busy:
            self._say(f"waiting for {specs[i].label}: {reason}")
            with CellStore(specs[i].dir).lock(wait=True):
                results.append(self.run_cell(info, drafts[i], specs[i]))
        self.notify("lamp_run_finished", run=info, results=results)
        return results

    def _check_checkpoint_versions(self, specs: Sequence[CellSpec]) -> None:
        """A ``--checkpoint`` trained with other versions of the cells' components is refused
        before any cell runs, or used with ``--allow-stale`` (its cells labelled ``(stale
        weights)``), exactly like weights trained before a cell."""
        from lamp_harness.train import training

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
        for store in run_cells(self.out_dir):
            folder = store.dir
            if folder == spec.dir or not store.finished:
                continue
            try:
                config = store.read_record()
            except (LampError, OSError, ValueError):
                continue
            if config.get("base_id", folder.name) == spec.base_id:
                return store, dict(config.get("component_versions") or {})
        return None

    def _reuse_stale(self, info: RunInfo, spec: CellSpec) -> CellResult | None:
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
        timing = store.read_timing().with_(skipped=True, stale=True)
        self.notify("lamp_cell_finished", run=info, cell=spec, metrics=metrics, timing=timing)
        return CellResult(store.dir.name, spec.label, spec.task, tuple(metrics), True, store.dir, stale=True)

    def _warn(self, message: str) -> None:
        import sys

        if not self.world.is_main:
            return
        message = redact_text(message)
        if self.console is not None:
            self.console.print(f"[yellow]warning[/]: {message}", soft_wrap=True)
        else:
            print(f"warning: {message}", file=sys.stderr)

    def run_cell(self, info: RunInfo, draft: Draft, spec: CellSpec) -> CellResult:
        """Run one cell (skip it when finished, resume it when partial); returns its summary."""
        store = CellStore(spec.dir)
        if self.force and self.world.is_main:
            store.reset()
            store.remove_shards()
        # Every rank must take the same branch: rank 0 decides, and alone repairs.
        problem = None
        if self.world.is_main:
            problem = store.inconsistency([ex.id for ex in self.dataset(spec.task).examples])
            if problem is not None and store.has_metrics():
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
            timing = store.read_timing().with_(skipped=True)
            self.notify("lamp_cell_finished", run=info, cell=spec, metrics=metrics, timing=timing)
            return CellResult(spec.cell_id, spec.label, spec.task, tuple(metrics), True, spec.dir)

        dataset = self.dataset(spec.task)
        built = cells.assemble(spec, self.context, self.registry, generator=self.generator(draft.generator_key))
        task, generator, personalizer = built.task, built.generator, built.personalizer
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
                store.write_artifact(name, value)
        return summary

    @staticmethod
    def _stale_weights(store: CellStore) -> bool:
        """Whether a finished cell was predicted with weights kept by ``--allow-stale``."""
        try:
            return bool(store.read_record().stale_weights)
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
    ) -> CellResult:
        rankings = self.rankings(spec.task, spec.retriever, spec.retriever_args) if spec.retriever and spec.k > 0 else {}
        config = self.resolved_config(spec, personalizer, generator)
        config["checkpoint"] = str(checkpoint) if checkpoint else None
        # How the weights were trained, so a leaderboard can say it: a lamp train checkpoint's
        # record, or the method's own (per-user adapters).
        budget = None
        if checkpoint:
            from lamp_harness.train.training import recorded_budget

            budget = recorded_budget(checkpoint)
            config["training"] = budget.to_json() if budget is not None else None
        elif (budget := personalizer.training_budget()) is not None:
            config["training"] = budget.to_json()
        config["stale_weights"] = stale.describe() if stale is not None else None
        if self.world.is_main:
            store.write_record(CellRecord.from_json(config))

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
        measured = timing_summary(done, len(new), wall)
        if usage:
            measured["usage"] = usage
        if judging:
            measured["judging"] = judging
        timing = Timing.from_json(measured)
        store.write_results(spec.task, spec.split, metrics, timing, scored.scores.to_json() if scored.scores else None)
        self.notify("lamp_cell_finished", run=info, cell=spec, metrics=metrics, timing=timing)
        return CellResult(spec.cell_id, spec.label, spec.task, tuple(metrics), False, spec.dir, timing)

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
    ) -> CellResult:
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

        def merge() -> CellResult:
            assert speeds is not None
            done = store.merge_shards(examples, kept)
            for ex, prediction in zip(examples, done, strict=True):
                if ex.id not in kept:
                    self.host.notify("lamp_example_predicted", cell=spec, example=ex, prediction=prediction)
            scored, judging = self.score(task, spec, examples, done)
            metrics = scored.metrics
            longest = max(s["wall_s"] for s in speeds)
            timing = Timing.from_json(
                {
                    **timing_summary(done, sum(s["examples"] for s in speeds), longest),
                    "world_size": world.size,
                    "ranks": speeds,
                    **({"judging": judging} if judging else {}),
                }
            )
            store.write_results(spec.task, spec.split, metrics, timing, scored.scores.to_json() if scored.scores else None)
            self.host.notify("lamp_cell_finished", run=info, cell=spec, metrics=metrics, timing=timing)
            return CellResult(spec.cell_id, spec.label, spec.task, tuple(metrics), False, spec.dir, timing)

        return distributed.on_main(merge, f"merging {spec.label}'s predictions")

    def _prepare_training(
        self, personalizer: Any, spec: CellSpec, task: Any, generator: Generator
    ) -> tuple[Callable[[], None], Path | None, Any]:
        """Load ``--checkpoint`` into the personalizer, or train a trainable one first (cached by
        config hash and the versions of the components). Returns how to undo it (weights fine-tuned
        into a generator that other cells share are restored after the cell), the checkpoint used,
        and, when ``--allow-stale`` kept weights trained by other versions, what made them stale."""
        checkpoint = self.matrix.checkpoint
        if checkpoint is None and not cells.is_trainable(personalizer):
            return (lambda: None), None, None
        from lamp_harness.train import training

        restore: Callable[[], None] = lambda: None  # noqa: E731
        # Only a generator that overrides serve_fine_tuned loads weights itself (the checkpoint is
        # verified once, here or in load_checkpoint below).
        serves = getattr(type(generator), "serve_fine_tuned", None) not in (None, Generator.serve_fine_tuned)
        if checkpoint is not None and serves and not cells.is_trainable(personalizer):
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
            context = cells.CellContext(
                self.context, self.matrix, self.data_source_name(spec.task), self.progress, self.console, self.allow_stale
            )
            checkpoint, stale = training.ensure_trained_for_cell(spec, context, personalizer, task, generator)
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
) -> list[CellResult]:
    """Run every cell of ``matrix`` into ``out_dir``; returns one :class:`~lamp_harness.run.records.CellResult`
    per cell (``cell_id``, ``label``, ``task``, ``metrics``, ``skipped``, ``dir``, ``timing``).

    ``force`` recomputes finished cells; ``allow_stale`` keeps a finished cell computed with other
    versions of its plugins (with a warning) instead of recomputing it."""
    return Runner(
        matrix, out_dir, force=force, console=console, plugin_host=plugin_host, progress=progress, allow_stale=allow_stale
    ).run()
