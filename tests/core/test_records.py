"""Typed records: a cell's files read and written through the run store as types that give back
the same bytes, and the lifecycle hooks receiving them (``CellResult``, ``Timing``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lamp_harness.base.io import atomic_write_json
from lamp_harness.plugin.contracts import MetricResult
from lamp_harness.plugin.hookspecs import hookimpl
from lamp_harness.run.records import CellRecord, CellResult, Timing
from lamp_harness.run.store import CellStore

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = sorted((ROOT / "leaderboard").rglob("config.json"))


def test_the_committed_run_folders_are_committed() -> None:
    assert len(COMMITTED) >= 30  # the demo runs and the fine-tuned experiment's cells and trainings


@pytest.mark.parametrize("name", ["config.json", "timing.json"])
def test_every_committed_file_round_trips_byte_identically(tmp_path, name) -> None:
    kind = CellRecord if name == "config.json" else Timing
    paths = sorted((ROOT / "leaderboard").rglob(name))
    assert paths
    for index, path in enumerate(paths):
        data = json.loads(path.read_text(encoding="utf-8"))
        record = kind.from_json(data)
        copy = tmp_path / f"{index}-{name}"
        atomic_write_json(copy, record.to_json())
        assert copy.read_bytes() == path.read_bytes(), path
        assert dict(record) == data  # the JSON object's view


def test_a_record_reads_its_fields_and_keeps_unknown_keys_and_their_order(tmp_path) -> None:
    data = {"task": "lamp-7", "added_later": [1, 2], "split": "dev", "k": None, "generator": {"model": "m"}}
    record = CellRecord.from_json(data)
    assert (record.task, record.split, record.k, record.label) == ("lamp-7", "dev", None, None)
    assert record.extra == {"added_later": [1, 2]} and record.section("generator") == {"model": "m"}
    assert record.section("data") == {} and "label" not in record and "k" in record
    assert list(record.to_json()) == ["task", "added_later", "split", "k", "generator"]
    store = CellStore(tmp_path / "cell")
    store.dir.mkdir()
    store.write_record(record)
    assert json.loads((store.dir / "config.json").read_text()) == data
    assert store.read_record() == record


def test_a_new_record_writes_the_writers_keys_and_set_ones_after_a_files_keys() -> None:
    new = CellRecord(cell_id="c", task="lamp-7", stale_weights=None)
    keys = list(new.to_json())
    assert keys[:3] == ["cell_id", "label", "task"] and keys[-2:] == ["base_id", "stale_weights"]
    assert "judges" not in keys and "training" not in keys  # written only when set
    from dataclasses import replace

    judged = replace(CellRecord.from_json({"task": "lamp-7", "seed": 0}), judges=[{"metric_name": "j"}])
    assert list(judged.to_json()) == ["task", "seed", "judges"]


def test_a_record_is_written_with_its_secrets_masked(tmp_path) -> None:
    store = CellStore(tmp_path / "cell")
    store.dir.mkdir()
    store.write_record(CellRecord.from_json({"task": "t", "generator": {"api_key": "sk-abcdefghijklmnopqrstuvwx"}}))
    assert "sk-abcdefghijklmnop" not in (store.dir / "config.json").read_text()


def test_timing_reads_as_its_file_and_skipping_adds_the_flag_after_its_keys(tmp_path) -> None:
    store = CellStore(tmp_path / "cell")
    assert dict(store.read_timing().with_(skipped=True)) == {"skipped": True}  # no timing.json
    store.dir.mkdir()
    (store.dir / "timing.json").write_text(json.dumps({"wall_s": 1.5, "examples": 3, "examples_per_s": None}))
    timing = store.read_timing()
    assert (timing.wall_s, timing.examples, timing.examples_per_s, timing.skipped) == (1.5, 3, None, None)
    skipped = timing.with_(skipped=True, stale=True)
    assert list(skipped) == ["wall_s", "examples", "examples_per_s", "skipped", "stale"]
    assert skipped.get("skipped") is True and skipped["wall_s"] == 1.5
    assert dict(Timing(wall_s=2.0, examples=1)) == {"wall_s": 2.0, "examples": 1}


def test_a_cell_result_reads_as_the_summary_dict_of_earlier_versions(tmp_path) -> None:
    metrics = (MetricResult("rouge-1", 0.5, True, 0.4, 0.6, 3),)
    timing = Timing.from_json({"wall_s": 1.0})
    done = CellResult("c1", "none / m", "lamp-7", metrics, False, tmp_path / "c1", timing)
    assert done.to_json() == {
        "cell_id": "c1",
        "label": "none / m",
        "task": "lamp-7",
        "metrics": list(metrics),
        "skipped": False,
        "dir": str(tmp_path / "c1"),
        "timing": timing,
    }
    skipped = CellResult("c0", "none / m", "lamp-7", metrics, True, tmp_path / "c0")
    assert list(skipped) == ["cell_id", "label", "task", "metrics", "skipped", "dir"]
    stale = CellResult("c9", "none / m", "lamp-7", metrics, True, tmp_path / "c9", stale=True)
    assert list(stale) == ["cell_id", "label", "task", "metrics", "skipped", "stale", "dir"]
    assert stale["dir"] == str(tmp_path / "c9") and stale.get("timing") is None


class Recorder:
    def __init__(self) -> None:
        self.timings: list[Timing] = []
        self.results: list[list[CellResult]] = []

    @hookimpl
    def lamp_cell_finished(self, timing):
        self.timings.append(timing)

    @hookimpl
    def lamp_run_finished(self, results):
        self.results.append(list(results))


def test_a_real_run_hands_the_hooks_typed_records_that_match_its_files(toys, tmp_path, monkeypatch) -> None:
    from lamp_harness.plugin.registry import PluginHost
    from lamp_harness.run.runner import Matrix, run_matrix

    monkeypatch.setenv("LAMP_HOME", str(tmp_path / "home"))
    recorder = Recorder()
    host = PluginHost(extra_plugins=[("recorder", recorder)])
    matrix = Matrix(
        tasks=("lamp-7",),
        personalizers=("none", "ipa"),
        retrievers=("bm25",),
        data="demo",
        limit=3,
        generators=("toy-echo",),
    )
    first = run_matrix(matrix, tmp_path / "runs", plugin_host=host, progress=False)
    assert recorder.results == [first] and all(isinstance(r, CellResult) for r in first)
    for result, timing in zip(first, recorder.timings, strict=True):
        assert isinstance(timing, Timing) and not result.skipped and timing.skipped is None
        assert result.timing == timing and timing.examples == 3
        store = CellStore(result.dir)
        assert store.read_timing() == timing and json.loads((result.dir / "timing.json").read_text()) == dict(timing)
        record = store.read_record()
        assert (record.cell_id, record.label, record.task) == (result.cell_id, result.label, result.task)
        assert store.read_metrics() == list(result.metrics)
        assert json.loads((result.dir / "config.json").read_text()) == record.to_json()
    second = run_matrix(matrix, tmp_path / "runs", plugin_host=host, progress=False)
    assert [r.cell_id for r in second] == [r.cell_id for r in first]
    assert all(r.skipped and r.timing is None for r in second)
    assert all(t.skipped is True and t.examples == 3 for t in recorder.timings[len(first) :])
