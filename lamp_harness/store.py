"""The run store: one folder per cell, written so that a crash at any point loses nothing.

Layout of ``OUT/<cell_id>/``:

- ``config.json``: the fully resolved configuration (written atomically when the cell starts);
- ``predictions.jsonl``: one :class:`~lamp_harness.contracts.Prediction` per line, appended and
  fsynced batch by batch. After a crash, only whole batches are kept (a torn last line or a
  partial batch is cut), so a resumed run re-predicts exactly the batches it would have predicted
  uninterrupted and its predictions are identical;
- ``scores.json``: per-example sufficient statistics of every metric, with each example's profile
  size (written atomically just before ``metrics.json``; see :mod:`lamp_harness.scores`), so
  paired significance tests and breakdowns never need the run again;
- ``metrics.json``: values, 95% intervals and directions (written atomically, last: its presence
  marks the cell as finished);
- ``timing.json``: wall time, examples/s, mean prompt tokens, generated tokens (and, for a
  data-parallel run, the world size and each rank's throughput);
- ``shards/rank-NNNNN/predictions.jsonl``: only while a data-parallel run is under way or was
  interrupted: each rank's predictions, merged into ``predictions.jsonl`` by rank 0.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lamp_harness.contracts import Example, MetricResult, Prediction
from lamp_harness.errors import lamp_error
from lamp_harness.io import atomic_write_bytes, atomic_write_json

CONFIG = "config.json"
PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
SCORES = "scores.json"
TIMING = "timing.json"
SHARDS = "shards"


class CellStore:
    """Reads and writes one cell's folder."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    # -- state ----------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """Whether the cell's ``metrics.json`` exists (the cell completed)."""
        return (self.dir / METRICS).is_file()

    def reset(self) -> None:
        """Forget earlier results (``--force``)."""
        for name in (METRICS, SCORES, TIMING, PREDICTIONS, CONFIG):
            (self.dir / name).unlink(missing_ok=True)

    # -- config ---------------------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        """Write ``config.json`` atomically."""
        atomic_write_json(self.dir / CONFIG, config)

    def read_config(self) -> dict[str, Any]:
        """The cell's ``config.json``."""
        return json.loads((self.dir / CONFIG).read_text(encoding="utf-8"))

    # -- predictions ----------------------------------------------------------------------------
    def recover_predictions(self, batch_size: int) -> list[Prediction]:
        """The predictions of whole batches already written; cuts anything after them.

        A run killed mid-write may leave a torn line or a partial batch; both are removed from
        the file so that appending continues from a batch boundary.
        """
        path = self.dir / PREDICTIONS
        if not path.is_file():
            return []
        raw = path.read_bytes()
        predictions: list[Prediction] = []
        offsets: list[int] = []
        position = 0
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                predictions.append(Prediction(**_tuples(json.loads(line))))
            except (ValueError, TypeError):
                break
            position += len(line)
            offsets.append(position)
        keep = (len(predictions) // batch_size) * batch_size
        end = offsets[keep - 1] if keep else 0
        if end != len(raw):
            with open(path, "r+b") as handle:
                handle.truncate(end)
                handle.flush()
                os.fsync(handle.fileno())
        return predictions[:keep]

    def append_predictions(self, predictions: Sequence[Prediction]) -> None:
        """Append one batch in a single write and fsync it."""
        if not predictions:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in predictions)
        with open(self.dir / PREDICTIONS, "a", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def read_predictions(self) -> list[Prediction]:
        """Every prediction of the file; a malformed line is a one-line error naming it."""
        path = self.dir / PREDICTIONS
        if not path.is_file():
            return []
        predictions = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                prediction = Prediction(**_tuples(json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise lamp_error(f"line {number} is not a prediction ({type(exc).__name__}: {exc})",
                                 where=str(path), fix="Re-run the cell with `lamp run ... --force`.") from None
            if not isinstance(prediction.output, str):
                raise lamp_error(f"line {number}: 'output' is not a string", where=str(path),
                                 fix="Re-run the cell with `lamp run ... --force`.")
            predictions.append(prediction)
        return predictions

    # -- results --------------------------------------------------------------------------------
    def write_results(self, task: str, split: str, metrics: Iterable[MetricResult],
                      timing: dict[str, Any], scores: dict[str, Any] | None = None) -> None:
        """Write ``timing.json``, ``scores.json`` (when ``scores`` is given: a JSON object from
        :meth:`lamp_harness.scores.CellScores.to_json`) and, last, ``metrics.json``."""
        metrics = list(metrics)
        atomic_write_json(self.dir / TIMING, timing)
        if scores is not None:
            atomic_write_json(self.dir / SCORES, scores)
        atomic_write_json(self.dir / METRICS, {
            "task": task,
            "split": split,
            "n": max((m.n for m in metrics), default=0),
            "metrics": [asdict(m) for m in metrics],
        })

    def read_metrics(self) -> list[MetricResult]:
        """The metrics of a finished cell."""
        data = json.loads((self.dir / METRICS).read_text(encoding="utf-8"))
        return [MetricResult(**m) for m in data["metrics"]]

    def read_timing(self) -> dict[str, Any]:
        """The cell's ``timing.json``."""
        path = self.dir / TIMING
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def write_predictions(self, predictions: Sequence[Prediction]) -> None:
        """Replace ``predictions.jsonl`` atomically (same lines as appending them one by one)."""
        data = "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in predictions)
        atomic_write_bytes(self.dir / PREDICTIONS, data.encode("utf-8"))

    # -- data-parallel shards -------------------------------------------------------------------
    # In a data-parallel run each rank appends its predictions to ``shards/rank-NNNNN/`` with the
    # same guarantees as ``predictions.jsonl``; rank 0 merges them. Resuming is keyed by example
    # id, so a job of any world size continues what a job of any other world size left.
    def shard(self, rank: int) -> CellStore:
        """The store of rank ``rank``'s predictions shard."""
        return CellStore(self.dir / SHARDS / f"rank-{rank:05d}")

    def _shards(self) -> list[CellStore]:
        root = self.dir / SHARDS
        return [CellStore(p) for p in sorted(root.glob("rank-*")) if p.is_dir()] if root.is_dir() else []

    def has_shards(self) -> bool:
        """Whether a data-parallel run is under way here or was interrupted (its predictions may
        then be any whole batches, not a prefix: only :meth:`merge_shards` ends that state)."""
        return (self.dir / SHARDS).is_dir()

    def remove_shards(self) -> None:
        """Delete every rank's shard (``--force``, or once merged)."""
        shutil.rmtree(self.dir / SHARDS, ignore_errors=True)

    def _collect(self, predictions: dict[str, Prediction]) -> dict[str, Prediction]:
        for source in self._shards():
            for prediction in source.recover_predictions(1):
                predictions.setdefault(prediction.example_id, prediction)
        return predictions

    def consolidate_shards(self, batches: Sequence[Sequence[Example]]) -> set[str]:
        """Fold the shards of an interrupted run into ``predictions.jsonl``, keeping only whole
        ``batches`` (a batch cut short is predicted again, whole, so that it is generated exactly
        as it was planned); returns the ids kept."""
        found = self._collect({p.example_id: p for p in self.recover_predictions(1)})
        kept = [found[ex.id] for batch in batches if all(ex.id in found for ex in batch) for ex in batch]
        if kept or (self.dir / PREDICTIONS).is_file():
            self.write_predictions(kept)  # before the shards go: a crash in between loses nothing
        for source in self._shards():
            shutil.rmtree(source.dir, ignore_errors=True)
        (self.dir / SHARDS).mkdir(parents=True, exist_ok=True)
        return {p.example_id for p in kept}

    def merge_shards(self, examples: Sequence[Example], kept: set[str]) -> list[Prediction]:
        """Merge the kept predictions and every shard into ``predictions.jsonl`` in the order of
        ``examples``; returns them in that order."""
        found = self._collect({p.example_id: p for p in self.recover_predictions(1) if p.example_id in kept})
        missing = [ex.id for ex in examples if ex.id not in found]
        if missing:
            raise lamp_error(f"{len(missing)} examples have no prediction in any shard (e.g. {missing[0]!r})",
                             where=str(self.dir), fix="Run the same command again to predict them.")
        ordered = [found[ex.id] for ex in examples]
        self.write_predictions(ordered)
        self.remove_shards()
        return ordered


def _tuples(record: dict[str, Any]) -> dict[str, Any]:
    if isinstance(record.get("retrieved"), list):
        record["retrieved"] = tuple(record["retrieved"])
    return record
