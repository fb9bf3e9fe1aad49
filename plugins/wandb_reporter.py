"""The ``wandb`` reporter: one Weights & Biases run per cell, in a project named after the run folder.

Enable it with ``lamp run --reporter wandb`` (or ``reporter = ["wandb"]`` in a matrix file, or
``LAMP_REPORTERS=wandb``). Each W&B run (grouped by the run folder) gets the cell's ``config.json``
as its config, its metrics with 95% intervals and timing in the summary, and the cell's files as
an artifact. W&B's own settings apply: ``WANDB_MODE=offline`` writes everything locally (sync it
later with ``wandb sync``), ``WANDB_PROJECT`` / ``WANDB_ENTITY`` pick where it goes; files go
under ``WANDB_DIR``, else the run folder.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lamp_plugins.trackers import artifacts, cell_config, metric_values, require

from lamp_harness.hookspecs import hookimpl
from lamp_harness.secrets import redact_text


@contextmanager
def _argv_redacted() -> Iterator[None]:
    """``sys.argv`` with secrets masked (a model named like the key...) while W&B reads it."""
    saved = sys.argv
    sys.argv = [redact_text(arg) for arg in saved]
    try:
        yield
    finally:
        sys.argv = saved


class WandbReporter:
    """Logs each cell the run computes as one W&B run (cells an earlier run finished are skipped:
    they were logged then)."""

    def __init__(self) -> None:
        require("wandb", "wandb", "wandb")
        self.logged = 0

    @hookimpl
    def lamp_cell_finished(self, run: Any, cell: Any, metrics: list[Any], timing: dict[str, Any]) -> None:
        if timing.get("skipped"):
            return
        import wandb

        with _argv_redacted():  # W&B records the command line in each run's metadata
            self._log(wandb, run, cell, metrics, timing)
        self.logged += 1

    def _log(self, wandb: Any, run: Any, cell: Any, metrics: list[Any], timing: dict[str, Any]) -> None:
        out = Path(run.out_dir).resolve()
        directory = os.environ.get("WANDB_DIR") or str(out)
        tracked = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or out.name,
            group=out.name,
            name=cell.label,
            job_type=cell.task,
            config=cell_config(cell),
            dir=directory,
            tags=[cell.task, cell.split],
            reinit="finish_previous",
        )
        try:
            values = metric_values(metrics, timing)
            tracked.log(values)
            tracked.summary.update(values)
            artifact = wandb.Artifact(re.sub(r"[^A-Za-z0-9._-]", "-", cell.cell_id), type="lamp-cell")
            for path in artifacts(cell):
                artifact.add_file(str(path))
            tracked.log_artifact(artifact)
        finally:
            tracked.finish()

    @hookimpl
    def lamp_run_finished(self, run: Any, results: list[dict[str, Any]]) -> None:
        if run.console is not None and self.logged:
            run.console.print(f"wandb: logged {self.logged} cell(s) (project {Path(run.out_dir).resolve().name!r})")
