"""Writes suite-log.csv with one row per finished cell."""

import csv
from pathlib import Path

from lamp_harness import hookimpl


@hookimpl
def lamp_cell_finished(run, cell, metrics, timing):
    path = Path(run.out_dir) / "suite-log.csv"
    with open(path, "a", newline="", encoding="utf-8") as handle:
        for m in metrics:
            csv.writer(handle).writerow([cell.cell_id, cell.task, cell.label, m.name, m.value, bool(timing.get("skipped"))])
