"""Per-example scores of a cell: what paired significance tests and breakdowns are computed from.

When a task offers per-example sufficient statistics (:meth:`Task.example_scores
<lamp_harness.contracts.Task.example_scores>`), scoring a cell derives its metrics from them and the
run store keeps them in ``scores.json`` beside the predictions, with each example's profile size
and asking user (when the data identifies users). Cells scored before that file existed are
rescored from their ``predictions.jsonl`` and the golds of the data recorded in ``config.json``,
provided those files are still on this machine and their checksums match; the result is saved as
their ``scores.json``.

``scores.json``::

    {"ids": [...], "profile_size": [...], "user": [... or null],
     "metrics": [{"name": "f1", "higher_is_better": true, "statistic": "macro_f1",
                  "rows": [[...], ...]}, ...]}

Nothing here knows a concrete task or metric: statistics are named by how they combine
(:data:`lamp_harness.metrics.STATISTICS`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamp_harness.contracts import Example, ExampleScores, MetricResult, Prediction
from lamp_harness.errors import LampError, lamp_error
from lamp_harness.store import SCORES, CellStore


@dataclass(frozen=True)
class CellScores:
    """A cell's per-example scores: one :class:`ExampleScores` per metric over the same ``ids``,
    and per example the asking user's profile size and user key (``None`` when unknown)."""

    ids: tuple[str, ...]
    metrics: tuple[ExampleScores, ...]
    profile_size: tuple[int, ...] | None = None
    user: tuple[str, ...] | None = None

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
                {"name": m.name, "higher_is_better": m.higher_is_better, "statistic": m.statistic,
                 "rows": [[_compact(x) for x in row] for row in m.rows.tolist()]}
                for m in self.metrics
            ],
        }


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


def score_cell(task: Any, examples: Sequence[Example], predictions: Sequence[Prediction], *,
               seed: int) -> Scored:
    """Score ``predictions`` against the golds of ``examples``: per-example statistics and the
    metrics derived from them, or the task's own :meth:`score` when it offers no statistics."""
    from lamp_harness import metrics

    golds = {ex.id: ex.gold for ex in examples if ex.gold is not None}
    if not golds:
        return Scored([], None)  # test split: golds are withheld; export the predictions instead
    outputs = {p.example_id: p.output for p in predictions if p.example_id in golds}
    wanted = {i: golds[i] for i in outputs}
    per_example = list(task.example_scores(outputs, wanted) or [])
    if not per_example:
        return Scored(list(task.score(outputs, wanted, seed=seed)), None)
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
    return Scored([metrics.summarize(s, seed=seed) for s in per_example], scores)


def with_metrics(scored: Scored, examples: Sequence[Example], extra: Sequence[ExampleScores], *,
                 seed: int) -> Scored:
    """``scored`` plus the per-example scores in ``extra`` (judged metrics), each replacing a metric
    of the same name. The ids must be those of ``scored`` (or, when it has no per-example scores,
    ``extra``'s own, in example order)."""
    from lamp_harness import metrics

    if not extra:
        return scored
    by_id = {ex.id: ex for ex in examples}
    if scored.scores is None:
        ids = extra[0].ids
        users = [user_key(by_id[i]) for i in ids]
        base = CellScores(tuple(ids), (), tuple(len(by_id[i].profile) for i in ids),
                          tuple(u or "" for u in users) if all(users) else None)
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

    from lamp_harness.metrics import STATISTICS

    try:
        ids = tuple(str(i) for i in data["ids"])
        entries = []
        for m in data["metrics"]:
            rows = np.asarray(m["rows"], dtype=np.float64).reshape(len(ids), -1)
            if m["statistic"] not in STATISTICS:
                raise ValueError(f"unknown statistic {m['statistic']!r}")
            entries.append(ExampleScores(str(m["name"]), bool(m["higher_is_better"]), str(m["statistic"]),
                                         ids, rows))
        sizes = data.get("profile_size")
        users = data.get("user")
        if sizes is not None and len(sizes) != len(ids) or users is not None and len(users) != len(ids):
            raise ValueError("'profile_size' or 'user' does not have one entry per id")
        return CellScores(ids, tuple(entries),
                          tuple(int(s) for s in sizes) if sizes is not None else None,
                          tuple(str(u) for u in users) if users is not None else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise lamp_error(f"malformed per-example scores ({type(exc).__name__}: {exc})", where=where,
                         fix="Delete the file; `lamp leaderboard` rescores the cell from its predictions "
                             "when the data is present.") from None


def read_scores(directory: Path) -> CellScores | None:
    """The cell's stored ``scores.json``, or ``None`` when it has none."""
    path = Path(directory) / SCORES
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise lamp_error(f"cannot read JSON ({type(exc).__name__}: {exc})", where=str(path),
                         fix="Delete the file; `lamp leaderboard` rescores the cell from its predictions "
                             "when the data is present.") from None
    return parse_scores(data, str(path))


def rescore(directory: Path, config: Mapping[str, Any]) -> CellScores:
    """Per-example scores of a cell without ``scores.json``: its predictions scored again against
    the golds of the data its ``config.json`` records (never downloaded; checksums must match).
    Raises :class:`LampError` saying why when that is not possible."""
    task, dataset = recorded_dataset(directory, config)
    predictions = CellStore(directory).read_predictions()
    scored = score_cell(task, dataset.examples, predictions, seed=int(config.get("seed") or 0))
    if scored.scores is None:
        raise lamp_error(f"task {task.name!r} offers no per-example scores", where=str(directory))
    return scored.scores


def recorded_dataset(directory: Path, config: Mapping[str, Any]) -> tuple[Any, Any]:
    """The task and the data a cell's ``config.json`` records, read from this machine (never
    downloaded); a one-line :class:`LampError` when the data is absent or its checksums differ."""
    from lamp_harness.contracts import RunContext
    from lamp_harness.data import resolve_dataset
    from lamp_harness.io import lamp_home
    from lamp_harness.registry import host

    directory = Path(directory)
    data = config.get("data") if isinstance(config.get("data"), Mapping) else {}
    source = str(data.get("source") or "")
    kind, _, rest = source.partition(":")
    if not kind:
        raise lamp_error("config.json records no data source", where=str(directory))
    registry = host().registry
    task = registry.create("task", str(config["task"]))
    context = RunContext(lamp_home())
    scheme = str(config.get("scheme") or "user")
    if kind == "local":
        dataset = resolve_dataset(task, data=None, data_dir=Path(rest), split=str(config["split"]),
                                  scheme=scheme, context=context)
    else:
        dataset = resolve_dataset(task, data=kind, data_dir=None, split=str(config["split"]), scheme=scheme,
                                  context=context, download=False)
    recorded = data.get("checksums") or {}
    if recorded and dict(dataset.checksums) != dict(recorded):
        raise lamp_error(f"the data at {dataset.source} changed since the cell ran (checksums differ)",
                         where=str(directory))
    return task, dataset


def cell_scores(directory: Path, config: Mapping[str, Any]) -> tuple[CellScores | None, str | None]:
    """The cell's per-example scores (stored, else rescored), or ``None`` and the reason.

    Rescored scores are saved as the cell's ``scores.json`` (atomically; a read-only folder is
    left as is), so they are computed once and travel with the cell, e.g. to a machine without
    the data."""
    from lamp_harness.io import atomic_write_json

    try:
        stored = read_scores(directory)
        if stored is not None:
            return stored, None
        scores = rescore(directory, config)
    except LampError as exc:
        return None, str(exc)
    try:
        atomic_write_json(Path(directory) / SCORES, scores.to_json())
    except OSError:
        pass
    return scores, None
