"""The leaderboard's model: plain frozen types (cells found on disk, tables, values, the header,
the paired tests' settings) and the small rules that read them (the natural sort order, a
direction's arrow, a column's title, a cell's training budget).

Everything else in :mod:`lamp_harness.report.leaderboard` builds on this module: the reader fills it from
the run store, the renderers, the page, the plot and the comparisons read it. It imports nothing
of the leaderboard, so none of them imports another through it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamp_harness.plugin.contracts import MetricResult as Metric
from lamp_harness.run.records import CellRecord

PLACES = 3  # the papers print three decimals

# ---------------------------------------------------------------------------------------------
# Cells: what one finished run folder says
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A finished cell found on disk: what its files say (``record``: its ``config.json``) and
    what the leaderboard derives from them (its label, data name and identity)."""

    cell_id: str
    dir: Path
    task: str
    split: str
    scheme: str | None
    label: str
    metrics: tuple[Metric, ...]
    record: CellRecord
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


@dataclass(frozen=True)
class Collection:
    """The cells kept, and notes about the ones dropped as duplicates."""

    cells: tuple[Cell, ...]
    notes: tuple[str, ...] = ()


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


# ---------------------------------------------------------------------------------------------
# The header: what a table is
# ---------------------------------------------------------------------------------------------


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
    <lamp_harness.inputs.data.DataSource.description>`)."""


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


def training_budget(config: Mapping[str, Any]) -> str | None:
    """How a trained cell's weights were trained, as its record (a
    :class:`~lamp_harness.run.records.CellRecord`, or its ``config.json`` object) says (``training``,
    written by the runner from the checkpoint or the method's :class:`~lamp_harness.plugin.contracts.TrainingBudget`);
    for cells run before that was recorded, what the
    checkpoint's path tells (its step), saying what is not recorded. ``None`` for an untrained cell."""
    recorded = config.get("training")
    checkpoint = config.get("checkpoint")
    if isinstance(recorded, Mapping) and recorded:
        parts = []
        users = recorded.get("per_user")
        if users is not None:
            parts.append(f"one adapter per user ({users} user{'' if users == 1 else 's'})")
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
        if recorded.get("before"):
            parts.append(f"after {recorded['before']}")
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
        from lamp_harness.report.significance import TEST_NAMES

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


def arrow(higher_is_better: bool) -> str:
    """``↑`` for higher-is-better metrics, ``↓`` otherwise."""
    return "↑" if higher_is_better else "↓"


def column_title(block: Block, index: int) -> str:
    """A column's label, marked when it is the baseline of the paired tests."""
    label = block.columns[index].label
    return f"{label} (baseline)" if block.baseline == index else label
