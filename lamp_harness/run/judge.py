"""LLM-judged metrics: any registered generator as the judge, every call cached and resumable.

A task declares :class:`~lamp_harness.plugin.contracts.JudgedMetric` s and, per example, the judge's
questions (:meth:`Task.judge_prompts <lamp_harness.plugin.contracts.Task.judge_prompts>`), how an answer
is parsed (``judge_parse``) and how an example's answers combine (``judge_combine``). This module
knows no task and no generator: it resolves the judge the user chose (``--judge``/``--judge-arg``,
the same forms as ``--generator``/``--generator-arg``) or the metric's default, asks the
questions in batches with a progress bar, and keeps every answer in a SQLite file under
``$LAMP_HOME/judge/`` keyed by the judge's identity, the decoding temperature and the exact
prompt. A rerun, a resume after a kill, another matrix over the same outputs or ``lamp score`` on
an old run therefore sends nothing that was answered before; answers are committed batch by batch,
so a crash or a judge server going down loses at most the batch in flight.

The retry rule is the one of the LaMP-QA evaluator: the first try is greedy; the questions whose
answers do not parse are asked again, all together, with the temperature raised by 0.1 per round
(until it reaches 1) and nucleus sampling at ``top_p``; after ``max_retries`` retries an answer
that still does not parse scores 0. A judge that cannot sample (its generator rejects a
``temperature`` argument) cannot change its answer, so its unparsable answers score 0 at once.

With ``--judge-arg decode=labels`` the judge does not generate: for each question its generator
scores every answer the metric allows (:attr:`JudgedMetric.judge_choices
<lamp_harness.plugin.contracts.JudgedMetric.judge_choices>`) by log-likelihood, the label decoding of
classification tasks, and the best one is the answer. Such an answer always parses, so there are no
retries. It is a deviation from free-form judging, meant for small stand-in judges that cannot
write the official JSON.

The metric's stored name carries the judge: ``{name}@{model}:{prompt version}:{digest}``, the digest
covering the judge plugin, model, arguments and decoding, so two judges never share a row.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamp_harness.base.errors import LampError, lamp_error
from lamp_harness.base.io import stable_hash
from lamp_harness.base.progress import ProgressBar
from lamp_harness.plugin.contracts import (
    Example,
    ExampleScores,
    GenerationRequest,
    Generator,
    JudgedMetric,
    JudgePrompt,
    RunContext,
    Task,
)
from lamp_harness.plugin.options import check_component_options, generator_kwargs, generator_spec

if TYPE_CHECKING:
    from lamp_harness.plugin.catalog import Registry

CACHE_FILE = Path("judge") / "calls.sqlite"
JUDGMENTS = "judgments.json"
"""The per-example rationale file beside ``scores.json``: per judged metric, per example, each
question's raw judge answer, parsed score and number of tries."""
JUDGE_SETTINGS = ("parse_retries", "max_new_tokens", "decode")
"""``--judge-arg`` keys that set the judge's decoding rather than its generator: how often an
unparsable answer is asked again (the metric's ``max_retries``), the answer's token budget and
``decode`` (``generate``: free generation, parsed; ``labels``: the best of the metric's
``judge_choices`` by log-likelihood)."""
DECODES = ("generate", "labels")
BATCH = 16


@dataclass(frozen=True)
class JudgeChoice:
    """What the user asked for: ``--judge`` (``None``: the metric's default) and ``--judge-arg``."""

    spec: str | None = None
    args: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JudgeIdentity:
    """Everything that makes a judge's scores what they are (recorded in ``config.json``)."""

    metric: str
    plugin: str
    model: str | None
    model_name: str
    args: tuple[tuple[str, str], ...]
    prompt_version: str
    max_new_tokens: int
    max_retries: int
    top_p: float
    preset: str
    decode: str = "generate"
    """``generate`` (the official free-form judge) or ``labels`` (the best of ``choices``)."""
    choices: tuple[str, ...] = ()
    """The answers label decoding chooses from (empty when ``decode`` is ``generate``)."""

    @property
    def digest(self) -> str:
        """A short hash of the judge's settings (not of the metric's base name). Free-form
        judging leaves ``decode`` and ``choices`` out, so its digests are those of the judges
        recorded before label decoding existed."""
        settings = {k: v for k, v in asdict(self).items() if k not in ("metric", "model_name")}
        if self.decode == "generate":
            settings.pop("decode")
            settings.pop("choices")
        return stable_hash(settings, 6)

    @property
    def metric_name(self) -> str:
        """The stored and displayed metric name: ``{metric}@{model}:{prompt version}:{digest}``."""
        return f"{self.metric}@{self.model_name}:{self.prompt_version}:{self.digest}"

    def call_key(self, temperature: str, prompt: JudgePrompt) -> str:
        """The cache key of one call: what changes the judge's answer to it (not ``max_retries``)."""
        what: dict[str, Any] = {
            "plugin": self.plugin,
            "model": self.model,
            "args": list(self.args),
            "preset": self.preset,
            "max_new_tokens": self.max_new_tokens,
            "temperature": temperature,
            "top_p": self.top_p if temperature != "0.0" else None,
            "system": prompt.system,
            "user": prompt.user,
        }
        if self.decode != "generate":
            what.update(decode=self.decode, choices=list(self.choices))
        return hashlib.sha256(json.dumps(what, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def resolve_judge(
    registry: Registry, metric: JudgedMetric, choice: JudgeChoice | None, preset: str, context: RunContext | None = None
) -> JudgeIdentity:
    """The judge of ``metric`` for a run: the user's choice, else the metric's default for the
    preset. Judge settings (:data:`JUDGE_SETTINGS`) are taken out of the arguments."""
    choice = choice or JudgeChoice()
    spec: str | None
    if choice.spec:
        spec, args = choice.spec, dict(choice.args)
    else:
        spec, defaults = metric.preset_judges.get(preset, (metric.default_judge, metric.default_judge_args))
        args = {**dict(defaults), **dict(choice.args)}
    # The whole judge prompt must reach the judge (generators cut prompts to max_input_tokens).
    args.setdefault("max_input_tokens", str(metric.max_input_tokens))
    plugin, model = generator_spec(spec, registry.names("generator"))
    registry.get("generator", plugin)  # an unknown judge fails here, before any work
    owner = f"--judge-arg for {metric.name}"
    max_retries = _whole(args.pop("parse_retries", metric.max_retries), "parse_retries", owner)
    max_new_tokens = _whole(args.pop("max_new_tokens", metric.max_new_tokens), "max_new_tokens", owner)
    decode = str(args.pop("decode", "generate"))
    if decode not in DECODES:
        raise lamp_error(
            f"decode={decode!r} is not one of {', '.join(DECODES)}",
            where=owner,
            fix="Pass --judge-arg decode=generate (free-form, official) or decode=labels.",
        )
    if decode == "labels" and not metric.judge_choices:
        raise lamp_error(
            f"metric {metric.name!r} declares no judge_choices, so its judge cannot decode labels",
            where=owner,
            fix="Pass --judge-arg decode=generate.",
        )
    _check_judge_options(registry, plugin, model, args, owner)
    model_name = model or plugin
    if model is None and plugin == generator_spec(None, ())[0]:  # the default generator: the preset's model
        try:
            from lamp_harness.inputs.models import resolve_model

            ctx = context or RunContext(lamp_home=Path("."), preset=preset)
            model_name = resolve_model("generator", ctx, None, materialize=False).name
        except (ImportError, LampError):
            model_name = f"{preset}-{plugin}"
    return JudgeIdentity(
        metric.name,
        plugin,
        model,
        model_name.rstrip("/").split("/")[-1],
        tuple(sorted(args.items())),
        metric.prompt_version,
        max_new_tokens,
        0 if decode == "labels" else max_retries,
        metric.top_p,
        preset,
        decode,
        tuple(metric.judge_choices) if decode == "labels" else (),
    )


def _check_judge_options(registry: Registry, plugin: str, model: str | None, args: Mapping[str, str], owner: str) -> None:
    """The judge generator's arguments against its declared options, before any work (a typo in
    ``--judge-arg`` would otherwise surface only when the first cell is scored)."""
    factory = registry.get("generator", plugin).load()
    kwargs = generator_kwargs(factory, args, model)
    kwargs.pop("model", None)
    check_component_options(registry, [("generator", plugin, kwargs)], owner=f"{owner}: judge")


def _whole(value: Any, key: str, owner: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = -1
    if number < 0:
        raise lamp_error(f"{key}={value!r} is not a whole number >= 0", where=owner, fix=f"Pass e.g. --judge-arg {key}=4.")
    return number


class JudgeCache:
    """Judge answers on disk (SQLite, WAL): one row per call key, committed batch by batch."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), timeout=120)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
            "prompt_tokens INTEGER, generated_tokens INTEGER, created REAL)"
        )
        self._db.commit()

    def get_many(self, keys: Sequence[str]) -> dict[str, tuple[str, int, int]]:
        """The stored ``(answer, prompt tokens, generated tokens)`` of every known key."""
        found: dict[str, tuple[str, int, int]] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 500):
            part = unique[i : i + 500]
            rows = self._db.execute(
                f"SELECT key, text, prompt_tokens, generated_tokens FROM calls WHERE key IN ({','.join('?' * len(part))})",
                part,
            ).fetchall()
            found.update({k: (t, int(p or 0), int(g or 0)) for k, t, p, g in rows})
        return found

    def put_many(self, rows: Sequence[tuple[str, str, int, int]]) -> None:
        """Store ``(key, answer, prompt tokens, generated tokens)`` rows in one transaction."""
        now = time.time()
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?)", [(k, t, p, g, now) for k, t, p, g in rows]
            )

    def close(self) -> None:
        """Close the database."""
        self._db.close()


@dataclass(frozen=True)
class Judged:
    """One judged metric over a cell: the per-example scores (named after the judge), the
    per-example rationale and what judging cost."""

    identity: JudgeIdentity
    scores: ExampleScores
    rationale: dict[str, Any]
    usage: dict[str, Any]


class _Asker:
    """Sends judge questions at one temperature, through the cache, in batches."""

    def __init__(
        self, registry: Registry, context: RunContext, identity: JudgeIdentity, cache: JudgeCache, usage: dict[str, Any]
    ) -> None:
        self.registry, self.context, self.identity, self.cache, self.usage = registry, context, identity, cache, usage
        self._generators: dict[str, Generator | None] = {}

    def generator(self, temperature: str) -> Generator | None:
        """The judge generator decoding at ``temperature`` (``None``: it cannot sample)."""
        if temperature not in self._generators:
            ident = self.identity
            args = dict(ident.args)
            if temperature != "0.0":
                args.update(temperature=temperature, top_p=str(ident.top_p))
            factory = self.registry.get("generator", ident.plugin).load()
            kwargs = generator_kwargs(factory, args, ident.model, f"judge {ident.plugin!r}")
            try:
                self._generators[temperature] = factory(self.context, **kwargs)
            except LampError:
                if temperature == "0.0":
                    raise
                self._generators[temperature] = None  # it cannot sample: retries cannot change an answer
        return self._generators[temperature]

    def ask(self, questions: Sequence[tuple[Example, JudgePrompt]], temperature: str, bar: ProgressBar) -> list[str] | None:
        """The judge's answers to ``questions`` (cached ones first), or ``None`` when it cannot
        decode at ``temperature``."""
        keys = [self.identity.call_key(temperature, q) for _, q in questions]
        known = self.cache.get_many(keys)
        self.usage["cached"] += sum(1 for k in keys if k in known)
        todo = [i for i, k in enumerate(keys) if k not in known]
        bar.advance(len(questions) - len(todo))
        if todo:
            generator = self.generator(temperature)
            if generator is None:
                return None
            before = dict(generator.usage())
            for start in range(0, len(todo), BATCH):
                part = todo[start : start + BATCH]
                requests = [
                    GenerationRequest(
                        example_id=f"{questions[i][0].id}#{questions[i][1].key}",
                        prompt=f"{questions[i][1].system}\n\n{questions[i][1].user}",
                        choices=self.identity.choices,
                        max_new_tokens=self.identity.max_new_tokens,
                        metadata={
                            "judge": self.identity.metric_name,
                            "system": questions[i][1].system,
                            "user": questions[i][1].user,
                        },
                    )
                    for i in part
                ]
                if self.identity.decode == "labels":
                    answers = generator.generate(requests, decode="labels")
                else:
                    answers = generator.generate(requests)
                rows = [(keys[i], a.text, a.prompt_tokens, a.generated_tokens) for i, a in zip(part, answers, strict=True)]
                self.cache.put_many(rows)
                for key, text, p, g in rows:
                    known[key] = (text, p, g)
                self.usage["calls"] += len(part)
                self.usage["prompt_tokens"] += sum(r[2] for r in rows)
                self.usage["generated_tokens"] += sum(r[3] for r in rows)
                bar.advance(len(part))
            for k, v in generator.usage().items():
                self.usage.setdefault("generator", {})
                self.usage["generator"][k] = self.usage["generator"].get(k, 0) + v - before.get(k, 0)
        return [known[k][0] for k in keys]


def temperatures(max_retries: int) -> list[str]:
    """The temperature of each try, as the official evaluator steps it: 0, then +0.1 per retry
    while below 1 (float steps, so the 11th try is at 1.1), printed to one decimal."""
    values, t = [], 0.0
    for _ in range(max_retries + 1):
        values.append(f"{t:.1f}")
        if t < 1.0:
            t += 0.1
    return values


def judge_examples(
    task: Task,
    metric: JudgedMetric,
    identity: JudgeIdentity,
    examples: Sequence[Example],
    outputs: Mapping[str, str],
    *,
    registry: Registry,
    context: RunContext,
    console: Any = None,
    progress: bool = True,
    label: str = "",
) -> Judged:
    """Judge ``outputs`` (parsed answers by example id) of ``examples`` with ``identity``'s judge."""
    from lamp_harness.base.io import lamp_home
    from lamp_harness.inputs import metrics as metric_helpers

    judged = [ex for ex in examples if ex.id in outputs]
    questions = {ex.id: list(task.judge_prompts(metric.name, ex, outputs[ex.id])) for ex in judged}
    results: dict[tuple[str, str], dict[str, Any]] = {}
    usage: dict[str, Any] = {
        "judge": identity.metric_name,
        "questions": sum(len(q) for q in questions.values()),
        "calls": 0,
        "cached": 0,
        "prompt_tokens": 0,
        "generated_tokens": 0,
        "unparsable": 0,
        "retried": 0,
    }
    cache = JudgeCache(lamp_home() / CACHE_FILE)
    asker = _Asker(registry, context, identity, cache, usage)
    started = time.perf_counter()
    pending = [(ex, q) for ex in judged for q in questions[ex.id]]
    try:
        with ProgressBar(console, progress, f"judging {label or identity.metric_name}", usage["questions"]) as bar:
            for attempt, temperature in enumerate(temperatures(identity.max_retries), start=1):
                if not pending:
                    break
                if attempt > 1:
                    usage["retried"] += len(pending)
                    bar = _restart(bar, console, progress, f"retry {attempt - 1} at temperature {temperature}", len(pending))
                answers = asker.ask(pending, temperature, bar)
                wrong = []
                for index, (ex, q) in enumerate(pending):
                    text = answers[index] if answers is not None else results[(ex.id, q.key)]["raw"]
                    try:
                        score = float(task.judge_parse(metric.name, text))
                        results[(ex.id, q.key)] = {
                            "key": q.key,
                            "label": q.label,
                            "raw": text,
                            "score": score,
                            "tries": attempt,
                        }
                    except ValueError:
                        results[(ex.id, q.key)] = {
                            "key": q.key,
                            "label": q.label,
                            "raw": text,
                            "score": 0.0,
                            "tries": attempt,
                            "parsed": False,
                        }
                        if answers is not None:
                            wrong.append((ex, q))
                pending = wrong
    finally:
        cache.close()
    usage["unparsable"] = sum(1 for r in results.values() if r.get("parsed") is False)
    usage["seconds"] = round(time.perf_counter() - started, 3)
    values, rationale = [], {}
    for ex in judged:
        verdicts = [results[(ex.id, q.key)] for q in questions[ex.id]]
        value = float(task.judge_combine(metric.name, ex, [a["score"] for a in verdicts]))
        values.append(value)
        rationale[ex.id] = {"score": value, "questions": verdicts}
    scores = metric_helpers.example_scores(
        identity.metric_name,
        [[v] for v in values],
        statistic="mean",
        higher_is_better=metric.higher_is_better,
        ids=[ex.id for ex in judged],
    )
    return Judged(identity, scores, rationale, usage)


def _restart(bar: ProgressBar, console: Any, progress: bool, description: str, total: int) -> ProgressBar:
    bar.__exit__(None, None, None)
    return ProgressBar(console, progress, description, total).__enter__()


def write_judgments(directory: Path, judged: Sequence[Judged]) -> None:
    """Add (or replace) each judged metric's rationale in the cell's :data:`JUDGMENTS` file."""
    from lamp_harness.run.store import CellStore

    store = CellStore(Path(directory))
    data = store.read_artifact(JUDGMENTS)
    for j in judged:
        data[j.identity.metric_name] = {"judge": asdict(j.identity), "usage": j.usage, "examples": j.rationale}
    store.write_artifact(JUDGMENTS, data)


def cell_folders(paths: Sequence[Path]) -> list[Path]:
    """The finished cells (folders with ``config.json`` and ``metrics.json``) in ``paths``: cell
    folders themselves or run folders holding them."""
    from lamp_harness.run.store import CellStore, run_cells

    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if CellStore(path).has_results():
            found.append(path)
        elif path.is_dir():
            found += [cell.dir for cell in run_cells(path) if cell.has_results()]
        else:
            raise lamp_error(
                "is not a run folder or a cell folder",
                where=str(path),
                fix="Pass the --out folder of a `lamp run`, or one of its cell folders.",
            )
    return list(dict.fromkeys(found))


def score_cells(
    paths: Sequence[Path], choice: JudgeChoice, *, console: Any = None, progress: bool = True
) -> list[dict[str, Any]]:
    """``lamp score``: judge the finished cells in ``paths`` with ``choice`` (or each judged
    metric's default for the cell's preset) without generating. Each judge's metric is added to
    (or replaces the same judge's metric in) ``metrics.json`` and ``scores.json``; the rationale
    goes to ``judgments.json``, the cost to ``timing.json`` and the judge to ``config.json``.
    Cells of tasks without judged metrics are left as they are. Returns one summary per cell."""
    from lamp_harness.plugin.registry import host
    from lamp_harness.report.scores import Scored, read_scores, recorded_dataset, with_metrics
    from lamp_harness.run.store import CellStore

    registry = host().registry
    cells = cell_folders(paths)
    if not cells:
        raise lamp_error(
            "no finished cells found",
            where=", ".join(str(p) for p in paths),
            fix="Run `lamp run` first; `lamp score` judges finished cells.",
        )
    summaries = []
    for folder in cells:
        store = CellStore(folder)
        config = store.read_record()
        task = registry.create("task", str(config.task))
        metrics = tuple(getattr(task, "judged_metrics", ()))
        if not metrics:
            summaries.append({"dir": str(folder), "task": task.name, "judged": []})
            continue
        with store.lock(wait=True):
            task, dataset = recorded_dataset(folder, config)
            predictions = store.read_predictions()
            outputs = {p.example_id: p.output for p in predictions}
            examples = [ex for ex in dataset.examples if ex.id in outputs]
            preset = str(config.preset or "offline")
            seed = int(config.seed or 0)
            context = RunContext(lamp_home=_home(), preset=preset, seed=seed)
            judged = [
                judge_examples(
                    task,
                    m,
                    resolve_judge(registry, m, choice, preset, context),
                    examples,
                    outputs,
                    registry=registry,
                    context=context,
                    console=console,
                    progress=progress,
                    label=f"{config.label if 'label' in config else folder.name} ({task.name})",
                )
                for m in metrics
            ]
            scored = with_metrics(
                Scored(store.read_metrics(), read_scores(folder)), examples, [j.scores for j in judged], seed=seed
            )
            timing = store.read_timing()
            runs = [
                u
                for u in (timing.judging or {}).get("judges", [])
                if u.get("judge") not in {j.identity.metric_name for j in judged}
            ]
            timing = timing.with_(judging={"judges": runs + [j.usage for j in judged]})
            names = {x.identity.metric_name for x in judged}
            recorded = [j for j in config.judges or [] if j.get("metric_name") not in names]
            judges = recorded + [asdict(j.identity) | {"metric_name": j.identity.metric_name} for j in judged]
            store.write_record(config.with_(judges=judges))
            write_judgments(folder, judged)
            store.write_results(
                task.name,
                str(config.split),
                scored.metrics,
                timing,
                scored.scores.to_json() if scored.scores else None,
            )
        summaries.append(
            {
                "dir": str(folder),
                "task": task.name,
                "label": config.label,
                "judged": [
                    {"metric": j.identity.metric_name, "value": float(j.scores.rows.mean()), **j.usage} for j in judged
                ],
            }
        )
    return summaries


def _home() -> Path:
    from lamp_harness.base.io import lamp_home

    return lamp_home()
