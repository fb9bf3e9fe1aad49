"""Per-example scores of a cell: what paired significance tests and breakdowns are computed from.

When a task offers per-example sufficient statistics (:meth:`Task.example_scores
<lamp_harness.plugin.contracts.Task.example_scores>`), scoring a cell derives its metrics from them and the
run store keeps them in ``scores.json`` beside the predictions, with each example's profile size
and asking user (when the data identifies users). Cells scored before that file existed are
rescored from their ``predictions.jsonl`` and the golds of the data recorded in ``config.json``,
provided those files are still on this machine and their checksums match; the result is saved as
their ``scores.json``.

``scores.json``::

    {"ids": [...], "profile_size": [...], "user": [... or null],
     "metrics": [{"name": "f1", "higher_is_better": true, "statistic": "macro_f1",
                  "rows": [[...], ...]}, ...],
     "predictions": {"count": 40, "sha256": "..."}}

``predictions`` is the checksum of the ``predictions.jsonl`` the scores were computed from (the
run store adds it, and records the checksum of the whole file in ``metrics.json``). Before any
test or breakdown uses a cell's scores, :func:`cell_scores` verifies them (:func:`verify`,
:func:`edited`): the checksums match the predictions and the file, the ids are the predicted
ids exactly once, every value is finite, every profile size a count, and each metric recomputed
from the rows is the value ``metrics.json`` records. Scores that fail are recomputed from the
predictions and the data, or refused with a note; they are never used. Files written before the
checksum existed are verified by rescoring where the data is on this machine, else by the other
checks.

Nothing here knows a concrete task or metric: statistics are named by how they combine
(:data:`lamp_harness.inputs.metrics.STATISTICS`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lamp_harness.base.errors import LampError, lamp_error
from lamp_harness.plugin.contracts import Dataset, Example, ExampleScores, MetricResult, Prediction, Task
from lamp_harness.run.records import CellRecord
from lamp_harness.run.store import SCORES, CellStore


@dataclass(frozen=True)
class CellScores:
    """A cell's per-example scores: one :class:`ExampleScores` per metric over the same ``ids``,
    and per example the asking user's profile size and user key (``None`` when unknown)."""

    ids: tuple[str, ...]
    metrics: tuple[ExampleScores, ...]
    profile_size: tuple[int, ...] | None = None
    user: tuple[str, ...] | None = None
    predictions: tuple[str, int] | None = None
    """``(sha256, count)`` of the ``predictions.jsonl`` these scores were computed from; ``None``
    in files written before the checksum was recorded."""

    def metric(self, name: str) -> ExampleScores | None:
        """The scores of metric ``name``, or ``None``."""
        return next((m for m in self.metrics if m.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """The ``scores.json`` object."""
        return {
            "ids": list(self.ids),
            "profile_size": list(self.profile_size) if self.profile_size is not None else None,
            "user": list(self.user) if self.user is not None else None,
            "metrics": [
                {
                    "name": m.name,
                    "higher_is_better": m.higher_is_better,
                    "statistic": m.statistic,
                    "rows": [[_compact(x) for x in row] for row in m.rows.tolist()],
                }
                for m in self.metrics
            ],
        } | (
            {"predictions": {"count": self.predictions[1], "sha256": self.predictions[0]}}
            if self.predictions is not None
            else {}
        )


def _compact(x: float) -> float | int:
    """Whole numbers (confusion counts, 0/1 correctness) as ints: smaller files, same values."""
    return int(x) if float(x).is_integer() else x


@dataclass(frozen=True)
class Scored:
    """What scoring a cell gives: the metrics, and the per-example scores behind them when the
    task offers them."""

    metrics: list[MetricResult]
    scores: CellScores | None


def user_key(example: Example) -> str | None:
    """Who asked ``example``: questions whose profiles hold the same item ids come from the same
    user. ``None`` when the profile items carry no ids of their own (positions stand in for
    them), since positions say nothing about identity."""
    if not example.profile or any(item.id == str(item.position) for item in example.profile):
        return None
    digest = hashlib.sha256("\n".join(sorted(item.id for item in example.profile)).encode())
    return digest.hexdigest()[:12]


def score_cell(task: Task, examples: Sequence[Example], predictions: Sequence[Prediction], *, seed: int) -> Scored:
    """Score ``predictions`` against the golds of ``examples``: per-example statistics and the
    metrics derived from them, or the task's own :meth:`score` when it offers no statistics."""
    from lamp_harness.inputs import metrics

    golds = {ex.id: ex.gold for ex in examples if ex.gold is not None}
    if not golds:
        return Scored([], None)  # test split: golds are withheld; export the predictions instead
    outputs = {p.example_id: p.output for p in predictions if p.example_id in golds}
    wanted = {i: golds[i] for i in outputs}
    per_example = list(task.example_scores(outputs, wanted) or [])
    if per_example:
        results = [metrics.summarize(s, seed=seed) for s in per_example]
    else:
        results, per_example = derived_example_scores(task, outputs, wanted, seed=seed)
        if not per_example:
            return Scored(results, None)
    ids = per_example[0].ids
    if any(s.ids != ids for s in per_example):
        raise ValueError(f"task {task.name!r}: example_scores returned metrics over different ids")
    by_id = {ex.id: ex for ex in examples}
    users = [user_key(by_id[i]) for i in ids]
    scores = CellScores(
        ids=tuple(ids),
        metrics=tuple(per_example),
        profile_size=tuple(len(by_id[i].profile) for i in ids),
        user=tuple(u or "" for u in users) if all(users) else None,
    )
    return Scored(results, scores)


def derived_example_scores(
    task: Task, outputs: Mapping[str, str], golds: Mapping[str, str], *, seed: int
) -> tuple[list[MetricResult], list[ExampleScores]]:
    """``task.score``'s metrics, and the per-example scores behind them when the task computes
    them with the helpers of :mod:`lamp_harness.inputs.metrics` (else ``[]``).

    The helpers report the rows they summarize (:func:`lamp_harness.inputs.metrics.capturing`); each
    example is scored alone to learn its own row, and the rows are kept only when, combined,
    they give exactly the values ``task.score`` reports on all the examples (a metric computed
    some other way, or over examples the task filters, gives no rows rather than wrong ones)."""
    import math

    import numpy as np

    from lamp_harness.inputs import metrics

    with metrics.capturing() as whole:
        results = list(task.score(outputs, golds, seed=seed))
    ids = [i for i in golds if i in outputs]
    behind = {s.name: s for s in whole}
    if not results or not ids or any(m.name not in behind for m in results):
        return results, []
    rows: dict[str, list[Any]] = {m.name: [] for m in results}
    for i in ids:
        try:
            with metrics.capturing(rows_only=True) as alone:
                task.score({i: outputs[i]}, {i: golds[i]}, seed=seed)
        except Exception:  # noqa: BLE001  (a metric that cannot score one example has no rows)
            return results, []
        found = {s.name: s for s in alone}
        for m in results:
            row = found.get(m.name)
            if row is None or row.statistic != behind[m.name].statistic or len(row.rows) != 1:
                return results, []
            rows[m.name].append(np.asarray(row.rows, dtype=np.float64)[0])
    derived = []
    for m in results:
        array = np.asarray(rows[m.name], dtype=np.float64)
        statistic = behind[m.name].statistic
        value = float(metrics.combine(statistic, array.sum(axis=0), len(array)))
        if not math.isclose(value, m.value, rel_tol=1e-9, abs_tol=1e-12):
            return results, []
        derived.append(ExampleScores(m.name, m.higher_is_better, statistic, tuple(ids), array))
    return results, derived


def with_metrics(scored: Scored, examples: Sequence[Example], extra: Sequence[ExampleScores], *, seed: int) -> Scored:
    """``scored`` plus the per-example scores in ``extra`` (judged metrics), each replacing a metric
    of the same name. The ids must be those of ``scored`` (or, when it has no per-example scores,
    ``extra``'s own, in example order)."""
    from lamp_harness.inputs import metrics

    if not extra:
        return scored
    by_id = {ex.id: ex for ex in examples}
    if scored.scores is None:
        ids = extra[0].ids
        users = [user_key(by_id[i]) for i in ids]
        base = CellScores(
            tuple(ids), (), tuple(len(by_id[i].profile) for i in ids), tuple(u or "" for u in users) if all(users) else None
        )
    else:
        base = scored.scores
    names = {e.name for e in extra}
    for e in extra:
        if e.ids != base.ids:
            raise ValueError(f"per-example scores of {e.name!r} are over other examples than the cell's")
    kept = tuple(m for m in base.metrics if m.name not in names)
    merged = CellScores(base.ids, kept + tuple(extra), base.profile_size, base.user)
    results = [m for m in scored.metrics if m.name not in names]
    return Scored(results + [metrics.summarize(e, seed=seed) for e in extra], merged)


def parse_scores(data: Mapping[str, Any], where: str) -> CellScores:
    """A ``scores.json`` object as :class:`CellScores`; a malformed file is a one-line error."""
    import numpy as np

    from lamp_harness.inputs.metrics import STATISTICS

    try:
        ids = tuple(str(i) for i in data["ids"])
        entries = []
        for m in data["metrics"]:
            rows = np.asarray(m["rows"], dtype=np.float64).reshape(len(ids), -1)
            if m["statistic"] not in STATISTICS:
                raise ValueError(f"unknown statistic {m['statistic']!r}")
            entries.append(ExampleScores(str(m["name"]), bool(m["higher_is_better"]), str(m["statistic"]), ids, rows))
        sizes = data.get("profile_size")
        users = data.get("user")
        if sizes is not None and len(sizes) != len(ids) or users is not None and len(users) != len(ids):
            raise ValueError("'profile_size' or 'user' does not have one entry per id")
        recorded = data.get("predictions")
        predictions = None
        if recorded is not None:
            if not isinstance(recorded, Mapping) or not isinstance(recorded.get("sha256"), str):
                raise ValueError('\'predictions\' is not {"count": N, "sha256": "..."}')
            predictions = (recorded["sha256"], _count(recorded.get("count"), "predictions count"))
        return CellScores(
            ids,
            tuple(entries),
            tuple(_count(s, "profile size") for s in sizes) if sizes is not None else None,
            tuple(str(u) for u in users) if users is not None else None,
            predictions,
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise lamp_error(
            f"malformed per-example scores ({type(exc).__name__}: {exc})",
            where=where,
            fix="Delete the file; `lamp leaderboard` rescores the cell from its predictions when the data is present.",
        ) from None


def _count(value: Any, what: str) -> int:
    """A count (a whole number >= 0); ``Infinity``, ``NaN``, ``-3``, ``2.5`` or ``"7"`` is a
    ``ValueError`` naming it."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or value != int(value)
    ):
        raise ValueError(f"impossible {what} {value!r}")
    return int(value)


def read_scores(directory: Path) -> CellScores | None:
    """The cell's stored ``scores.json``, or ``None`` when it has none."""
    data = CellStore(directory).read_scores(
        fix="Delete the file; `lamp leaderboard` rescores the cell from its predictions when the data is present."
    )
    return None if data is None else parse_scores(data, str(Path(directory) / SCORES))


def edited(directory: Path) -> str | None:
    """Why the cell's ``scores.json`` is not the file the cell wrote, or ``None``: its content's
    checksum differs from the one ``metrics.json`` records for it (rows swapped between examples,
    a profile size changed: edits that leave every metric's value intact). Cells written before
    the checksum was recorded have nothing to compare with (``None``)."""
    return CellStore(directory).scores_edited()


def recorded_values_problem(directory: Path, values: Mapping[str, float]) -> str | None:
    """Why the metric ``values`` of the cell's ``metrics.json`` are not the ones the cell computed,
    or ``None``. Checked against the ``scores.json`` that ``metrics.json`` vouches for (its
    checksum recorded there and matching): each metric recomputed from its rows must be the
    recorded value, so a value typed into ``metrics.json`` shows. Cells without that checksum (or
    without scores) are not checked here."""
    import numpy as np

    from lamp_harness.inputs.metrics import combine

    store = CellStore(directory)
    if not store.has_scores() or store.recorded_scores_digest() is None or edited(directory):
        return None
    try:
        scores = read_scores(directory)
    except LampError:
        return None
    for entry in scores.metrics if scores is not None else ():
        if entry.name not in values or not len(entry.ids):
            continue
        rows = np.asarray(entry.rows, dtype=np.float64)
        value = float(combine(entry.statistic, rows.sum(axis=0), len(rows)))
        if math.isfinite(value) and not math.isclose(value, values[entry.name], rel_tol=TOLERANCE, abs_tol=TOLERANCE):
            return (
                f"metric {entry.name!r} is {values[entry.name]:.6g} here but {value:.6g} in the per-example "
                f"scores the cell wrote with it (changed after the cell wrote it)"
            )
    return None


def rescore(directory: Path, config: CellRecord) -> CellScores:
    """Per-example scores of a cell without ``scores.json``: its predictions scored again against
    the golds of the data its ``config.json`` records (never downloaded; checksums must match).
    Raises :class:`LampError` saying why when that is not possible."""
    store = CellStore(directory)
    task, dataset = recorded_dataset(directory, config)
    predictions = store.read_predictions()
    scored = score_cell(task, dataset.examples, predictions, seed=int(config.seed or 0))
    if scored.scores is None:
        raise lamp_error(f"task {task.name!r} offers no per-example scores", where=str(directory))
    return replace(scored.scores, predictions=store.predictions_digest())


def recorded_dataset(directory: Path, config: CellRecord) -> tuple[Task, Dataset]:
    """The task and the data a cell's ``config.json`` records, read from this machine (never
    downloaded); a one-line :class:`LampError` when the data is absent or its checksums differ."""
    from lamp_harness.base.io import lamp_home
    from lamp_harness.inputs.data import resolve_dataset
    from lamp_harness.plugin.contracts import RunContext
    from lamp_harness.plugin.registry import host

    directory = Path(directory)
    data = config.section("data")
    source = str(data.get("source") or "")
    kind, _, rest = source.partition(":")
    if not kind:
        raise lamp_error("config.json records no data source", where=str(directory))
    from lamp_harness.run.cells import make_task

    registry = host().registry
    task = make_task(registry, str(config.task), dict(config.task_args or {}))
    context = RunContext(lamp_home())
    scheme = str(config.scheme or "user")
    if kind == "local":
        dataset = resolve_dataset(
            task, data=None, data_dir=Path(rest), split=str(config.split), scheme=scheme, context=context
        )
    else:
        dataset = resolve_dataset(
            task, data=kind, data_dir=None, split=str(config.split), scheme=scheme, context=context, download=False
        )
    recorded = data.get("checksums") or {}
    if recorded and dict(dataset.checksums) != dict(recorded):
        raise lamp_error(f"the data at {dataset.source} changed since the cell ran (checksums differ)", where=str(directory))
    return task, dataset


TOLERANCE = 1e-6
"""How far a metric recomputed from ``scores.json`` may be from ``metrics.json`` (the rows are
stored with fewer digits than the value was computed with)."""


def verify(
    scores: CellScores, metrics: Sequence[MetricResult], prediction_ids: Sequence[str], digest: tuple[str, int] | None
) -> str | None:
    """Why ``scores`` cannot be trusted for the cell whose ``metrics.json`` holds ``metrics`` and
    whose ``predictions.jsonl`` holds ``prediction_ids`` (checksum and count ``digest``), in a few
    words; ``None`` when they can. Checked: the recorded checksum (when the file has one), every
    id a predicted one and none twice, one id per metric's ``n``, finite values, and each metric
    recomputed from its rows equal to the value ``metrics.json`` records (a changed row,
    statistic or direction shows there)."""
    import numpy as np

    from lamp_harness.inputs.metrics import combine

    if scores.predictions is not None and digest is not None and tuple(scores.predictions) != tuple(digest):
        return "its checksum is not that of predictions.jsonl (computed from other predictions, or edited)"
    seen: set[str] = set()
    duplicates = sorted({i for i in scores.ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
    if duplicates:
        return f"id {duplicates[0]!r} appears more than once ({len(duplicates)} repeated id(s))"
    foreign = sorted(seen - set(prediction_ids))
    if foreign:
        return f"{len(foreign)} id(s) are not in predictions.jsonl (e.g. {foreign[0]!r})"
    recorded = {m.name: m for m in metrics}
    for entry in scores.metrics:
        rows = np.asarray(entry.rows, dtype=np.float64)
        if not np.all(np.isfinite(rows)):
            bad = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
            return f"metric {entry.name!r} has a non-finite value (example {entry.ids[bad]!r})"
        metric = recorded.get(entry.name)
        if metric is None:
            return f"metric {entry.name!r} is not in metrics.json"
        if metric.n and metric.n != len(entry.ids):
            return f"metric {entry.name!r} covers {len(entry.ids)} examples, metrics.json {metric.n}"
        if bool(metric.higher_is_better) != entry.higher_is_better:
            return f"metric {entry.name!r} has the other direction than in metrics.json"
        value = float(combine(entry.statistic, rows.sum(axis=0), len(rows))) if len(rows) else math.nan
        if not math.isclose(value, metric.value, rel_tol=TOLERANCE, abs_tol=TOLERANCE):
            return (
                f"metric {entry.name!r} recomputed from its rows ({entry.statistic}) is {value:.6g}, "
                f"not the {metric.value:.6g} of metrics.json"
            )
    return None


def cell_scores(
    directory: Path, config: CellRecord, metrics: Sequence[MetricResult] | None = None
) -> tuple[CellScores | None, str | None]:
    """The cell's verified per-example scores, and a note: ``(scores, None)`` when the stored file
    is verified; ``(rescored, why)`` when it failed verification (or predates checksums and
    rescoring it gave other values) and the cell could be rescored from its predictions and data;
    ``(None, why)`` when there is nothing to trust (see :func:`verify`).

    ``metrics`` are the cell's ``metrics.json`` values (read here when not given). Scores rescored
    for a cell without ``scores.json`` are saved as its ``scores.json`` (atomically; a read-only
    folder is left as is), so they are computed once and travel with the cell, e.g. to a machine
    without the data. A damaged file is left for the user to see; it is never used."""
    directory = Path(directory)
    store = CellStore(directory)
    try:
        if metrics is None:
            metrics = store.read_metrics()
        digest = store.predictions_digest()
        prediction_ids = store.prediction_ids()
    except (LampError, OSError, ValueError) as exc:
        return None, f"cannot read the cell ({' '.join(str(exc).split())[:160]})"

    def checked(scores: CellScores) -> str | None:
        return verify(scores, metrics, prediction_ids, digest)

    problem = None
    try:
        stored = read_scores(directory)
    except LampError as exc:
        stored, problem = None, str(exc).split("\n")[0]
    if stored is not None:
        problem = checked(stored) or edited(directory)
        if problem is None and stored.predictions is not None:
            return stored, None
    try:
        rescored = rescore(directory, config)
        rescore_problem = checked(rescored)
    except LampError as exc:
        rescored, rescore_problem = None, str(exc).split("\n")[0]
    except Exception as exc:  # a plugin failing to rescore: the cell gets no tests, the rest renders
        rescored, rescore_problem = None, f"rescoring failed ({type(exc).__name__}: {exc})"
    if stored is not None and problem is None:
        # Written before checksums: verified against metrics.json and predictions.jsonl above, and
        # against a rescore where the data is here.
        if rescored is None or rescore_problem is not None or _same(stored, rescored):
            return stored, None
        return rescored, (f"{SCORES} differs from a rescore of predictions.jsonl against the data; used the rescored values")
    if rescored is None or rescore_problem is not None:
        if stored is None and problem is None:
            return None, rescore_problem
        return None, (
            f"{SCORES} not used: {problem}; and it cannot be recomputed here ({rescore_problem}). "
            f"Fix: re-run the cell's `lamp run` command with --force"
        )
    if stored is None and problem is None:
        try:
            store.write_scores(rescored.to_json())
        except OSError:
            pass
        return rescored, None
    return rescored, f"{SCORES} not used ({problem}); recomputed from predictions.jsonl and the data"


def _same(a: CellScores, b: CellScores) -> bool:
    import numpy as np

    if a.ids != b.ids or [m.name for m in a.metrics] != [m.name for m in b.metrics]:
        return False
    return all(
        x.statistic == y.statistic and np.allclose(np.asarray(x.rows), np.asarray(y.rows), rtol=TOLERANCE, atol=TOLERANCE)
        for x, y in zip(a.metrics, b.metrics, strict=True)
    )
