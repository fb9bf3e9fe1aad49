"""Reporters: lifecycle hooks reach in-process plugins; the built-in console reporter and JSONL log."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lamp_cli import demo_run
from lamp_plugins.reporters import ConsoleReporter, EventLog
from rich.console import Console

from lamp_harness.cli import main
from lamp_harness.plugin.contracts import Example, MetricResult, Prediction
from lamp_harness.plugin.hookspecs import hookimpl
from lamp_harness.plugin.registry import PluginHost
from lamp_harness.run.records import CellResult, Timing


# Stand-ins with exactly the attributes reporters may use (RunInfo / CellSpec of the runner).
@dataclass
class Run:
    out_dir: Path
    cells: list[Any] = field(default_factory=list)
    console: Any = None


@dataclass(frozen=True)
class Cell:
    cell_id: str
    label: str
    task: str
    split: str
    dir: Path


class Recorder:
    """A third-party-style reporter: records every lifecycle event it receives."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    @hookimpl
    def lamp_run_started(self, run):
        self.events.append(("run_started", len(run.cells)))

    @hookimpl
    def lamp_cell_started(self, cell, total, done):  # a subset of the spec's arguments
        self.events.append(("cell_started", (cell.cell_id, total, done)))

    @hookimpl
    def lamp_example_predicted(self, cell, example, prediction):
        self.events.append(("example_predicted", (cell.cell_id, example.id, prediction.output)))

    @hookimpl
    def lamp_cell_finished(self, cell, metrics, timing):
        self.events.append(("cell_finished", (cell.cell_id, [m.name for m in metrics], timing.get("skipped", False))))

    @hookimpl
    def lamp_run_finished(self, results):
        self.events.append(("run_finished", [r["cell_id"] for r in results]))


def simulate(host: PluginHost, run: Run, cell: Cell, *, skipped_cell: Cell | None = None) -> None:
    """Fire the lifecycle in the runner's order: one computed cell (2 examples), one skipped."""
    metrics = [MetricResult("rouge-1", 0.25, True, 0.2, 0.3, 2), MetricResult("MAE", 0.5, False, n=2)]
    host.notify("lamp_run_started", run=run)
    host.notify("lamp_cell_started", run=run, cell=cell, total=2, done=0)
    for i in range(2):
        example = Example(f"q{i}", "input", ())
        prediction = Prediction(f"q{i}", f"out {i}", f"raw {i}", "prompt", ("p1",), 7, 2)
        host.notify("lamp_example_predicted", cell=cell, example=example, prediction=prediction)
    host.notify(
        "lamp_cell_finished",
        run=run,
        cell=cell,
        metrics=metrics,
        timing=Timing(wall_s=1.5, examples_per_s=1.33, examples=2, mean_prompt_tokens=7),
    )
    results = [CellResult(cell.cell_id, cell.label, cell.task, tuple(metrics), False, cell.dir)]
    if skipped_cell is not None:
        host.notify(
            "lamp_cell_finished",
            run=run,
            cell=skipped_cell,
            metrics=metrics[:1],
            timing=Timing(wall_s=3.0, skipped=True),
        )
        results.append(
            CellResult(
                skipped_cell.cell_id, skipped_cell.label, skipped_cell.task, tuple(metrics[:1]), True, skipped_cell.dir
            )
        )
    host.notify("lamp_run_finished", run=run, results=results)


@pytest.fixture
def run_and_cells(tmp_path, monkeypatch):
    """A run with two cells; the built-in reporters are blocked so only the tested one writes."""
    monkeypatch.setenv("LAMP_DISABLE_PLUGINS", "reporters")
    out = tmp_path / "runs"
    cell = Cell("c1", "ipa / bm25 / k=1 / tiny", "lamp-7", "dev", out / "c1")
    skipped = Cell("c0", "none / tiny", "lamp-7", "dev", out / "c0")
    return Run(out, [cell, skipped]), cell, skipped


def test_an_in_process_reporter_receives_every_lifecycle_event(run_and_cells):
    run, cell, skipped = run_and_cells
    recorder = Recorder()
    host = PluginHost(extra_plugins=[("test-reporter", recorder)])
    assert "test-reporter" in [p.name for p in host.loaded]
    simulate(host, run, cell, skipped_cell=skipped)
    assert recorder.events == [
        ("run_started", 2),
        ("cell_started", ("c1", 2, 0)),
        ("example_predicted", ("c1", "q0", "out 0")),
        ("example_predicted", ("c1", "q1", "out 1")),
        ("cell_finished", ("c1", ["rouge-1", "MAE"], False)),
        ("cell_finished", ("c0", ["rouge-1"], True)),
        ("run_finished", ["c1", "c0"]),
    ]


def test_a_failing_reporter_is_disabled_and_the_others_keep_going(run_and_cells, capsys):
    run, cell, _ = run_and_cells

    class Broken:
        @hookimpl
        def lamp_cell_started(self, cell):
            raise RuntimeError("wandb is down")

    recorder = Recorder()
    host = PluginHost(extra_plugins=[("broken", Broken()), ("test-reporter", recorder)])
    simulate(host, run, cell)
    assert "plugin 'broken' failed in lamp_cell_started" in capsys.readouterr().err
    assert [e for e, _ in recorder.events][-1] == "run_finished"


def test_event_log_writes_one_valid_json_line_per_event(run_and_cells):
    run, cell, skipped = run_and_cells
    host = PluginHost(extra_plugins=[("events", EventLog())])
    simulate(host, run, cell, skipped_cell=skipped)
    lines = (run.out_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == [
        "run_started",
        "cell_started",
        "example_predicted",
        "example_predicted",
        "cell_finished",
        "cell_finished",
        "run_finished",
    ]
    assert all(r["time"].endswith("+00:00") for r in records)
    assert records[0]["cells"][0] == {
        "cell_id": "c1",
        "label": "ipa / bm25 / k=1 / tiny",
        "task": "lamp-7",
        "split": "dev",
    }
    assert records[2] == {
        "time": records[2]["time"],
        "event": "example_predicted",
        "cell_id": "c1",
        "example_id": "q0",
        "prompt_tokens": 7,
        "generated_tokens": 2,
    }
    assert records[4]["metrics"][1] == {
        "name": "MAE",
        "value": 0.5,
        "higher_is_better": False,
        "ci_low": None,
        "ci_high": None,
        "n": 2,
    }
    assert records[5]["timing"]["skipped"] is True
    assert records[6]["cells"][1] == {
        "cell_id": "c0",
        "label": "none / tiny",
        "task": "lamp-7",
        "skipped": True,
        "metrics": [records[4]["metrics"][0]],
    }


def test_event_log_appends_across_runs_and_flushes_each_line(run_and_cells):
    run, cell, _ = run_and_cells
    log = EventLog()
    host = PluginHost(extra_plugins=[("events", log)])
    host.notify("lamp_run_started", run=run)
    host.notify("lamp_cell_started", run=run, cell=cell, total=2, done=0)
    # readable before the run ends: a crash loses nothing already logged
    assert len((run.out_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()) == 2
    simulate(host, run, cell)
    events = [json.loads(x)["event"] for x in (run.out_dir / "events.jsonl").read_text().splitlines()]
    assert events[:2] == ["run_started", "cell_started"] and events.count("run_started") == 2


def test_console_reporter_prints_lines_tables_and_a_summary(run_and_cells):
    run, cell, skipped = run_and_cells
    buffer = io.StringIO()
    run.console = Console(file=buffer, width=120, color_system=None)
    host = PluginHost(extra_plugins=[("console", ConsoleReporter())])
    host.notify("lamp_run_started", run=run)
    host.notify("lamp_cell_started", run=run, cell=cell, total=10, done=4)
    simulate(host, run, cell, skipped_cell=skipped)
    text = buffer.getvalue()
    assert "lamp run: 2 cell(s)" in text
    assert "resumed ipa / bm25 / k=1 / tiny (lamp-7, dev) at 4/10 examples" in text
    assert "started ipa / bm25 / k=1 / tiny (lamp-7, dev, 2 examples)" in text
    assert "skipped none / tiny (lamp-7, dev): finished earlier (rouge-1 0.250)" in text
    assert "MAE ↓" in text and "[0.200, 0.300]" in text and "1.33 examples/s" in text
    assert "Summary" in text and "rouge-1 0.250, MAE 0.500" in text


def test_console_reporter_is_silent_without_a_console(run_and_cells, capsys):
    run, cell, skipped = run_and_cells
    simulate(PluginHost(extra_plugins=[("console", ConsoleReporter())]), run, cell, skipped_cell=skipped)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_built_in_reporters_are_loaded_through_the_entry_point():
    host = PluginHost()
    loaded = {p.name: p for p in host.loaded}
    assert "reporters" in loaded and loaded["reporters"].module.__name__ == "lamp_plugins.reporters"
    names = {impl.plugin_name for impl in host.pm.hook.lamp_example_predicted.get_hookimpls()}
    assert "reporters" in names


def test_a_real_run_logs_events_and_prints_the_summary(toys, tmp_path, capsys):
    from lamp_harness.run.runner import run_matrix  # noqa: F401  (the runner must exist for this test)

    out = tmp_path / "runs"
    args = [*demo_run("--personalizer", "none", limit=3, out=out)]
    for _ in range(2):  # the second run skips the finished cell
        try:
            main(args)
        except SystemExit as exc:
            assert not exc.code, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "started none / toy-echo" in err and "skipped none / toy-echo" in err and "Summary" in err
    records = [json.loads(line) for line in (out / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    events = [r["event"] for r in records]
    assert events == [
        "run_started",
        "cell_started",
        "example_predicted",
        "example_predicted",
        "example_predicted",
        "cell_finished",
        "run_finished",
        "run_started",
        "cell_finished",
        "run_finished",
    ]
    assert records[-2]["timing"]["skipped"] is True
