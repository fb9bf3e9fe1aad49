"""Paper-style leaderboards from finished run folders.

A *cell* is a folder holding ``config.json`` and ``metrics.json`` (written by the run store; see
:mod:`lamp_harness.run.store`). Everything shown comes from those files: task names from
``config.json``'s ``task``, metric names and directions from ``metrics.json``. Nothing here knows a
concrete task, metric or method.

Layout, as in the LaMP and PPlug papers: one block per split (and per data scheme when the
config records one); rows are task x metric with an arrow for the direction; columns are methods
labelled ``personalizer / retriever / k=K / model`` (plus ``beams=N``... when not the default);
the best of our values in each row is in bold. Reference columns (the papers' numbers,
:mod:`lamp_references`) can be added beside ours.

The package, floor by floor (each module imports only those above it in this list):

- :mod:`~lamp_harness.report.leaderboard.model`: the plain types (cells, tables, values, the header);
- :mod:`~lamp_harness.report.leaderboard.plot`: the bar chart, from the model;
- :mod:`~lamp_harness.report.leaderboard.page`: the self-contained HTML page, from the model and the chart;
- :mod:`~lamp_harness.report.leaderboard.render`: markdown, JSON and CSV (and the dispatch to the page);
- :mod:`~lamp_harness.report.leaderboard.comparisons`: paired tests, breakdowns and win rates, from the
  model and the cells' per-example scores;
- :mod:`~lamp_harness.report.leaderboard.reader`: the cells read through the run store, arranged into the
  model's tables.

This module re-exports what the CLI and users call, so ``from lamp_harness.report.leaderboard import
leaderboard, render`` works whatever module holds them.
"""

from __future__ import annotations

from lamp_harness.report.leaderboard.model import (
    PLACES,
    Block,
    Breakdown,
    Cell,
    Collection,
    Column,
    Header,
    Leaderboard,
    ReferenceInfo,
    ReferenceValue,
    Row,
    Significance,
    Summary,
    Value,
    arrow,
    column_title,
    natural_key,
    training_budget,
)
from lamp_harness.report.leaderboard.plot import plot, plot_bytes, plot_format
from lamp_harness.report.leaderboard.reader import (
    build,
    collect_cells,
    describe,
    leaderboard,
    load_reference,
    method_label,
    read_cell,
    reference_info,
    reference_names,
)
from lamp_harness.report.leaderboard.render import (
    FORMATS,
    format_value,
    render,
    render_csv,
    render_json,
    render_markdown,
)

__all__ = [
    "FORMATS",
    "PLACES",
    "Block",
    "Breakdown",
    "Cell",
    "Collection",
    "Column",
    "Header",
    "Leaderboard",
    "ReferenceInfo",
    "ReferenceValue",
    "Row",
    "Significance",
    "Summary",
    "Value",
    "arrow",
    "build",
    "collect_cells",
    "column_title",
    "describe",
    "format_value",
    "leaderboard",
    "load_reference",
    "method_label",
    "natural_key",
    "plot",
    "plot_bytes",
    "plot_format",
    "read_cell",
    "reference_info",
    "reference_names",
    "render",
    "render_csv",
    "render_json",
    "render_markdown",
    "training_budget",
]
