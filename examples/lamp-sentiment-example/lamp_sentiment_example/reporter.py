"""A CSV reporter: one row per finished cell in ``OUT/cells.csv`` (cell, method, task, metrics).

A class keeps the state (which rows were written); the module-level hooks, the plugin the
``sentiment-csv`` entry point names, feed one instance."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from lamp_harness import hookimpl

FILE = "cells.csv"
COLUMNS = ("cell_id", "label", "task", "split", "metric", "value", "ci_low", "ci_high", "n", "status")


class CsvReporter:
    """Appends rows to ``cells.csv`` in the run folder; a header is written once per file."""

    def __init__(self) -> None:
        self.rows = 0

    @hookimpl
    def lamp_run_started(self, run: Any) -> None:
        self.rows = 0

    @hookimpl
    def lamp_cell_finished(self, run: Any, cell: Any, metrics: list[Any], timing: Any) -> None:
        path = Path(run.out_dir) / FILE
        new = not path.is_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        status = "skipped" if timing.skipped else "done"
        with open(path, "a", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(COLUMNS)
            for m in metrics or [None]:
                values = (m.name, m.value, m.ci_low, m.ci_high, m.n) if m is not None else ("", "", "", "", "")
                writer.writerow((cell.cell_id, cell.label, cell.task, cell.split, *values, status))
                self.rows += 1

    @hookimpl
    def lamp_run_finished(self, run: Any, results: list[Any]) -> None:
        if run.console is not None:
            run.console.print(f"cells.csv: {self.rows} row(s) -> {Path(run.out_dir) / FILE}")


_reporter = CsvReporter()


@hookimpl
def lamp_run_started(run: Any) -> None:
    """Start counting rows for this run."""
    _reporter.lamp_run_started(run)


@hookimpl
def lamp_cell_finished(run: Any, cell: Any, metrics: list[Any], timing: Any) -> None:
    """Write the cell's metric rows."""
    _reporter.lamp_cell_finished(run, cell, metrics, timing)


@hookimpl
def lamp_run_finished(run: Any, results: list[Any]) -> None:
    """Say where the rows went."""
    _reporter.lamp_run_finished(run, results)
