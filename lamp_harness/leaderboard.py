"""Paper-style leaderboards from finished run folders.

A *cell* is a folder holding ``config.json`` and ``metrics.json`` (written by the run store; see
:mod:`lamp_harness.store`). Everything shown comes from those files: task names from
``config.json``'s ``task``, metric names and directions from ``metrics.json``. Nothing here knows a
concrete task, metric or method.

Layout, as in the LaMP and PPlug papers: one block per split (and per data scheme when the
config records one); rows are task x metric with an arrow for the direction; columns are methods
labelled ``personalizer / retriever / k=K / model`` (plus ``beams=N``... when not the default);
the best of our values in each row is in bold. Reference columns (the papers' numbers,
:mod:`lamp_references`) can be added beside ours.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from lamp_harness.contracts import MetricResult as Metric
from lamp_harness.errors import LampError, lamp_error
from lamp_harness.secrets import redact
from lamp_harness.store import CONFIG, METRICS, PREDICTIONS, CellStore

FORMATS = ("markdown", "json", "csv", "html")
PLACES = 3  # the papers print three decimals

# ---------------------------------------------------------------------------------------------
# Cells: what one finished run folder says
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A finished cell found on disk."""

    cell_id: str
    dir: Path
    task: str
    split: str
    scheme: str | None
    label: str
    metrics: tuple[Metric, ...]
    config: Mapping[str, Any]
    mtime: float
    data: str | None = None
    """Where the examples came from (``demo:v1``, ``lamp:user``, ``local:<folder name>``), as shown."""
    data_id: str | None = None
    """The data's identity: a digest of the checksums of the task's files (``None`` for a cell
    that recorded none). Results on different data never share a table, whatever their names."""
    data_variant: int = 0
    """Which of the data sets named :attr:`data` this is, for its task (0 unless two different
    data sets share the name; set by :func:`collect_cells`)."""

    @property
    def block(self) -> tuple[str, str | None, str | None, int]:
        """The table the cell belongs in: ``(split, scheme, data name, data variant)``."""
        return (self.split, self.scheme, self.data, self.data_variant)

    @property
    def method(self) -> tuple[Any, ...]:
        """What makes two cells the same method on the same data (reruns of each other)."""
        return (self.split, self.scheme, self.data, self.data_id, self.task, self.label)

    @property
    def n(self) -> int:
        """Examples scored (the largest ``n`` of its metrics)."""
        return max((m.n for m in self.metrics), default=0)


def method_label(config: Mapping[str, Any]) -> str:
    """``personalizer / retriever / k=K / model`` (the config's own ``label``, written by the runner,
    when present);
    retriever and k are left out when the cell has no retriever."""
    label = config.get("label")
    if isinstance(label, str) and label.strip():
        return label.strip()
    personalizer = config.get("personalizer")
    if isinstance(personalizer, Mapping):
        personalizer = personalizer.get("name")
    parts = [str(personalizer or "?")]
    retriever = _name(config.get("retriever"))
    if retriever:
        parts.append(retriever)
        if config.get("k") not in (None, ""):
            parts.append(f"k={config['k']}")
    generator = config.get("generator")
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


def _scheme(config: Mapping[str, Any]) -> str | None:
    """The data scheme (user- or time-based split) when the config records one."""
    data = config.get("data")
    for source in (config, data if isinstance(data, Mapping) else {}):
        value = source.get("scheme")
        if value not in (None, ""):
            return str(value)
    return None


def _data_source(config: Mapping[str, Any]) -> str | None:
    """The data source recorded by the runner, without machine-specific absolute paths."""
    data = config.get("data")
    source = data.get("source") if isinstance(data, Mapping) else None
    if not source:
        return None
    kind, sep, rest = str(source).partition(":")
    return f"{kind}:{Path(rest).name}" if sep and kind == "local" else str(source)


def _data_id(config: Mapping[str, Any]) -> str | None:
    """A short digest of the data's file checksums (``config.json``'s ``data.checksums``): two
    folders both called ``data`` holding different files get different identities, and a
    ``--limit`` rerun on the same files the same one."""
    from lamp_harness.io import stable_hash

    data = config.get("data")
    checksums = data.get("checksums") if isinstance(data, Mapping) else None
    if not isinstance(checksums, Mapping) or not checksums:
        return None
    return stable_hash(dict(sorted((str(k), str(v)) for k, v in checksums.items())), 12)


def read_cell(directory: Path) -> Cell:
    """The cell in ``directory``; a malformed file is a one-line error naming it."""
    directory = Path(directory)
    config = redact(_read_json(directory / CONFIG))  # a folder from before secrets were masked
    data = _read_json(directory / METRICS)
    where = str(directory / METRICS)
    try:
        metrics = tuple(
            Metric(
                str(m["name"]),
                float(m["value"]),
                bool(m["higher_is_better"]),
                _maybe_float(m.get("ci_low")),
                _maybe_float(m.get("ci_high")),
                int(m.get("n") or 0),
            )
            for m in data["metrics"]
        )
        for m in metrics:  # NaN or Infinity would be ranked, bolded and plotted as numbers
            if not all(math.isfinite(x) for x in (m.value, m.ci_low or 0.0, m.ci_high or 0.0)):
                raise ValueError(f"metric {m.name!r} has a non-finite value")
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise lamp_error(
            f"malformed metrics entry ({type(exc).__name__}: {exc})",
            where=where,
            fix="Re-run the cell with `lamp run ... --force`.",
        ) from None
    from lamp_harness.scores import recorded_values_problem

    edited = recorded_values_problem(directory, {m.name: m.value for m in metrics})
    if edited:  # a value typed into metrics.json would be shown as the harness's
        raise lamp_error(edited, where=where, fix="Re-run the cell with `lamp run ... --force`.")
    task = config.get("task") or data.get("task")
    split = config.get("split") or data.get("split")
    if not task or not split:
        raise lamp_error(
            "config.json has no 'task' or 'split'",
            where=str(directory / CONFIG),
            fix="Re-run the cell with `lamp run ... --force`.",
        )
    return Cell(
        cell_id=str(config.get("cell_id") or directory.name),
        dir=directory,
        task=str(task),
        split=str(split),
        scheme=_scheme(config),
        data=_data_source(config),
        data_id=_data_id(config),
        label=method_label(config),
        metrics=metrics,
        config=config,
        mtime=(directory / METRICS).stat().st_mtime,
    )


def _read_json(path: Path) -> dict[str, Any]:
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


@dataclass(frozen=True)
class Collection:
    """The cells kept, and notes about the ones dropped as duplicates."""

    cells: tuple[Cell, ...]
    notes: tuple[str, ...] = ()


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
        candidates = {p.parent for p in root.rglob(METRICS)} | {p.parent for p in root.rglob(PREDICTIONS)}
        for directory in sorted(candidates):
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


def _settings(config: Mapping[str, Any]) -> dict[str, str]:
    """The output-changing settings a cell's ``config.json`` records for its generator, retriever,
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
        if isinstance(config.get(part), Mapping):
            walk(config[part], part)
    for name in RUN_SETTINGS:
        if config.get(name) is not None:
            flat[name] = json.dumps(config[name], sort_keys=True, default=str)
    training = config.get("training")
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
        settings = [_settings(cells[i].config) for i in members]
        versions = [json.dumps(cells[i].config.get("versions"), sort_keys=True) for i in members]
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


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that puts ``lamp-2`` before ``lamp-10`` and ``k=4`` before ``k=16``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", text) if part)


# ---------------------------------------------------------------------------------------------
# Reference numbers (lamp_references)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceValue:
    task: str
    metric: str
    method: str
    value: float


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


@dataclass(frozen=True)
class ReferenceInfo:
    """What a packaged reference table's numbers are: its ``# source:``, ``# model:`` and
    ``# split:`` comment lines."""

    name: str
    source: str
    model: str
    split: str

    @property
    def short(self) -> str:
        """``paper; model; split`` as a column label shows it."""
        return f"{self.source.split(',')[0].split(' (')[0]}; {self.model}; {self.split}"


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


# ---------------------------------------------------------------------------------------------
# The header: what a table is
# ---------------------------------------------------------------------------------------------

SMALL_N = 30
"""Below this many examples a table warns, in the file itself, that its intervals are wide and
its paired tests coarse."""


@dataclass(frozen=True)
class DataInfo:
    """One table's data: its name, its identity (digest of the files' checksums) and the examples
    scored per task (``"10"``, or ``"2–40"`` when the columns differ)."""

    table: str
    name: str | None
    checksum: str | None
    n: tuple[tuple[str, str], ...]
    description: str = ""
    """What the data is, as its data source plugin says (:attr:`DataSource.description
    <lamp_harness.data.DataSource.description>`)."""


@dataclass(frozen=True)
class ModelInfo:
    """A model the cells used, where (``generator``, ``pplug encoder``...) and what it stands in
    for when a preset substituted it (``None`` otherwise)."""

    model: str
    role: str
    stand_in_for: str | None = None
    preset: str | None = None


@dataclass(frozen=True)
class TrainingInfo:
    """A column whose cells ran trained weights, and their training budget as recorded."""

    column: str
    budget: str
    table: str = ""
    """The table the column is in, when the leaderboard has several."""


@dataclass(frozen=True)
class Header:
    """What a leaderboard is, written at the top of every rendering (markdown, html, json)."""

    cells: int
    data: tuple[DataInfo, ...] = ()
    models: tuple[ModelInfo, ...] = ()
    training: tuple[TrainingInfo, ...] = ()
    references: tuple[ReferenceInfo, ...] = ()
    warnings: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The header as plain-text bullet lines (markdown inline code marks the checksums)."""
        out = [
            f"**What this is**: {self.cells} finished cells (run folders); every value is computed by the "
            "harness from the cell's predictions (`metrics.json`), not typed in."
        ]
        for d in self.data:
            counts = sorted({v for _, v in d.n})
            per_task = (
                f"n = {counts[0]} per task" if len(counts) == 1 else "n per task: " + ", ".join(f"{t} {v}" for t, v in d.n)
            )
            tasks = ", ".join(t for t, _ in d.n)
            out.append(
                f"**Data** ({d.table}): {d.name or 'not recorded'}"
                + (f" ({d.description})" if d.description else "")
                + (f"; checksum `{d.checksum}`" if d.checksum else "; no checksum recorded")
                + f"; {per_task} ({tasks})"
            )
        if self.models:
            shown = []
            for m in self.models:
                text = f"{m.model} ({m.role})"
                if m.stand_in_for:
                    text += f", a stand-in for {m.stand_in_for}" + (f" (preset '{m.preset}')" if m.preset else "")
                shown.append(text)
            out.append("**Models**: " + "; ".join(shown))
        for t in self.training:
            out.append(f"**Training** ({t.column}" + (f", in table '{t.table}'" if t.table else "") + f"): {t.budget}")
        for r in self.references:
            out.append(
                f"**Reference columns** ({r.short}): {r.source}; model {r.model}; split {r.split}. "
                "Published numbers, not run here."
            )
        out += [f"**Warning**: {w}" for w in self.warnings]
        return out


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

    from lamp_harness.models import substitution

    for cell in cells:
        preset = cell.config.get("preset")
        for part in ("generator", "retriever", "personalizer"):
            component = cell.config.get(part)
            if isinstance(component, Mapping):
                role = part if part == "generator" else str(component.get("name") or part)
                walk(component, role, str(preset) if preset else None)
    # Substitutions a component does not record itself (a retriever's encoder) are in the notes
    # the preset left; those already shown are not repeated.
    shown = {m.stand_in_for for m in found.values()}
    for cell in cells:
        notes = cell.config.get("preset_notes")
        for note in notes if isinstance(notes, list) else ():
            sub = substitution(str(note))
            if sub and sub["substitutes"] not in shown:
                shown.add(sub["substitutes"])
                found[(sub["model"], sub["role"])] = ModelInfo(sub["model"], sub["role"], sub["substitutes"], sub["preset"])
    return tuple(sorted(found.values(), key=lambda m: (m.role != "generator", natural_key(m.role), natural_key(m.model))))


def training_budget(config: Mapping[str, Any]) -> str | None:
    """How a trained cell's weights were trained, as its ``config.json`` records it (``training``,
    written by the runner from the checkpoint); for cells run before that was recorded, what the
    checkpoint's path tells (its step), saying what is not recorded. ``None`` for an untrained cell."""
    recorded = config.get("training")
    checkpoint = config.get("checkpoint")
    if isinstance(recorded, Mapping) and recorded:
        parts = []
        steps, batch, accum = recorded.get("steps"), recorded.get("batch_size"), recorded.get("grad_accum")
        if steps is not None:
            text = f"{steps} step{'' if steps == 1 else 's'}"
            if batch is not None:
                text += f" × batch {batch}" + (f" × {accum} accumulated" if accum not in (None, 1) else "")
            world = recorded.get("world_size")
            if isinstance(world, int) and world > 1:
                text += f" on each of {world} ranks"
            parts.append(text)
        if recorded.get("examples") is not None:
            parts.append(f"{recorded['examples']} training examples")
        if recorded.get("epochs") is not None:
            parts.append(f"{recorded['epochs']} epoch(s) planned")
        if recorded.get("max_steps") is not None:
            parts.append(f"max_steps {recorded['max_steps']}")
        if recorded.get("lr") is not None:
            parts.append(f"lr {recorded['lr']:g}" if isinstance(recorded["lr"], int | float) else f"lr {recorded['lr']}")
        for key in ("augment", "mixed_precision"):
            if recorded.get(key) not in (None, False, 0, ""):
                parts.append(f"{key.replace('_', ' ')} {recorded[key]}")
        return ", ".join(parts) or "trained (budget not recorded)"
    if not checkpoint:
        return None
    step = re.search(r"step-0*(\d+)", str(checkpoint))
    name = str(checkpoint).rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
    if step:
        return (
            f"{step.group(1)} steps (from its checkpoint's name); batch size, epochs and learning rate "
            "are not recorded in the run folder"
        )
    return f"checkpoint '{name}'; its training budget is not recorded in the run folder"


def _data_description(name: str | None) -> str:
    """What the data source plugin named by ``name`` (``demo`` of ``demo:v1``) says its data is;
    empty when the plugin says nothing or is not installed here."""
    kind = str(name or "").partition(":")[0]
    if not kind:
        return ""
    try:
        from lamp_harness.registry import host

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
    training: dict[tuple[str, str], list[str]] = {}
    titles = {block.key: block.title for block in blocks}
    for cell in cells:
        budget = training_budget(cell.config)
        if budget is not None and cell.block in titles:
            key = (titles[cell.block] if len(blocks) > 1 else "", cell.label)
            training.setdefault(key, [])
            if budget not in training[key]:
                training[key].append(budget)
    return Header(
        cells=len(cells),
        data=tuple(data),
        models=_models(cells),
        training=tuple(TrainingInfo(label, "; ".join(b), table) for (table, label), b in training.items()),
        references=tuple(reference_info(name) for name, _ in references),
        warnings=tuple(warnings),
    )


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A method column: our cells (``kind="run"``) or a paper's numbers (``kind="reference"``)."""

    label: str
    kind: str = "run"
    source: str = ""


@dataclass(frozen=True)
class Value:
    """One number of the table; the paired test against the baseline column when one was run."""

    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    cell_id: str = ""
    best: bool = False
    p_value: float | None = None
    """The paired test's p-value against the baseline (before correction)."""
    p_adjusted: float | None = None
    """``p_value`` after the multiple-comparison correction (``significant`` is decided on it)."""
    significant: bool | None = None
    n_paired: int = 0
    """Examples the test paired (those both cells scored)."""
    delta: float | None = None
    """This value minus the baseline's, both on the paired examples."""


@dataclass(frozen=True)
class Row:
    task: str
    metric: str
    higher_is_better: bool
    values: tuple[Value | None, ...]


@dataclass(frozen=True)
class Block:
    """One table: a split (and data scheme)."""

    split: str
    scheme: str | None
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    data: str | None = None
    baseline: int | None = None
    """Index of the baseline column (``--baseline``), when this block has one."""
    data_id: str | None = None
    """The data's identity: its cells' :attr:`Cell.data_id` when they all share one (one task),
    else a digest of each task's; ``None`` when no cell recorded checksums."""
    same_name: bool = False
    """Another table's data has the same name but other files: the title shows the checksum."""
    variant: int = 0
    """:attr:`Cell.data_variant` of its cells."""

    @property
    def key(self) -> tuple[str, str | None, str | None, int]:
        """What its cells share (:attr:`Cell.block`)."""
        return (self.split, self.scheme, self.data, self.variant)

    @property
    def title(self) -> str:
        """The table's heading: its split, scheme and data (with the data's checksum when another
        table's data has the same name)."""
        data = self.data or ""
        if self.same_name and self.data_id:
            data = f"{data} (checksum {self.data_id})".strip()
        return (
            f"split: {self.split}"
            + (f", scheme: {self.scheme}" if self.scheme else "")
            + (f", data: {data}" if data else "")
        )


@dataclass(frozen=True)
class Significance:
    """How the paired tests of a leaderboard were run."""

    baseline: str
    test: str
    trials: int
    correction: str
    seed: int
    alpha: float

    def legend(self) -> str:
        """The markdown legend of the ``†`` marker: baseline, test, trials, seed, correction."""
        from lamp_harness.significance import TEST_NAMES

        correction = (
            "Holm-corrected across the columns compared in each row"
            if self.correction == "holm"
            else "no correction for multiple comparisons"
        )
        trials = f"{self.trials:,} {'trials' if self.test == 'ar' else 'resamples'}"
        return (
            f"† p < {self.alpha:g} against the baseline column `{self.baseline}` "
            f"({TEST_NAMES[self.test]}, {trials}, seed {self.seed}, {correction}; "
            "each test pairs the examples both cells scored)."
        )


@dataclass(frozen=True)
class Bucket:
    """One group of a breakdown row: its values per column (``Value.n`` = examples in the group)."""

    label: str
    values: tuple[Value | None, ...]
    detail: tuple[str, ...] = ()
    """Per column, extra text (``--by user``: users better / worse than the baseline)."""


@dataclass(frozen=True)
class BreakdownRow:
    task: str
    metric: str
    higher_is_better: bool
    buckets: tuple[Bucket, ...]


@dataclass(frozen=True)
class Breakdown:
    """A block's metrics recomputed per group of examples (``by``: ``profile-size`` or ``user``)."""

    by: str
    block: str
    columns: tuple[str, ...]
    rows: tuple[BreakdownRow, ...]


@dataclass(frozen=True)
class WinRate:
    column: str
    win_rate: float
    rows: int
    """Rows (task x metric) in which the column was compared with at least one other."""


@dataclass(frozen=True)
class Summary:
    """A block's direction-aware mean win rate per column (HELM's headline aggregate)."""

    block: str
    rates: tuple[WinRate, ...]


@dataclass(frozen=True)
class Leaderboard:
    blocks: tuple[Block, ...]
    notes: tuple[str, ...] = field(default=())
    cells: tuple[Cell, ...] = field(default=())
    significance: Significance | None = None
    breakdowns: tuple[Breakdown, ...] = field(default=())
    summaries: tuple[Summary, ...] = field(default=())
    header: Header | None = None
    """What the tables are (data, models, training, references, warnings)."""


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
    from lamp_harness.io import stable_hash

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


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def arrow(higher_is_better: bool) -> str:
    """``↑`` for higher-is-better metrics, ``↓`` otherwise."""
    return "↑" if higher_is_better else "↓"


def format_value(value: Value | None, ci: bool = False, bold: bool = True) -> str:
    """``0.512``, ``**0.512**`` when best, ``0.512†`` when significantly different from the
    baseline, ``0.512 [0.490, 0.530]`` with intervals, ``(n=45)`` when the test paired fewer
    examples than the cell scored."""
    if value is None:
        return "–"
    text = f"{value.value:.{PLACES}f}"
    if bold and value.best:
        text = f"**{text}**"
    if value.significant:
        text += "†"
    if ci and value.ci_low is not None and value.ci_high is not None:
        text += f" [{value.ci_low:.{PLACES}f}, {value.ci_high:.{PLACES}f}]"
    if value.n_paired and value.n and value.n_paired != value.n:
        text += f" (n={value.n_paired})"
    return text


def render(board: Leaderboard, fmt: str = "markdown", ci: bool = False) -> str:
    """The leaderboard as ``markdown``, ``json``, ``csv`` or ``html`` text (deterministic)."""
    if fmt == "markdown":
        return render_markdown(board, ci)
    if fmt == "json":
        return render_json(board)
    if fmt == "csv":
        return render_csv(board)
    if fmt == "html":
        from lamp_harness.webpage import render_html

        return render_html(board, ci=ci)
    raise lamp_error(f"unknown format {fmt!r}", where="--format", fix=f"Use one of {', '.join(FORMATS)}.")


def _cell_text(text: str) -> str:
    return text.replace("|", "\\|")


def column_title(block: Block, index: int) -> str:
    """A column's label, marked when it is the baseline of the paired tests."""
    label = block.columns[index].label
    return f"{label} (baseline)" if block.baseline == index else label


def render_markdown(board: Leaderboard, ci: bool = False) -> str:
    """The leaderboard as markdown: the header (what the tables are), then one table per
    (split, scheme, data) block."""
    parts = []
    if board.header is not None:
        parts.append("# Leaderboard\n\n" + "\n".join(f"- {_cell_text(line)}" for line in board.header.lines()))
    for block in board.blocks:
        header = ["task", "metric"] + [_cell_text(column_title(block, i)) for i in range(len(block.columns))]
        lines = [
            f"## {block.title}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---", "---"] + ["---:"] * len(block.columns)) + "|",
        ]
        for row in block.rows:
            cells = [row.task, f"{row.metric} {arrow(row.higher_is_better)}"]
            cells += [format_value(v, ci) for v in row.values]
            lines.append("| " + " | ".join(_cell_text(c) for c in cells) + " |")
        if board.significance is not None and block.baseline is not None:
            lines += ["", board.significance.legend()]
        parts.append("\n".join(lines))
    parts += [_markdown_breakdown(b) for b in board.breakdowns]
    parts += [_markdown_summary(s) for s in board.summaries]
    return "\n\n".join(parts) + "\n"


def _markdown_breakdown(breakdown: Breakdown) -> str:
    what = (
        "quartiles of the asking user's profile size" if breakdown.by == "profile-size" else "per user, averaged over users"
    )
    lines = [
        f"## by {breakdown.by}: {breakdown.block}",
        "",
        f"Each metric recomputed on the examples of each group ({what}); "
        + (
            "n = users; ↑/↓ = users served better/worse than by the baseline."
            if breakdown.by == "user"
            else "n = examples in the group."
        ),
        "",
        "| task | metric | group | " + " | ".join(_cell_text(c) for c in breakdown.columns) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * len(breakdown.columns)) + "|",
    ]
    for row in breakdown.rows:
        for bucket in row.buckets:
            shown = []
            for k, v in enumerate(bucket.values):
                text = "–" if v is None else f"{v.value:.{PLACES}f} (n={v.n})"
                if v is not None and k < len(bucket.detail) and bucket.detail[k]:
                    text += f" {bucket.detail[k]}"
                shown.append(text)
            cells = [row.task, f"{row.metric} {arrow(row.higher_is_better)}", bucket.label, *shown]
            lines.append("| " + " | ".join(_cell_text(c) for c in cells) + " |")
    return "\n".join(lines)


def _markdown_summary(summary: Summary) -> str:
    lines = [
        f"## mean win rate: {summary.block}",
        "",
        "Per row (task x metric), the share of the other columns each column beats (direction-aware, ties "
        "count one half), averaged over rows.",
        "",
        "| column | mean win rate | rows |",
        "|---|---:|---:|",
    ]
    lines += [f"| {_cell_text(r.column)} | {r.win_rate:.{PLACES}f} | {r.rows} |" for r in summary.rates]
    return "\n".join(lines)


def entry(block: Block, row: Row, index: int, test: str | None) -> dict[str, Any]:
    """One (task, metric, column) entry with its interval and its test against the baseline."""
    column, v = block.columns[index], row.values[index]
    assert v is not None
    return {
        "task": row.task,
        "metric": row.metric,
        "column": column.label,
        "kind": column.kind,
        "value": v.value,
        "ci_low": v.ci_low,
        "ci_high": v.ci_high,
        "n": v.n or None,
        "cell_id": v.cell_id or None,
        "best": v.best,
        "baseline": block.baseline == index,
        "p_value": v.p_value,
        "p_adjusted": v.p_adjusted,
        "significant": v.significant,
        "test": test if v.p_value is not None else None,
        "n_paired": v.n_paired or None,
        "delta": v.delta,
    }


def render_json(board: Leaderboard) -> str:
    """The leaderboard as JSON: blocks, methods, metrics and values with intervals."""
    test = board.significance.test if board.significance else None
    blocks = []
    for block in board.blocks:
        blocks.append(
            {
                "split": block.split,
                "scheme": block.scheme,
                "data": block.data,
                "columns": [
                    {"label": c.label, "kind": c.kind, "source": c.source or None, "baseline": block.baseline == i}
                    for i, c in enumerate(block.columns)
                ],
                "rows": [
                    {
                        "task": row.task,
                        "metric": row.metric,
                        "higher_is_better": row.higher_is_better,
                        "values": [None if v is None else entry(block, row, i, test) for i, v in enumerate(row.values)],
                    }
                    for row in block.rows
                ],
            }
        )
    document: dict[str, Any] = {}
    if board.header is not None:
        document["header"] = asdict(board.header)
    document["blocks"] = blocks
    if board.significance is not None:
        document["significance"] = asdict(board.significance)
    if board.breakdowns:
        document["breakdowns"] = [asdict(b) for b in board.breakdowns]
    if board.summaries:
        document["summaries"] = [asdict(s) for s in board.summaries]
    if board.notes:
        document["notes"] = list(board.notes)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


CSV_FIELDS = (
    "split",
    "scheme",
    "data",
    "task",
    "metric",
    "higher_is_better",
    "column",
    "kind",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "best",
    "cell_id",
    "baseline",
    "p_value",
    "p_adjusted",
    "significant",
    "test",
    "n_paired",
    "delta",
)


def render_csv(board: Leaderboard) -> str:
    """Long format: one line per (split, task, metric, column)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    test = board.significance.test if board.significance else None

    def text(x: Any) -> str:
        if x is None:
            return ""
        if isinstance(x, bool):
            return str(x).lower()
        return repr(x) if isinstance(x, float) else str(x)

    for block in board.blocks:
        for row in block.rows:
            for index, v in enumerate(row.values):
                if v is None:
                    continue
                e = entry(block, row, index, test)
                run = e["kind"] == "run"
                writer.writerow(
                    [
                        block.split,
                        block.scheme or "",
                        block.data or "",
                        row.task,
                        row.metric,
                        text(row.higher_is_better),
                        e["column"],
                        e["kind"],
                        text(e["value"]),
                        text(e["ci_low"]),
                        text(e["ci_high"]),
                        text(e["n"]),
                        text(e["best"]) if run else "",
                        text(e["cell_id"]),
                        text(e["baseline"]) if run else "",
                        text(e["p_value"]),
                        text(e["p_adjusted"]),
                        text(e["significant"]),
                        text(e["test"]),
                        text(e["n_paired"]),
                        text(e["delta"]),
                    ]
                )
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Plot
# ---------------------------------------------------------------------------------------------


def plot_format(path: Path) -> str:
    """``png`` or ``svg`` from the file name; anything else is a one-line error."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise lamp_error(
            f"cannot tell the image format from {Path(path).name!r}",
            where="--plot",
            fix="End the file name with .png or .svg.",
        )
    return fmt


def plot(board: Leaderboard, path: Path) -> Path:
    """A grouped bar chart: one subplot per (block, metric), tasks on the x axis, one bar per
    method (reference columns hatched), 95% intervals as error bars. PNG or SVG by extension."""
    from lamp_harness.io import atomic_write_bytes

    path = Path(path)
    fmt = plot_format(path)
    atomic_write_bytes(path, plot_bytes(board, fmt))
    return path


def _plain(text: str) -> str:
    """``text`` as matplotlib shows it literally: a ``$`` would start mathtext (and an unbalanced
    or invalid ``$…$`` in a label, say ``--generator-arg stop=$``, is a parse error), so it is
    escaped."""
    return str(text).replace("$", r"\$")


def plot_bytes(board: Leaderboard, fmt: str = "svg") -> bytes:
    """The chart of :func:`plot` as ``png`` or ``svg`` bytes."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    panels = []
    for block in board.blocks:
        for metric in dict.fromkeys(r.metric for r in block.rows):
            panels.append((block, metric, [r for r in block.rows if r.metric == metric]))
    # Our methods first, then the papers' columns in their tables' order; one color per column.
    columns = sorted(dict.fromkeys(c for block in board.blocks for c in block.columns), key=lambda c: c.kind != "run")
    ncols = min(3, len(panels)) or 1
    nrows = max(1, -(-len(panels) // ncols))
    with matplotlib.rc_context({"svg.hashsalt": "lamp-harness", "svg.fonttype": "none"}):
        fig = Figure(figsize=(5.0 * ncols, 3.6 * nrows + 0.4 * (len(columns) // 2 + 1)), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False)
        colors = matplotlib.colormaps["tab20"]
        handles: dict[str, Any] = {}
        for ax, (block, metric, rows) in zip(axes.flat, panels, strict=False):
            present = [
                c for c in columns if c in block.columns and any(r.values[block.columns.index(c)] is not None for r in rows)
            ]
            width = 0.8 / max(1, len(present))
            for j, column in enumerate(present):
                index = block.columns.index(column)
                errs: list[list[float]]
                xs, ys, errs = [], [], [[], []]
                for i, row in enumerate(rows):
                    v = row.values[index]
                    if v is None:
                        continue
                    xs.append(i - 0.4 + width * (j + 0.5))
                    ys.append(v.value)
                    errs[0].append(v.value - v.ci_low if v.ci_low is not None else 0.0)
                    errs[1].append(v.ci_high - v.value if v.ci_high is not None else 0.0)
                bars = ax.bar(
                    xs,
                    ys,
                    width,
                    color=colors(columns.index(column) % 20),
                    hatch="//" if column.kind == "reference" else None,
                    yerr=errs if any(errs[0] + errs[1]) else None,
                    capsize=2,
                    edgecolor="black",
                    linewidth=0.4,
                    label=_plain(column.label),
                )
                handles.setdefault(_plain(column.label), bars)
            ax.set_xticks(range(len(rows)), [_plain(r.task) for r in rows])
            ax.set_title(_plain(f"{metric} {arrow(rows[0].higher_is_better)} ({block.title})"), fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="outside lower center",
            ncols=min(3, max(1, len(handles))),
            fontsize=8,
            frameon=False,
        )
        buffer = io.BytesIO()
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(buffer, format=fmt, metadata=metadata, dpi=120)
    return buffer.getvalue()
