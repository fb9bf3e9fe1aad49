"""Submission export: one official gold-format predictions file per task, and their zip.

Each file is ``{"task": "<official name>", "golds": [{"id": ..., "output": ...}, ...]}`` (the
format of the official ``*_outputs.json`` files), built from a finished cell's
``predictions.jsonl`` (the parsed ``output``). The LaMP leaderboard's scorer reads every ``*.json``
in the zip, identifies the task by its ``task`` field, requires prediction ids to equal the gold
ids, and requires all tasks of the benchmark: :class:`Submission` says which are missing.

Which tasks exist and their official names come from the registered task plugins; nothing here
names a concrete task.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamp_harness.base.errors import lamp_error
from lamp_harness.base.io import atomic_write_bytes, atomic_write_json
from lamp_harness.report.leaderboard.model import Cell, natural_key
from lamp_harness.report.leaderboard.reader import collect_cells
from lamp_harness.run.store import CONFIG, CellStore

if TYPE_CHECKING:
    from lamp_harness.plugin.catalog import Registry

ZIP_NAME = "submission.zip"
SELECT_KEYS = ("personalizer", "retriever", "k", "generator", "model", "label", "cell_id")


@dataclass(frozen=True)
class ExportedTask:
    task: str
    official_name: str
    path: Path
    examples: int
    cell: Cell


@dataclass(frozen=True)
class Submission:
    """What :func:`export_submission` wrote."""

    out_dir: Path
    zip_path: Path
    split: str
    exported: tuple[ExportedTask, ...]
    missing: tuple[str, ...]
    """Official names of registered tasks with no exported file (the leaderboard needs every one)."""
    stale: tuple[Path, ...] = ()
    """Gold-format files already in ``out_dir`` from an earlier export, not rewritten now."""
    notes: tuple[str, ...] = ()


def _norm(text: Any) -> str:
    return str(text).strip().lower().replace("_", "-")


def cell_facets(cell: Cell) -> dict[str, set[str]]:
    """The values a ``--select`` key can match for ``cell`` (all normalized)."""
    record = cell.record
    personalizer = record.personalizer
    retriever = record.retriever
    generator = record.generator
    gen = generator if isinstance(generator, Mapping) else {"name": generator}
    model = gen.get("model")
    models = {_norm(model), _norm(str(model).rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1])} if model else set()
    return {
        "personalizer": {_norm(personalizer.get("name") if isinstance(personalizer, Mapping) else personalizer)},
        "retriever": {_norm(retriever.get("name") if isinstance(retriever, Mapping) else retriever or "none")},
        "k": {_norm(record.k)} if retriever else {"0", "none"},
        "generator": {_norm(x) for x in (gen.get("plugin"), gen.get("name")) if x} | models,
        "model": models,
        "label": {_norm(cell.label)},
        "cell_id": {_norm(cell.cell_id)},
    }


def select_cells(cells: Iterable[Cell], select: Mapping[str, str]) -> list[Cell]:
    """The cells matching every ``key=value`` of ``select`` (``cell_id`` may be a prefix)."""
    unknown = sorted(set(select) - set(SELECT_KEYS))
    if unknown:
        raise lamp_error(
            f"unknown key(s) {', '.join(unknown)}",
            where="--select",
            fix=f"Use {', '.join(SELECT_KEYS)}, e.g. --select personalizer=ipa,retriever=bm25.",
        )
    chosen = []
    for cell in cells:
        facets = cell_facets(cell)
        ok = True
        for key, value in select.items():
            wanted = _norm(value)
            if key == "cell_id":
                ok = ok and any(v.startswith(wanted) for v in facets[key])
            else:
                ok = ok and wanted in facets[key]
        if ok:
            chosen.append(cell)
    return chosen


def _official_names(registry: Registry) -> dict[str, tuple[str, str]]:
    """Registered task name -> (official name, benchmark), from the task plugins; a task that
    names no ``benchmark`` is a benchmark of its own (its official name)."""
    names = {}
    for name in registry.names("task"):
        factory = registry.get("task", name).load()
        official = getattr(factory, "official_name", None)
        benchmark = getattr(factory, "benchmark", None)
        if not isinstance(official, str):
            task = registry.create("task", name)
            official, benchmark = task.official_name, getattr(task, "benchmark", None)
        names[name] = (official, benchmark if isinstance(benchmark, str) and benchmark else official)
    return names


def read_outputs(cell: Cell) -> list[dict[str, str]]:
    """``[{"id", "output"}]`` from a cell's ``predictions.jsonl``, in file order (a repeated id
    keeps its last prediction)."""
    store = CellStore(cell.dir)
    if not store.has_predictions():
        raise lamp_error(
            "the cell has no predictions.jsonl",
            where=str(cell.dir),
            fix="Re-run the cell with `lamp run ... --force`.",
        )
    outputs: dict[str, str] = {}
    for prediction in store.read_predictions():
        outputs[str(prediction.example_id)] = prediction.output
    return [{"id": i, "output": o} for i, o in outputs.items()]


def export_submission(
    runs_dirs: Iterable[Path],
    out_dir: Path,
    *,
    split: str = "test",
    select: Mapping[str, str] | None = None,
    registry: Registry | None = None,
) -> Submission:
    """Write one gold-format predictions file per task found in ``runs_dirs`` for ``split`` into
    ``out_dir``, plus ``out_dir/submission.zip`` holding them.

    A task with several candidate cells (several methods, or several models) is an error listing
    them: narrow the choice with ``select`` (``personalizer``, ``retriever``, ``k``, ``generator``,
    ``model``, ``label``, ``cell_id``).
    """
    if registry is None:
        from lamp_harness.plugin.registry import host

        registry = host().registry
    runs_dirs = [Path(r) for r in runs_dirs]
    out_dir = Path(out_dir)
    where = ", ".join(str(r) for r in runs_dirs)
    collection = collect_cells(runs_dirs)
    in_split = [c for c in collection.cells if c.split == split]
    if not in_split:
        present = ", ".join(sorted({c.split for c in collection.cells}))
        raise lamp_error(
            f"no finished cells for split {split!r} (splits found: {present})",
            where=where,
            fix=f"Run `lamp run ... --split {split}` first, or pass --split with one of: {present}.",
        )
    chosen = select_cells(in_split, select or {})
    if not chosen:
        labels = "; ".join(sorted({f"{c.task}: {c.label}" for c in in_split}, key=natural_key))
        raise lamp_error(
            f"--select matches none of the {split} cells ({labels})",
            where=where,
            fix="Loosen --select, e.g. --select personalizer=NAME.",
        )
    # Grouped by official name: two registered tasks may share one (a superseded variant of a
    # task), and the leaderboard takes one file per official name.
    official = _official_names(registry)
    by_name = {_norm(name): name for name in official}
    by_official: dict[str, list[Cell]] = {}
    for cell in chosen:
        name = by_name.get(_norm(cell.task))
        if name is None:
            raise lamp_error(
                f"task {cell.task!r} is not registered, so its official name is unknown",
                where=str(cell.dir / CONFIG),
                fix="Install the plugin that provides it (see `lamp plugins`).",
            )
        by_official.setdefault(official[name][0], []).append(cell)
    ambiguous = {t: cs for t, cs in by_official.items() if len(cs) > 1}
    if ambiguous:
        listing = "; ".join(
            f"{t}: " + ", ".join(f"{c.task} '{c.label}' (cell {c.cell_id})" for c in cs)
            for t, cs in sorted(ambiguous.items(), key=lambda kv: natural_key(kv[0]))
        )
        raise lamp_error(
            f"several candidate cells per task ({listing})",
            where=where,
            fix="Pick one with --select, e.g. --select personalizer=ipa,retriever=bm25,k=4 or --select cell_id=PREFIX.",
        )

    exported = []
    for name in sorted(by_official, key=natural_key):
        cell = by_official[name][0]
        golds = read_outputs(cell)
        path = out_dir / f"{name}.json"
        atomic_write_json(path, {"task": name, "golds": golds})
        exported.append(ExportedTask(cell.task, name, path, len(golds), cell))

    zip_path = out_dir / ZIP_NAME
    atomic_write_bytes(zip_path, _zip_bytes([e.path for e in exported]))
    written = {e.path.name for e in exported}
    stale = tuple(sorted(p for p in out_dir.glob("*.json") if p.name not in written and _is_gold_file(p)))
    done = {e.official_name for e in exported}
    benchmarks = {b for n, b in official.values() if n in done}
    missing = tuple(sorted({n for n, b in official.values() if b in benchmarks and n not in done}, key=natural_key))
    return Submission(out_dir, zip_path, split, tuple(exported), missing, stale, collection.notes)


def _zip_bytes(paths: list[Path]) -> bytes:
    """A deterministic zip (fixed timestamps, sorted names) of ``paths``, flat."""
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(paths, key=lambda p: p.name):
            info = zipfile.ZipInfo(path.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _is_gold_file(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "task" in data and "golds" in data
