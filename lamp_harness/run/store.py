"""The run store: one folder per cell, written so that a crash, a race or a kill loses nothing.

Layout of ``OUT/<cell_id>/``:

- ``config.json``: the fully resolved configuration (written atomically when the cell starts);
- ``predictions.jsonl``: one :class:`~lamp_harness.plugin.contracts.Prediction` per line, appended and
  fsynced batch by batch. After a crash, only whole batches are kept (a torn last line or a
  partial batch is cut), so a resumed run re-predicts exactly the batches it would have predicted
  uninterrupted and its predictions are identical;
- ``scores.json``: per-example sufficient statistics of every metric, with each example's profile
  size and the checksum of the predictions they were computed from (written atomically just
  before ``metrics.json``; see :mod:`lamp_harness.report.scores`), so
  paired significance tests and breakdowns never need the run again;
- ``metrics.json``: values, 95% intervals and directions, plus the count and SHA-256 of
  ``predictions.jsonl`` they were computed from (written atomically, last);
- ``timing.json``: wall time, examples/s, mean prompt tokens, generated tokens (and, for a
  data-parallel run, the world size and each rank's throughput);
- ``shards/rank-NNNNN/predictions.jsonl``: only while a data-parallel run is under way or was
  interrupted: each rank's predictions, merged into ``predictions.jsonl`` by rank 0;
- ``.lock`` / ``.lock.owner``: the exclusive lock of the process computing the cell, and its PID.

:class:`CellStore` is the only code that reads or writes these files: the runner, the trainer's
evaluation, the judge and every report (leaderboard, comparisons, scores, export, page) go through
it, and receive typed records (:mod:`lamp_harness.run.records`) rather than raw JSON objects.

A cell is *finished* only when the three files agree (:meth:`CellStore.inconsistency`): both JSON
files parse, the predictions file has the checksum and count ``metrics.json`` recorded, and (when
the caller knows the split) it holds every example id of the split exactly once and nothing else.
Resuming is keyed by example id (:meth:`CellStore.recover_predictions`): foreign ids, duplicates
and garbled lines are dropped with a warning and only the missing examples are predicted again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lamp_harness.base.errors import lamp_error, warn
from lamp_harness.base.io import atomic_write_bytes, atomic_write_json, writing
from lamp_harness.base.secrets import redact
from lamp_harness.plugin.contracts import Example, MetricResult, Prediction
from lamp_harness.run.records import CellRecord, FinishedCell, Timing

CONFIG = "config.json"
PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
SCORES = "scores.json"
TIMING = "timing.json"
SHARDS = "shards"
LOCK = ".lock"
OWNER = ".lock.owner"


class CellBusy(Exception):
    """Another live process holds the cell's lock (``pid`` is its process id, when known)."""

    def __init__(self, directory: Path, pid: int | None, host: str | None) -> None:
        self.dir, self.pid, self.host = directory, pid, host
        who = (
            f"process {pid}" + (f" on {host}" if host and host != socket.gethostname() else "") if pid else "another process"
        )
        super().__init__(f"{directory}: being computed by {who}")


class CellStore:
    """Reads and writes one cell's folder."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    # -- locking --------------------------------------------------------------------------------
    @contextmanager
    def lock(self, *, wait: bool = False) -> Iterator[None]:
        """Hold the cell's exclusive lock (an OS file lock: a killed holder releases it at once).

        Without ``wait``, a cell held by another process raises :class:`CellBusy` naming its PID;
        with ``wait``, blocks until the holder is done. Also serialises threads of one process.
        """
        from filelock import FileLock, Timeout

        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise lamp_error(
                f"cannot create the cell folder ({exc.strerror or exc})",
                where=str(self.dir),
                fix="Pass a writable --out folder.",
            ) from None
        handle = FileLock(str(self.dir / LOCK), thread_local=False)
        try:
            handle.acquire(timeout=-1 if wait else 0)
        except Timeout:
            raise CellBusy(self.dir, *self.holder()) from None
        try:
            atomic_write_json(self.dir / OWNER, {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
            yield
        finally:
            (self.dir / OWNER).unlink(missing_ok=True)
            handle.release()

    def holder(self) -> tuple[int | None, str | None]:
        """``(pid, host)`` of the process that holds (or last held) the lock, when recorded."""
        try:
            owner = json.loads((self.dir / OWNER).read_text(encoding="utf-8"))
            return int(owner["pid"]), str(owner.get("host") or "")
        except (OSError, ValueError, KeyError, TypeError):
            return None, None

    # -- state ----------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """Whether the cell's files agree (see :meth:`inconsistency`; the split is not checked)."""
        return self.inconsistency() is None

    def inconsistency(self, expected_ids: Collection[str] | None = None) -> str | None:
        """``None`` when ``config.json``, ``predictions.jsonl`` and ``metrics.json`` agree, else why
        not, in a few words ("not finished (no metrics.json)", "predictions.jsonl does not match
        the checksum in metrics.json"...). With ``expected_ids`` (the split's example ids), the
        predictions must hold each of them exactly once and no other."""
        if not (self.dir / METRICS).is_file():
            return f"not finished (no {METRICS})"
        try:
            metrics = _read_object(self.dir / METRICS)
            if not isinstance(metrics.get("metrics"), list):
                raise ValueError("no 'metrics' list")
            [MetricResult(**m) for m in metrics["metrics"]]
        except (OSError, ValueError, TypeError) as exc:
            return f"{METRICS} is unreadable ({_short(exc)})"
        try:
            config = _read_object(self.dir / CONFIG)
        except FileNotFoundError:
            return f"{CONFIG} is missing"
        except (OSError, ValueError) as exc:
            return f"{CONFIG} is unreadable ({_short(exc)})"
        for key in ("task", "split"):
            if key in metrics and key in config and metrics[key] != config[key]:
                return f"{CONFIG} and {METRICS} name different {key}s ({config[key]!r}, {metrics[key]!r})"
        written = metrics.get("config")
        if isinstance(written, dict) and written.get("sha256") != scores_digest(config):
            return f"{CONFIG} does not match the checksum in {METRICS} (changed after the cell was written)"
        path = self.dir / PREDICTIONS
        recorded = metrics.get("predictions")
        if not path.is_file():
            return f"{PREDICTIONS} is missing"
        if isinstance(recorded, dict):
            digest, count = _digest_and_count(path)
            if digest != recorded.get("sha256") or count != recorded.get("count"):
                return f"{PREDICTIONS} does not match the checksum and count in {METRICS} (changed or damaged)"
        if expected_ids is not None or not isinstance(recorded, dict):
            try:
                # With a matching checksum the lines are ours: reading their ids is enough.
                ids = _ids_of(path) if isinstance(recorded, dict) else [p.example_id for p in self.read_predictions()]
            except Exception as exc:  # a LampError naming the line
                return _short(exc)
            if expected_ids is not None:
                problem = _id_problem(ids, expected_ids)
                if problem:
                    return f"{PREDICTIONS} {problem}"
        return None

    def reset(self) -> None:
        """Forget earlier results (``--force``)."""
        for name in (METRICS, SCORES, TIMING, PREDICTIONS, CONFIG):
            (self.dir / name).unlink(missing_ok=True)

    def unfinish(self) -> None:
        """Drop ``metrics.json`` and ``timing.json`` (an inconsistent cell is to be completed again);
        the valid predictions stay and are reused."""
        for name in (METRICS, TIMING):
            (self.dir / name).unlink(missing_ok=True)

    # -- config ---------------------------------------------------------------------------------
    def write_record(self, record: CellRecord) -> None:
        """Write ``config.json`` atomically, secrets masked (:func:`~lamp_harness.base.secrets.redact`:
        a component's ``describe()`` or a note cannot put a key on disk)."""
        atomic_write_json(self.dir / CONFIG, redact(record.to_json()))

    def write_config(self, config: Mapping[str, Any]) -> None:
        """:meth:`write_record` of a JSON object (what a writer resolved, in its key order)."""
        self.write_record(CellRecord.from_json(config))

    def read_record(self) -> CellRecord:
        """``config.json`` (secrets masked, for folders written before they were); an unreadable
        one is a one-line error naming it."""
        return CellRecord.from_json(redact(_read_or_fail(self.dir / CONFIG)))

    # -- predictions ----------------------------------------------------------------------------
    def recover_predictions(self, batch_size: int, expected_ids: Collection[str] | None = None) -> list[Prediction]:
        """The predictions already written that a resumed run keeps; the file is cut back to them.

        The common case is a kill: the file holds the first predictions of the split in order,
        then perhaps a partial batch and a torn line. Only whole batches are kept, so the resumed
        run predicts exactly the batches an uninterrupted run would have. Anything else (a
        garbled line, an id outside ``expected_ids``, a duplicate) is dropped with a warning,
        every valid record is kept, and the file is rewritten atomically to hold just those.
        """
        path = self.dir / PREDICTIONS
        if not path.is_file():
            return []
        raw = path.read_bytes()
        lines = raw.splitlines(keepends=True)
        kept: list[Prediction] = []
        kept_lines: list[bytes] = []
        seen: set[str] = set()
        dropped: dict[str, int] = {}
        expected = set(expected_ids) if expected_ids is not None else None
        for number, line in enumerate(lines, 1):
            torn = not line.endswith(b"\n")
            problem = None
            prediction = None
            if torn:
                problem = "torn last line" if number == len(lines) else "garbled line"
            else:
                try:
                    prediction = _parse(line)
                except (ValueError, TypeError, UnicodeDecodeError):
                    problem = "garbled line" if line.strip() else None
                    if problem is None:
                        continue  # blank lines carry nothing
            if prediction is not None:
                if expected is not None and prediction.example_id not in expected:
                    problem = "id not in the split"
                elif prediction.example_id in seen:
                    problem = "duplicate id"
            if problem is not None:
                dropped[problem] = dropped.get(problem, 0) + 1
                continue
            assert prediction is not None
            seen.add(prediction.example_id)
            kept.append(prediction)
            kept_lines.append(line)
        clean = not (set(dropped) - {"torn last line"})
        if clean and (expected_ids is None or _is_prefix(kept, expected_ids)):
            # A kill: keep whole batches so the resumed run batches exactly as an uninterrupted one.
            keep = (len(kept) // batch_size) * batch_size
            if expected is not None and len(kept) == len(expected):
                keep = len(kept)  # every example predicted (scoring was cut short, e.g. a judge went down)
            end = sum(len(line) for line in kept_lines[:keep])
            if end != len(raw):
                with open(path, "r+b") as handle:
                    handle.truncate(end)
                    handle.flush()
                    os.fsync(handle.fileno())
            return kept[:keep]
        what = ", ".join(
            f"{n} {kind}{'s' if n > 1 and not kind.endswith('line') else ''}" for kind, n in sorted(dropped.items())
        )
        if what:
            warn(f"{path}: dropped {what}; kept {len(kept)} valid prediction(s), the missing examples are predicted again")
        atomic_write_bytes(path, b"".join(kept_lines))
        return kept

    def append_predictions(self, predictions: Sequence[Prediction]) -> None:
        """Append one batch in a single write and fsync it."""
        if not predictions:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(_record(p), ensure_ascii=False) + "\n" for p in predictions)
        with writing(self.dir / PREDICTIONS), open(self.dir / PREDICTIONS, "a", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def read_predictions(self) -> list[Prediction]:
        """Every prediction of the file; a malformed line is a one-line error naming it."""
        path = self.dir / PREDICTIONS
        if not path.is_file():
            return []
        fix = "Re-run the cell with the same `lamp run` command (it repairs the cell), or add --force."
        predictions = []
        for number, line in enumerate(path.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                predictions.append(_parse(line))
            except UnicodeDecodeError:
                raise lamp_error(f"line {number} is not UTF-8", where=str(path), fix=fix) from None
            except (ValueError, TypeError) as exc:
                raise lamp_error(f"line {number} is not a prediction ({_short(exc)})", where=str(path), fix=fix) from None
        return predictions

    # -- results --------------------------------------------------------------------------------
    def write_results(
        self,
        task: str,
        split: str,
        metrics: Iterable[MetricResult],
        timing: Timing | Mapping[str, Any],
        scores: dict[str, Any] | None = None,
    ) -> None:
        """Write ``timing.json``, ``scores.json`` (when ``scores`` is given) and, last,
        ``metrics.json`` with the predictions' checksum and count (what makes the cell finished)."""
        metrics = list(metrics)
        timing = timing if isinstance(timing, Timing) else Timing.from_json(timing)
        atomic_write_json(self.dir / TIMING, timing.to_json())
        path = self.dir / PREDICTIONS
        digest, count = _digest_and_count(path) if path.is_file() else (_EMPTY, 0)
        recorded: dict[str, Any] = {}
        try:  # the configuration the results belong to: an edit of config.json afterwards shows
            recorded["config"] = {"sha256": scores_digest(_read_object(self.dir / CONFIG))}
        except (OSError, ValueError):
            pass
        if scores is not None:  # with the checksum of the predictions they were computed from
            scores = {**scores, "predictions": {"count": count, "sha256": digest}}
            atomic_write_json(self.dir / SCORES, scores)
            recorded["scores"] = {"sha256": scores_digest(scores)}
        atomic_write_json(
            self.dir / METRICS,
            {
                "task": task,
                "split": split,
                "n": max((m.n for m in metrics), default=0),
                "metrics": [asdict(m) for m in metrics],
                "predictions": {"count": count, "sha256": digest},
                **recorded,
            },
        )

    def read_metrics(self) -> list[MetricResult]:
        """The metrics of ``metrics.json``; an unreadable file is a one-line error naming it."""
        data = _read_or_fail(self.dir / METRICS)
        try:
            return [MetricResult(**m) for m in data["metrics"]]
        except (KeyError, TypeError) as exc:
            raise lamp_error(
                f"malformed metrics ({_short(exc)})",
                where=str(self.dir / METRICS),
                fix="Re-run the cell with the same `lamp run` command.",
            ) from None

    def read_timing(self) -> Timing:
        """The cell's ``timing.json`` (empty when absent or unreadable: timing is informative only)."""
        try:
            return Timing.from_json(_read_object(self.dir / TIMING))
        except (OSError, ValueError):
            return Timing.from_json({})

    def read_finished(self) -> FinishedCell:
        """What a report shows of a finished cell: its record and its metrics, checked strictly
        (every value a finite number: NaN or Infinity would be ranked, bolded and plotted); a
        malformed file is a one-line error naming it and the fix."""
        record = CellRecord.from_json(redact(_report_json(self.dir / CONFIG)))  # masked: older folders
        data = _report_json(self.dir / METRICS)
        try:
            metrics = tuple(
                MetricResult(
                    str(m["name"]),
                    float(m["value"]),
                    bool(m["higher_is_better"]),
                    _maybe_float(m.get("ci_low")),
                    _maybe_float(m.get("ci_high")),
                    int(m.get("n") or 0),
                )
                for m in data["metrics"]
            )
            for m in metrics:
                if not all(math.isfinite(x) for x in (m.value, m.ci_low or 0.0, m.ci_high or 0.0)):
                    raise ValueError(f"metric {m.name!r} has a non-finite value")
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise lamp_error(
                f"malformed metrics entry ({type(exc).__name__}: {exc})",
                where=str(self.dir / METRICS),
                fix="Re-run the cell with `lamp run ... --force`.",
            ) from None
        task, split = data.get("task"), data.get("split")
        return FinishedCell(record, metrics, task, split, (self.dir / METRICS).stat().st_mtime)

    # -- per-example scores ---------------------------------------------------------------------
    def read_scores(self, fix: str) -> dict[str, Any] | None:
        """``scores.json`` as a JSON object (parsed by :mod:`lamp_harness.report.scores`), ``None`` when
        the cell has none; an unreadable file is a one-line error naming it and ``fix``."""
        path = self.dir / SCORES
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise lamp_error(f"cannot read JSON ({type(exc).__name__}: {exc})", where=str(path), fix=fix) from None

    def write_scores(self, scores: Mapping[str, Any]) -> None:
        """Write ``scores.json`` atomically (scores rescored for a cell written without them)."""
        atomic_write_json(self.dir / SCORES, scores)

    def has_scores(self) -> bool:
        """Whether the cell has a ``scores.json``."""
        return (self.dir / SCORES).is_file()

    def scores_edited(self) -> str | None:
        """Why ``scores.json`` is not the file the cell wrote (its checksum differs from the one
        ``metrics.json`` records for it), or ``None`` (also when there is nothing to compare)."""
        try:
            recorded = _read_object(self.dir / METRICS).get("scores", {}).get("sha256")
            data = json.loads((self.dir / SCORES).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            return None
        if isinstance(recorded, str) and scores_digest(data) != recorded:
            return f"its content does not match the checksum {METRICS} records for it (changed after the cell wrote it)"
        return None

    def recorded_scores_digest(self) -> str | None:
        """The checksum ``metrics.json`` records for ``scores.json`` (``None`` in older cells)."""
        try:
            digest = _read_object(self.dir / METRICS).get("scores", {}).get("sha256")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            return None
        return digest if isinstance(digest, str) else None

    def predictions_digest(self) -> tuple[str, int] | None:
        """``(sha256, count)`` of ``predictions.jsonl``; ``None`` when it is missing."""
        path = self.dir / PREDICTIONS
        return _digest_and_count(path) if path.is_file() else None

    def prediction_ids(self) -> list[str]:
        """The example ids of ``predictions.jsonl`` in file order (empty when it is missing)."""
        path = self.dir / PREDICTIONS
        return _ids_of(path) if path.is_file() else []

    def has_predictions(self) -> bool:
        """Whether the cell has a ``predictions.jsonl``."""
        return (self.dir / PREDICTIONS).is_file()

    def has_metrics(self) -> bool:
        """Whether the cell wrote its ``metrics.json`` (whether or not its files still agree)."""
        return (self.dir / METRICS).is_file()

    def has_results(self) -> bool:
        """Whether the folder holds a cell's record and results (``config.json`` and
        ``metrics.json``): what ``lamp score`` reads (:attr:`finished` also checks they agree)."""
        return (self.dir / CONFIG).is_file() and self.has_metrics()

    def files(self, names: Iterable[str]) -> list[Path]:
        """The paths of the cell's files among ``names`` that exist (what a tracker attaches)."""
        return [self.dir / name for name in names if (self.dir / name).is_file()]

    def read_artifact(self, name: str) -> dict[str, Any]:
        """A JSON object the cell keeps beside its results (``judgments.json``...); empty when it
        is absent or unreadable (it is rewritten whole)."""
        try:
            data = json.loads((self.dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_artifact(self, name: str, value: Any) -> None:
        """Write a JSON file the cell keeps beside its results, atomically: what a method produced
        on the way (PAG's summaries), the judges' rationale (``judgments.json``)."""
        atomic_write_json(self.dir / name, value)

    def write_predictions(self, predictions: Sequence[Prediction]) -> None:
        """Replace ``predictions.jsonl`` atomically (same lines as appending them one by one)."""
        data = "".join(json.dumps(_record(p), ensure_ascii=False) + "\n" for p in predictions)
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
            raise lamp_error(
                f"{len(missing)} examples have no prediction in any shard (e.g. {missing[0]!r})",
                where=str(self.dir),
                fix="Run the same command again to predict them.",
            )
        ordered = [found[ex.id] for ex in examples]
        self.write_predictions(ordered)
        self.remove_shards()
        return ordered


def run_cells(root: Path) -> list[CellStore]:
    """The cells of a run folder: its immediate sub-folders with a ``config.json``, by name (a
    cell refused before it started leaves a folder holding only its lock, which is not a cell)."""
    root = Path(root)
    return [CellStore(p.parent) for p in sorted(root.glob(f"*/{CONFIG}"))] if root.is_dir() else []


def cell_dirs(root: Path) -> list[Path]:
    """Every folder under ``root`` (searched recursively) that holds a cell's results or
    predictions, finished or not, sorted: what a report reads (and names when it cannot)."""
    root = Path(root)
    return sorted({p.parent for p in root.rglob(METRICS)} | {p.parent for p in root.rglob(PREDICTIONS)})


_EMPTY = hashlib.sha256(b"").hexdigest()


def _record(prediction: Prediction) -> dict:
    """A prediction as written to ``predictions.jsonl`` (``notes`` only when it has some, so
    files of tasks without notes keep their format)."""
    record = asdict(prediction)
    if not record.get("notes"):
        record.pop("notes", None)
    return record


def _parse(line: bytes) -> Prediction:
    record = json.loads(line.decode("utf-8"))
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if isinstance(record.get("retrieved"), list):
        record["retrieved"] = tuple(record["retrieved"])
    prediction = Prediction(**record)
    if not isinstance(prediction.example_id, str) or not isinstance(prediction.output, str):
        raise ValueError("'example_id' and 'output' must be strings")
    return prediction


_ID_PREFIX = b'{"example_id": '
_DECODER = json.JSONDecoder()


def _ids_of(path: Path) -> list[str]:
    """The example ids of a predictions file, decoding only each line's leading id (the store
    writes it first), which is ten times faster than parsing whole records with their prompts."""
    ids = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        if line.startswith(_ID_PREFIX):
            value, _ = _DECODER.raw_decode(line[len(_ID_PREFIX) :].decode("utf-8"))
        else:
            value = _parse(line).example_id
        if not isinstance(value, str):
            raise ValueError("an 'example_id' is not a string")
        ids.append(value)
    return ids


def scores_digest(scores: Any) -> str:
    """The checksum of a JSON object's content (independent of key order and indentation), which
    ``metrics.json`` records for ``scores.json`` and ``config.json``: an edited ``scores.json``
    (rows swapped between examples, a profile size changed, which leave every metric's value
    intact) or ``config.json`` (another label or model) shows as a different checksum."""
    from lamp_harness.base.io import stable_hash

    return stable_hash(scores, 64)


def _digest_and_count(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    count = 0
    with open(path, "rb") as handle:
        for line in handle:
            digest.update(line)
            count += bool(line.strip())
    return digest.hexdigest(), count


def _id_problem(ids: Sequence[str], expected_ids: Collection[str]) -> str | None:
    expected = set(expected_ids)
    seen: set[str] = set()
    duplicates = {i for i in ids if i in seen or seen.add(i)}  # type: ignore[func-returns-value]
    foreign = seen - expected
    missing = expected - seen
    parts = []
    if missing:
        parts.append(f"lacks {len(missing)} example id(s) of the split (e.g. {sorted(missing)[0]!r})")
    if foreign:
        parts.append(f"has {len(foreign)} id(s) not in the split (e.g. {sorted(foreign)[0]!r})")
    if duplicates:
        parts.append(f"repeats {len(duplicates)} id(s) (e.g. {sorted(duplicates)[0]!r})")
    return "; ".join(parts) or None


def _is_prefix(kept: Sequence[Prediction], expected_ids: Collection[str]) -> bool:
    order = list(expected_ids)
    return len(kept) <= len(order) and all(p.example_id == i for p, i in zip(kept, order, strict=False))


def _read_object(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_bytes().decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _report_json(path: Path) -> dict[str, Any]:
    """A cell file as a report reads it: a one-line error naming it when it is not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise lamp_error(
            f"cannot read JSON ({type(exc).__name__}: {exc})",
            where=str(path),
            fix="Re-run the cell with `lamp run ... --force`, or delete the folder.",
        ) from None
    if not isinstance(data, dict):
        raise lamp_error(
            "expected a JSON object",
            where=str(path),
            fix="Re-run the cell with `lamp run ... --force`, or delete the folder.",
        )
    return data


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _read_or_fail(path: Path) -> dict[str, Any]:
    try:
        return _read_object(path)
    except (OSError, ValueError) as exc:
        raise lamp_error(
            f"cannot read it ({_short(exc)})",
            where=str(path),
            fix="Re-run the cell with the same `lamp run` command, or delete the folder.",
        ) from None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return (f"{type(exc).__name__}: {text}" if not isinstance(exc, ValueError) or not text else text)[:160]
