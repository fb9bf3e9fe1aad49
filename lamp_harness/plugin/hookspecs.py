"""The hooks a lamp-harness plugin can implement, grouped by phase.

A plugin is a module (or object) with ``@hookimpl`` functions, advertised by an entry point in the
``lamp_harness`` group::

    [project.entry-points.lamp_harness]
    my-plugin = "my_package.plugin"

Implement only the hooks you need; argument names must match the specs below (pluggy lets an
implementation accept a subset of them). Implementations that match no spec are rejected when the
plugin loads, so a typo cannot silently do nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from lamp_harness.plugin.catalog import Registry
    from lamp_harness.plugin.contracts import Example, MetricResult, Prediction
    from lamp_harness.run.cells import CellSpec, RunInfo
    from lamp_harness.run.records import CellResult, Timing

PROJECT = "lamp_harness"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- registration --------------------------------------------------------------------------------


@hookspec
def lamp_register(registry: Registry) -> None:
    """Add this plugin's components (tasks, retrievers, personalizers, generators, data sources,
    model aliases, presets) to ``registry``.

    Called once per process, at start-up, before any command runs. Register factories lazily
    (``"package.module:Class"`` strings or small callables) so that heavy libraries are imported
    only when a component is actually used: ``lamp --help`` and ``lamp plugins`` must stay fast.
    An exception here marks the plugin as broken; every other plugin keeps working.
    """


# -- run lifecycle ----------------------------------------------------------------------------------
# Reporters (console, JSONL event log, W&B, MLflow...) implement these. They are notifications:
# return values are ignored, and a reporter that raises is disabled for the rest of the run with a
# warning instead of stopping it.


@hookspec
def lamp_run_started(run: RunInfo) -> None:
    """Called once after the matrix is expanded and validated, before any cell starts."""


@hookspec
def lamp_cell_started(run: RunInfo, cell: CellSpec, total: int, done: int) -> None:
    """Called when a cell (one task x retriever x personalizer x k x generator) starts or resumes.
    ``total`` is its number of examples, ``done`` how many were already predicted earlier."""


@hookspec
def lamp_example_predicted(cell: CellSpec, example: Example, prediction: Prediction) -> None:
    """Called after each prediction has been written to the cell's ``predictions.jsonl``."""


@hookspec
def lamp_cell_finished(run: RunInfo, cell: CellSpec, metrics: list[MetricResult], timing: Timing) -> None:
    """Called after a cell's ``metrics.json`` and ``timing.json`` are written (also for cells
    skipped because an earlier run finished them; ``timing.skipped`` is then true).

    ``timing`` is a :class:`~lamp_harness.run.records.Timing` (``wall_s``, ``examples_per_s``...), also
    readable as the ``timing.json`` object (``timing["wall_s"]``, ``timing.get("skipped")``)."""


@hookspec
def lamp_run_finished(run: RunInfo, results: list[CellResult]) -> None:
    """Called once after every cell has finished; ``results`` holds one
    :class:`~lamp_harness.run.records.CellResult` per cell (``cell_id``, ``label``, ``task``,
    ``metrics``, ``skipped``, ``dir``, ``timing``), also readable as the summary dict of earlier
    versions (``result["cell_id"]``)."""
