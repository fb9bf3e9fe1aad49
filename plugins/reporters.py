"""Built-in reporters: the console reporter and the JSONL event log.

Both are ordinary lifecycle-hook plugins, loaded through the ``lamp_harness`` entry-point group
like a third-party reporter would be (see docs/reporters.md). This module is the plugin: its
module-level hooks feed one :class:`ConsoleReporter` and one :class:`EventLog`. Each class also
carries its own ``@hookimpl`` methods, so an instance can be registered on its own (tests do).
Block both with ``LAMP_DISABLE_PLUGINS=reporters``.

``timing`` is a :class:`lamp_harness.run.records.Timing` and ``results`` a list of
:class:`lamp_harness.run.records.CellResult` (the typed records the runner hands every reporter).
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from lamp_harness import hookimpl, redact

EVENTS_FILE = "events.jsonl"


def _metric(m: Any) -> dict[str, Any]:
    """A metric as a dict, whether the runner handed a MetricResult or an already-decoded dict."""
    return asdict(m) if is_dataclass(m) else dict(m)


def _jsonable(obj: Any) -> Any:
    """``json.dumps`` fallback: dataclasses as dicts, sets as lists, anything else as text."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    return str(obj)


# ---------------------------------------------------------------------------------------------
# Console
# ---------------------------------------------------------------------------------------------


class ConsoleReporter:
    """A line per cell started, resumed or skipped; a metrics table per finished cell; a summary
    table when the run ends. Prints on the run's rich console (``RunInfo.console``), so its lines
    interleave cleanly with the runner's progress bars; silent when the run has no console."""

    def __init__(self) -> None:
        self._timing: dict[str, dict[str, Any]] = {}

    @hookimpl
    def lamp_run_started(self, run: Any) -> None:
        self._timing = {}
        if run.console is None:
            return
        run.console.print(f"[bold]lamp run[/]: {len(run.cells)} cell(s) -> {run.out_dir}")

    @hookimpl
    def lamp_cell_started(self, run: Any, cell: Any, total: int, done: int) -> None:
        if run.console is None:
            return
        if done:
            run.console.print(f"[yellow]resumed[/] {cell.label} ({cell.task}, {cell.split}) at {done}/{total} examples")
        else:
            run.console.print(f"[cyan]started[/] {cell.label} ({cell.task}, {cell.split}, {total} examples)")

    @hookimpl
    def lamp_cell_finished(self, run: Any, cell: Any, metrics: list[Any], timing: Any) -> None:
        self._timing[cell.cell_id] = dict(timing)
        if run.console is None:
            return
        values = [_metric(m) for m in metrics]
        if timing.get("skipped"):
            shown = ", ".join(f"{m['name']} {m['value']:.3f}" for m in values) or "no metrics"
            run.console.print(f"[dim]skipped[/] {cell.label} ({cell.task}, {cell.split}): finished earlier ({shown})")
            return
        if not values:
            run.console.print(
                f"[green]finished[/] {cell.label} ({cell.task}, {cell.split}): no metrics "
                "(this split has no golds; export it with `lamp export --submission`)"
            )
            return
        from rich.table import Table

        table = Table(title=f"{cell.label} ({cell.task}, {cell.split})", title_justify="left")
        for name in ("metric", "value", "95% CI", "n"):
            table.add_column(name, justify="left" if name == "metric" else "right")
        for m in values:
            arrow = "↑" if m.get("higher_is_better", True) else "↓"
            ci = (
                f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
                if m.get("ci_low") is not None and m.get("ci_high") is not None
                else ""
            )
            table.add_row(f"{m['name']} {arrow}", f"{m['value']:.3f}", ci, str(m.get("n", "")))
        run.console.print(table)
        if _timing_text(timing):
            run.console.print(f"[dim]{_timing_text(timing)}[/]")

    @hookimpl
    def lamp_run_finished(self, run: Any, results: list[Any]) -> None:
        if run.console is None or not results:
            return
        from rich.table import Table

        splits = {c.cell_id: c.split for c in run.cells}
        table = Table(title=f"Summary ({run.out_dir})", title_justify="left")
        for name in ("task", "split", "method", "metrics", "status", "time"):
            table.add_column(name, overflow="fold")
        for result in results:
            cell_id = result.cell_id
            timing = self._timing.get(cell_id, dict(result.timing or {}))
            metrics = ", ".join(f"{m['name']} {m['value']:.3f}" for m in map(_metric, result.metrics))
            status = "skipped" if result.skipped or timing.get("skipped") else "done"
            wall = timing.get("wall_s")
            table.add_row(
                result.task,
                splits.get(cell_id, ""),
                result.label,
                metrics or "-",
                status,
                f"{wall:.1f}s" if isinstance(wall, (int, float)) else "",
            )
        run.console.print(table)


def _timing_text(timing: dict[str, Any]) -> str:
    parts = []
    if timing.get("examples") is not None:
        parts.append(f"{timing['examples']} examples")
    if isinstance(timing.get("wall_s"), (int, float)):
        parts.append(f"{timing['wall_s']:.1f}s")
    if isinstance(timing.get("examples_per_s"), (int, float)):
        parts.append(f"{timing['examples_per_s']:.2f} examples/s")
    if isinstance(timing.get("mean_prompt_tokens"), (int, float)):
        parts.append(f"{timing['mean_prompt_tokens']:.0f} prompt tokens/example")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# JSONL event log
# ---------------------------------------------------------------------------------------------


class EventLog:
    """Appends one JSON object per lifecycle event to ``events.jsonl`` in the run's folder.

    Every line has ``time`` (UTC, ISO 8601) and ``event`` (the hook name without ``lamp_``) plus
    the event's fields. Lines are flushed as they are written, so the log survives a crash; a
    resumed run appends to the same file. Per-example events carry ids and token counts only (the
    outputs are in ``predictions.jsonl``), to stay cheap.
    """

    def __init__(self) -> None:
        self._handles: dict[Path, IO[str]] = {}
        self._by_cell: dict[str, IO[str]] = {}

    def _open(self, out_dir: Path) -> IO[str]:
        path = Path(out_dir) / EVENTS_FILE
        handle = self._handles.get(path)
        if handle is None or handle.closed:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = self._handles[path] = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed at run end)
        return handle

    @staticmethod
    def _write(handle: IO[str], event: str, **fields: Any) -> None:
        record = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": event}
        record.update(fields)
        handle.write(json.dumps(redact(record), ensure_ascii=False, default=_jsonable) + "\n")
        handle.flush()

    @staticmethod
    def _cell(cell: Any) -> dict[str, Any]:
        return {"cell_id": cell.cell_id, "label": cell.label, "task": cell.task, "split": cell.split}

    @hookimpl
    def lamp_run_started(self, run: Any) -> None:
        self._write(
            self._open(run.out_dir),
            "run_started",
            out_dir=str(run.out_dir),
            cells=[self._cell(c) for c in run.cells],
        )

    @hookimpl
    def lamp_cell_started(self, run: Any, cell: Any, total: int, done: int) -> None:
        handle = self._by_cell[cell.cell_id] = self._open(run.out_dir)
        self._write(handle, "cell_started", **self._cell(cell), total=total, done=done)

    @hookimpl
    def lamp_example_predicted(self, cell: Any, example: Any, prediction: Any) -> None:
        handle = self._by_cell.get(cell.cell_id)
        if handle is None or handle.closed:  # no cell_started seen: the cell folder is in the run's
            handle = self._by_cell[cell.cell_id] = self._open(Path(cell.dir).parent)
        self._write(
            handle,
            "example_predicted",
            cell_id=cell.cell_id,
            example_id=example.id,
            prompt_tokens=prediction.prompt_tokens,
            generated_tokens=prediction.generated_tokens,
        )

    @hookimpl
    def lamp_cell_finished(self, run: Any, cell: Any, metrics: list[Any], timing: Any) -> None:
        self._write(
            self._open(run.out_dir),
            "cell_finished",
            **self._cell(cell),
            metrics=[_metric(m) for m in metrics],
            timing=dict(timing),
        )

    @hookimpl
    def lamp_run_finished(self, run: Any, results: list[Any]) -> None:
        handle = self._open(run.out_dir)
        summary = [
            {
                "cell_id": r.cell_id,
                "label": r.label,
                "task": r.task,
                "skipped": bool(r.skipped),
                "metrics": [_metric(m) for m in r.metrics],
            }
            for r in results
        ]
        self._write(handle, "run_finished", cells=summary)
        handle.close()
        path = Path(run.out_dir) / EVENTS_FILE
        self._handles.pop(path, None)
        self._by_cell = {k: h for k, h in self._by_cell.items() if h is not handle}


# ---------------------------------------------------------------------------------------------
# The plugin: module-level hooks feeding one instance of each
# ---------------------------------------------------------------------------------------------

console_reporter = ConsoleReporter()
event_log = EventLog()
_REPORTERS = (event_log, console_reporter)


@hookimpl
def lamp_run_started(run: Any) -> None:
    """Open the event log and announce the run."""
    for reporter in _REPORTERS:
        reporter.lamp_run_started(run)


@hookimpl
def lamp_cell_started(run: Any, cell: Any, total: int, done: int) -> None:
    """Log and print that a cell started or resumed."""
    for reporter in _REPORTERS:
        reporter.lamp_cell_started(run, cell, total, done)


@hookimpl
def lamp_example_predicted(cell: Any, example: Any, prediction: Any) -> None:
    """Log the prediction (the console stays quiet: the runner draws the progress bar)."""
    event_log.lamp_example_predicted(cell, example, prediction)


@hookimpl
def lamp_cell_finished(run: Any, cell: Any, metrics: list[Any], timing: Any) -> None:
    """Log the cell's metrics and print its table (or a 'skipped' line)."""
    for reporter in _REPORTERS:
        reporter.lamp_cell_finished(run, cell, metrics, timing)


@hookimpl
def lamp_run_finished(run: Any, results: list[Any]) -> None:
    """Log the end of the run, close the log, print the summary table."""
    for reporter in _REPORTERS:
        reporter.lamp_run_finished(run, results)


@hookimpl
def lamp_register(registry: Any) -> None:
    """The opt-in experiment-tracker reporters (imported only when enabled)."""
    registry.add_reporter(
        "mlflow",
        "lamp_plugins.mlflow_reporter:MlflowReporter",
        "One MLflow run per cell: config as params, metrics with intervals, files as artifacts "
        "(extra: lamp-harness[mlflow]).",
    )
    registry.add_reporter(
        "wandb",
        "lamp_plugins.wandb_reporter:WandbReporter",
        "One W&B run per cell: config, metrics with intervals, files as an artifact "
        "(extra: lamp-harness[wandb]; WANDB_MODE=offline works without an account).",
    )
