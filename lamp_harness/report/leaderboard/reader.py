"""The leaderboard's reader: the finished cells under run folders, read through the run store
(:class:`~lamp_harness.run.store.CellStore`), told apart, deduplicated and arranged into the tables of
the model (:mod:`lamp_harness.report.leaderboard.model`), with the packaged reference numbers beside them.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from lamp_harness.base.errors import LampError, lamp_error
from lamp_harness.report.leaderboard.model import (
    PLACES,
    Block,
    Cell,
    Collection,
    Column,
    DataInfo,
    Header,
    Leaderboard,
    ModelInfo,
    ReferenceInfo,
    ReferenceValue,
    Row,
    TrainingInfo,
    Value,
    natural_key,
    training_budget,
)
from lamp_harness.report.scores import recorded_values_problem
from lamp_harness.run.records import CellRecord
from lamp_harness.run.store import CONFIG, METRICS, CellStore, cell_dirs


def method_label(config: CellRecord) -> str:
    """``personalizer / retriever / k=K / model`` (the record's own ``label``, written by the runner,
    when present);
    retriever and k are left out when the cell has no retriever."""
    label = config.label
    if isinstance(label, str) and label.strip():
        return label.strip()
    personalizer: Any = config.personalizer
    if isinstance(personalizer, Mapping):
        personalizer = personalizer.get("name")
    parts = [str(personalizer or "?")]
    retriever = _name(config.retriever)
    if retriever:
        parts.append(retriever)
        if config.k not in (None, ""):
            parts.append(f"k={config.k}")
    generator: Any = config.generator
    if isinstance(generator, Mapping):
        model = generator.get("model") or generator.get("name") or "?"
        parts.append(str(model).rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1])
    elif generator:
        parts.append(str(generator))
    return " / ".join(parts)


def _name(component: Any) -> str | None:
    """A component's name; ``None`` for an absent one (null, empty, or ``"none"``)."""
    if isinstance(component, Mapping):
        name = component.get("name")
        return str(name) if name not in (None, "", "none") else None
    return str(component) if component not in (None, "", "none") else None


def _scheme(config: CellRecord) -> str | None:
    """The data scheme (user- or time-based split) when the record has one."""
    for value in (config.scheme, config.section("data").get("scheme")):
        if value not in (None, ""):
            return str(value)
    return None


def _data_source(config: CellRecord) -> str | None:
    """The data source recorded by the runner, without machine-specific absolute paths."""
    source = config.section("data").get("source")
    if not source:
        return None
    kind, sep, rest = str(source).partition(":")
    return f"{kind}:{Path(rest).name}" if sep and kind == "local" else str(source)


def _data_id(config: CellRecord) -> str | None:
    """A short digest of the data's file checksums (``config.json``'s ``data.checksums``): two
    folders both called ``data`` holding different files get different identities, and a
    ``--limit`` rerun on the same files the same one."""
    from lamp_harness.base.io import stable_hash

    checksums = config.section("data").get("checksums")
    if not isinstance(checksums, Mapping) or not checksums:
        return None
    return stable_hash(dict(sorted((str(k), str(v)) for k, v in checksums.items())), 12)


def read_cell(directory: Path) -> Cell:
    """The cell in ``directory``, read through its :class:`~lamp_harness.run.store.CellStore`; a
    malformed file is a one-line error naming it."""
    directory = Path(directory)
    finished = CellStore(directory).read_finished()
    config, metrics = finished.record, finished.metrics
    edited = recorded_values_problem(directory, {m.name: m.value for m in metrics})
    if edited:  # a value typed into metrics.json would be shown as the harness's
        raise lamp_error(edited, where=str(directory / METRICS), fix="Re-run the cell with `lamp run ... --force`.")
    task = config.task or finished.task
    split = config.split or finished.split
    if not task or not split:
        raise lamp_error(
            "config.json has no 'task' or 'split'",
            where=str(directory / CONFIG),
            fix="Re-run the cell with `lamp run ... --force`.",
        )
    return Cell(
        cell_id=str(config.cell_id or directory.name),
        dir=directory,
        task=str(task),
        split=str(split),
        scheme=_scheme(config),
        data=_data_source(config),
        data_id=_data_id(config),
        label=method_label(config),
        metrics=metrics,
        record=config,
        mtime=finished.mtime,
    )


def collect_cells(runs_dirs: Iterable[Path]) -> Collection:
    """Every finished cell under ``runs_dirs`` (searched recursively).

    The same cell found twice (one cell id, or one method on one task, split and data in two
    runs) is kept once: the one that scored more examples, and of those the newest ``metrics.json``,
    wins; a note says which folder was dropped and why (a ``--limit 2`` smoke rerun never replaces
    the 40-example cell silently). A folder
    whose files disagree (unfinished, damaged, edited: see :meth:`CellStore.inconsistency`) is
    skipped with a note saying why.
    """
    found: dict[Path, Cell] = {}
    skipped: list[str] = []
    for root in runs_dirs:
        root = Path(root)
        if not root.is_dir():
            raise lamp_error(
                "runs folder does not exist",
                where=str(root),
                fix="Pass the --out folder of a `lamp run` (default runs/).",
            )
        for directory in cell_dirs(root):
            if directory.resolve() in found:
                continue
            # A cell whose files disagree is named, never silently dropped or half-read.
            problem = CellStore(directory).inconsistency()
            if problem is None:
                try:
                    found[directory.resolve()] = read_cell(directory)
                    continue
                except LampError as exc:
                    problem = str(exc)
            skipped.append(f"skipped {directory}: {problem}; re-run its `lamp run` command to complete or repair it")
    if not found:
        where = ", ".join(str(Path(r)) for r in runs_dirs) or "(no folder)"
        raise lamp_error(
            "no finished cells (folders with config.json and metrics.json)"
            + (f" ({len(skipped)} skipped: {'; '.join(skipped)})" if skipped else ""),
            where=where,
            fix="Run `lamp run ... --out FOLDER` first, then pass that FOLDER.",
        )
    preferred = _tell_apart(sorted(found.values(), key=lambda c: (-c.n, -c.mtime, str(c.dir))))
    kept: dict[tuple[str, ...], Cell] = {}
    seen_ids: dict[str, Cell] = {}
    notes = []
    for cell in preferred:
        key = cell.method
        winner = seen_ids.get(cell.cell_id) or kept.get(key)
        if winner is not None:
            if winner.n > cell.n:
                why = f"scored {cell.n} examples, {winner.dir.name} scored {winner.n}; kept the larger one" + (
                    " although this one is newer" if cell.mtime > winner.mtime else ""
                )
            else:
                why = "kept the newer one"
            notes.append(f"{cell.dir}: same cell as {winner.dir} ({cell.task}, {cell.label}); {why}")
            continue
        kept[key] = cell
        seen_ids[cell.cell_id] = cell
    cells = sorted(_variants(list(kept.values())), key=lambda c: (natural_key(c.task), natural_key(c.label), c.cell_id))
    return Collection(tuple(cells), tuple(sorted(notes)) + tuple(skipped))


def _variants(cells: list[Cell]) -> list[Cell]:
    """Number the different data sets that share a name, per task (newest first), so that no
    table mixes two of them: cells of one task on data of one name but different checksums (two
    folders both called ``data``) get different :attr:`Cell.data_variant` values, hence tables."""
    newest: dict[tuple[Any, ...], dict[str | None, float]] = {}
    for cell in cells:
        ids = newest.setdefault((cell.split, cell.scheme, cell.data, cell.task), {})
        ids[cell.data_id] = max(ids.get(cell.data_id, 0.0), cell.mtime)
    out = []
    for cell in cells:
        ids = newest[(cell.split, cell.scheme, cell.data, cell.task)]
        order = sorted(ids, key=lambda i: (-ids[i], i or ""))
        out.append(replace(cell, data_variant=order.index(cell.data_id)))
    return out


NOT_A_SETTING = frozenset(
    {
        "name",
        "plugin",
        "device",
        "engine",
        "engine_args",
        "substitutes",
        "source",
        "batch_size",
        "base_url",
        "concurrency",
        "rpm",
        "tpm",
        "api_key_env",
        "timeout",
        "max_retries",
        "cache",
    }
)
"""Recorded component fields that say where or how fast a cell ran, not what it computed: cells
that differ only in them are the same method (a rerun on another machine, with another vLLM, at
another rate limit)."""

RUN_SETTINGS = ("seed", "decode")
"""Run-level fields of ``config.json`` that change what a cell computes. (``--checkpoint`` is left
out: its path differs from machine to machine for the same weights.)"""


def _settings(config: CellRecord) -> dict[str, str]:
    """The output-changing settings a cell's record (``config.json``) holds for its generator, retriever,
    personalizer and task (``task_args``), and :data:`RUN_SETTINGS`, flattened by path: ``{"generator.dtype":
    '"bfloat16"', "retriever.k1": "1.2", "seed": "1", ...}`` (values as JSON)."""
    flat: dict[str, str] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                if key not in NOT_A_SETTING:
                    walk(inner, f"{path}.{key}")
        else:
            flat[path] = json.dumps(value, sort_keys=True, default=str)

    for part in ("generator", "retriever", "personalizer", "task_args"):
        if isinstance(getattr(config, part), Mapping):
            walk(getattr(config, part), part)
    for name in RUN_SETTINGS:
        if getattr(config, name) is not None:
            flat[name] = json.dumps(getattr(config, name), sort_keys=True, default=str)
    training = config.training
    if isinstance(training, Mapping):
        # How the cell's weights were trained (PPlug at effective batch 8 and at the paper's 64 are
        # two methods). A data-parallel job is the 1-process run with its accumulation x processes.
        ranks = training.get("world_size") or 1
        for key, value in training.items():
            if key != "world_size":
                value = value * ranks if key == "grad_accum" and isinstance(value, int) else value
                flat[f"training.{key}"] = json.dumps(value, sort_keys=True, default=str)
    return flat


def _tell_apart(cells: list[Cell]) -> list[Cell]:
    """Cells that share a label but were computed with different settings that the label does not
    show (``--generator-arg dtype=bfloat16`` beside the default, ``--retriever-arg k1=1.2``, another
    ``--seed``...) are different methods: each gets the differing settings appended to its label
    (``/ dtype=bfloat16``; the full path, ``retriever.model=...``, where a short name is ambiguous)
    instead of one of them being dropped as a rerun.

    A setting one cell records and another does not (an explicit argument beside the plugin's
    default) shows as ``name=default`` on the other, unless the two cells come from different plugin
    versions: a newer version may record more, so only settings both record are compared then.
    Cells whose labels still agree are reruns of one method, and the newest wins."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, cell in enumerate(cells):
        key = cell.method
        groups.setdefault(key, []).append(index)
    out = list(cells)
    for members in groups.values():
        settings = [_settings(cells[i].record) for i in members]
        versions = [json.dumps(cells[i].record.versions, sort_keys=True) for i in members]
        differing: set[str] = set()
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                a, b = settings[x], settings[y]
                names = a.keys() | b.keys() if versions[x] == versions[y] else a.keys() & b.keys()
                differing |= {name for name in names if a.get(name) != b.get(name)}
        if not differing:
            continue
        short = {name: name.rsplit(".", 1)[-1] for name in differing}
        clashes = {name for name, count in Counter(short.values()).items() if count > 1}
        shown_names = {name: name if short[name] in clashes else short[name] for name in differing}
        for index, own in zip(members, settings, strict=True):
            shown = [
                f"{shown_names[name]}={json.loads(own[name]) if name in own else 'default'}"
                for name in sorted(differing, key=lambda n: shown_names[n])
            ]
            out[index] = replace(cells[index], label=" / ".join([cells[index].label, *shown]))
    return out


def reference_names() -> list[str]:
    """Names of the packaged reference tables (``lamp-user``, ``lamp-time``, ``pplug``...)."""
    return sorted(p.name[:-4] for p in resources.files("lamp_references").iterdir() if p.name.endswith(".csv"))


def load_reference(name: str) -> list[ReferenceValue]:
    """A packaged reference table, in file order (the paper's column order)."""
    names = reference_names()
    if name not in names:
        raise lamp_error(f"unknown reference {name!r}", where="--reference", fix=f"Available: {', '.join(names)}.")
    text = resources.files("lamp_references").joinpath(f"{name}.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return [ReferenceValue(r["task"], r["metric"], r["method"], float(r["value"])) for r in rows]


def reference_info(name: str) -> ReferenceInfo:
    """The source, model and split a reference table names in its header comments (``?`` for
    one it leaves out)."""
    load_reference(name)  # a one-line error for an unknown name
    text = resources.files("lamp_references").joinpath(f"{name}.csv").read_text(encoding="utf-8")
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.lstrip("#").partition(":")
        if line.startswith("#") and sep and key.strip() in ("source", "model", "split"):
            fields[key.strip()] = value.strip()
    return ReferenceInfo(name, fields.get("source", "?"), fields.get("model", "?"), fields.get("split", "?"))


SMALL_N = 30
"""Below this many examples a table warns, in the file itself, that its intervals are wide and
its paired tests coarse."""


def _n_range(values: Iterable[int]) -> str:
    values = sorted(set(values))
    return str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"


def _models(cells: Sequence[Cell]) -> tuple[ModelInfo, ...]:
    found: dict[tuple[str, str], ModelInfo] = {}

    def walk(value: Any, role: str, preset: str | None) -> None:
        if not isinstance(value, Mapping):
            return
        model = value.get("model")
        if isinstance(model, str) and model:
            name = model.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
            substitutes = value.get("substitutes")
            info = ModelInfo(name, role, str(substitutes) if substitutes else None, preset if substitutes else None)
            found.setdefault((name, role), info)
        for key, inner in value.items():
            if isinstance(inner, Mapping):
                walk(inner, f"{role} {key}", preset)

    from lamp_harness.inputs.models import substitution

    for cell in cells:
        preset = cell.record.preset
        for part in ("generator", "retriever", "personalizer"):
            component = getattr(cell.record, part)
            if isinstance(component, Mapping):
                role = part if part == "generator" else str(component.get("name") or part)
                walk(component, role, str(preset) if preset else None)
    # Substitutions a component does not record itself (a retriever's encoder) are in the notes
    # the preset left; those already shown are not repeated.
    shown = {m.stand_in_for for m in found.values()}
    for cell in cells:
        notes = cell.record.preset_notes
        for note in notes if isinstance(notes, list) else ():
            sub = substitution(str(note))
            if sub and sub["substitutes"] not in shown:
                shown.add(sub["substitutes"])
                found[(sub["model"], sub["role"])] = ModelInfo(sub["model"], sub["role"], sub["substitutes"], sub["preset"])
    return tuple(sorted(found.values(), key=lambda m: (m.role != "generator", natural_key(m.role), natural_key(m.model))))


def _data_description(name: str | None) -> str:
    """What the data source plugin named by ``name`` (``demo`` of ``demo:v1``) says its data is;
    empty when the plugin says nothing or is not installed here."""
    kind = str(name or "").partition(":")[0]
    if not kind:
        return ""
    try:
        from lamp_harness.plugin.registry import host

        source = host().registry.get("data_source", kind).load()
        return str(getattr(source, "description", "") or "")
    except Exception:  # an uninstalled or broken plugin: the header says nothing about it
        return ""


def describe(blocks: Sequence[Block], cells: Sequence[Cell], references: Sequence[tuple[str, Any]] = ()) -> Header:
    """The header of a leaderboard of ``blocks`` built from ``cells``: data (name, checksum, n per
    task), models (stand-ins named), training budgets, the reference tables' sources and the
    small-sample warning."""
    data, warnings = [], []
    for block in blocks:
        members = [c for c in cells if c.block == block.key]
        tasks = sorted({c.task for c in members}, key=natural_key)
        n = tuple((t, _n_range(c.n for c in members if c.task == t)) for t in tasks)
        data.append(DataInfo(block.title, block.data, block.data_id, n, _data_description(block.data)))
        small = [(t, max(c.n for c in members if c.task == t)) for t in tasks]
        small = [(t, k) for t, k in small if k < SMALL_N]
        if small:
            shown = ", ".join(f"{t}: n={k}" for t, k in small)
            warnings.append(
                f"table '{block.title}' rests on fewer than {SMALL_N} examples ({shown}): its "
                "intervals are wide, its paired tests coarse and able to show only very large "
                "differences; read its values and † marks as a demonstration, not a result"
            )
    # Each column's budgets, by task: a column whose tasks trained differently names the task of each.
    training: dict[tuple[str, str], dict[str, list[str]]] = {}
    titles = {block.key: block.title for block in blocks}
    for cell in cells:
        budget = training_budget(cell.record)
        if budget is not None and cell.block in titles:
            key = (titles[cell.block] if len(blocks) > 1 else "", cell.label)
            by_budget = training.setdefault(key, {})
            if cell.task not in by_budget.setdefault(budget, []):
                by_budget[budget].append(cell.task)
    return Header(
        cells=len(cells),
        data=tuple(data),
        models=_models(cells),
        training=tuple(
            TrainingInfo(
                label,
                "; ".join(b if len(by) == 1 else f"{', '.join(sorted(t))}: {b}" for b, t in by.items()),
                table,
            )
            for (table, label), by in training.items()
        ),
        references=tuple(reference_info(name) for name, _ in references),
        warnings=tuple(warnings),
    )


def build(cells: Sequence[Cell], references: Sequence[str] = (), notes: Sequence[str] = ()) -> Leaderboard:
    """Arrange ``cells`` into blocks; ``references`` names packaged reference tables to add."""
    ref_tables = [(name, load_reference(name)) for name in references]
    cells = [c for c in cells if c.metrics]  # test-split cells have no golds, hence no metrics
    blocks = []
    keys = sorted({c.block for c in cells}, key=lambda b: (natural_key(b[0]), b[1] or "", b[2] or "", b[3]))
    repeated = {key[:3] for key in keys if key[3] > 0}
    for block_key in keys:
        split, scheme, data, variant = block_key
        members = [c for c in cells if c.block == block_key]
        labels = sorted({c.label for c in members}, key=natural_key)
        by_key = {(c.task, c.label): c for c in members}
        row_keys: list[tuple[str, str, bool]] = []
        for task in sorted({c.task for c in members}, key=natural_key):
            for cell in (c for c in members if c.task == task):
                for m in cell.metrics:
                    if all((task, m.name) != k[:2] for k in row_keys):
                        row_keys.append((task, m.name, m.higher_is_better))
        columns = [Column(label) for label in labels]
        # Task and metric names are matched without regard to case or ``_``/``-``, so
        # ``LaMP_3``/``mae`` in a table still meets ``lamp-3``/``MAE`` in metrics.json.
        ref_values: list[dict[tuple[str, str], float]] = []
        wanted = {_ref_key(t, m) for t, m, _ in row_keys}
        for name, table in ref_tables:
            for method in dict.fromkeys(r.method for r in table):
                published = {_ref_key(r.task, r.metric): r.value for r in table if r.method == method}
                if any(_ref_value(published, key) is not None for key in wanted):
                    columns.append(Column(f"{method} ({reference_info(name).short})", "reference", name))
                    ref_values.append(published)
        rows = []
        for task, metric, higher in row_keys:
            values: list[Value | None] = []
            for label in labels:
                found = by_key.get((task, label))
                result = next((m for m in found.metrics if m.name == metric), None) if found else None
                values.append(
                    None
                    if result is None or found is None
                    else Value(result.value, result.ci_low, result.ci_high, result.n, found.cell_id)
                )
            values = _mark_best(values, higher)
            key = _ref_key(task, metric)
            values += [None if (ref := _ref_value(v, key)) is None else Value(ref) for v in ref_values]
            rows.append(Row(task, metric, higher, tuple(values)))
        blocks.append(
            Block(
                split,
                scheme,
                tuple(columns),
                tuple(rows),
                data,
                data_id=_block_data_id(members),
                same_name=block_key[:3] in repeated,
                variant=variant,
            )
        )
    return Leaderboard(tuple(blocks), tuple(notes), tuple(cells), header=describe(blocks, cells, ref_tables))


def _block_data_id(members: Sequence[Cell]) -> str | None:
    """The identity of a table's data: the one :attr:`Cell.data_id` its cells share, or a digest
    of every task's (``None`` when none recorded checksums)."""
    from lamp_harness.base.io import stable_hash

    ids = {c.task: c.data_id for c in members if c.data_id}
    if not ids:
        return None
    if len(set(ids.values())) == 1:
        return next(iter(ids.values()))
    return stable_hash(sorted(ids.items()), 12)


def _ref_key(task: str, metric: str) -> tuple[str, str]:
    return (task.lower().replace("_", "-"), metric.lower().replace("_", "-"))


def _ref_value(values: dict[tuple[str, str], float], key: tuple[str, str]) -> float | None:
    """A reference table's value for a (task, metric) row: the exact entry, else an entry whose
    task is a pattern (``lamp-qa-*``: a macro average shown on each of its tasks' rows) and whose
    metric is the row's or the row's without its last ``:`` part (a judged metric's settings
    digest, ``aspect-score@MODEL:VERSION:DIGEST``)."""
    from fnmatch import fnmatchcase

    if key in values:
        return values[key]
    task, metric = key
    for (ref_task, ref_metric), value in values.items():
        if (
            "*" in ref_task
            and fnmatchcase(task, ref_task)
            and (metric == ref_metric or metric.rsplit(":", 1)[0] == ref_metric)
        ):
            return value
    return None


def _mark_best(values: list[Value | None], higher: bool) -> list[Value | None]:
    """Bold the best of our values; ties at the printed precision are all bold."""
    shown = [round(v.value, PLACES) for v in values if v is not None]
    if not shown:
        return values
    best = max(shown) if higher else min(shown)
    return [None if v is None else replace(v, best=round(v.value, PLACES) == best) for v in values]


def leaderboard(runs_dirs: Iterable[Path], references: Sequence[str] = ()) -> Leaderboard:
    """Collect the cells under ``runs_dirs`` and arrange them (see :func:`build`)."""
    runs_dirs = list(runs_dirs)
    collection = collect_cells(runs_dirs)
    board = build(collection.cells, references, collection.notes)
    if not board.blocks:
        raise lamp_error(
            "no scored cells: every cell found has empty metrics (a split without golds)",
            where=", ".join(str(Path(r)) for r in runs_dirs),
            fix="Score dev-split runs here, or export test predictions with "
            "`lamp export --submission OUT` and score them with `lamp evaluate`.",
        )
    return board
