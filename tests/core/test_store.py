"""The run store's integrity: per-cell locks, id-keyed resume, verified finished cells, repair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lamp_cli import LAMP_PROCESS, demo_run, toys_env
from lamp_cli import lamp_code as lamp

from lamp_harness.plugin.contracts import MetricResult, Prediction
from lamp_harness.run.store import METRICS, PREDICTIONS, CellBusy, CellStore

BASE = demo_run()


def preds(*ids: str) -> list[Prediction]:
    return [Prediction(i, f"out {i}", f"raw {i}") for i in ids]


def finished_cell(directory: Path, ids=("q0", "q1", "q2")) -> CellStore:
    store = CellStore(directory)
    store.write_config({"cell_id": directory.name, "task": "lamp-7", "split": "dev"})
    store.append_predictions(preds(*ids))
    store.write_results("lamp-7", "dev", [MetricResult("rouge-1", 0.5, True, n=len(ids))], {"wall_s": 1})
    return store


# -- locks -----------------------------------------------------------------------------------------


def test_a_held_cell_lock_names_its_holder(tmp_path):
    first = CellStore(tmp_path / "cell")
    with first.lock():
        with pytest.raises(CellBusy) as busy:
            with CellStore(tmp_path / "cell").lock():
                pass
        assert busy.value.pid == os.getpid()
        assert f"process {os.getpid()}" in str(busy.value)
    with CellStore(tmp_path / "cell").lock():  # released: free again
        pass


def test_a_killed_holder_releases_the_lock(tmp_path):
    code = (
        "import sys, time; from lamp_harness.run.store import CellStore\n"
        f"with CellStore(r'{tmp_path / 'cell'}').lock():\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(CellBusy) as busy:
            with CellStore(tmp_path / "cell").lock():
                pass
        assert busy.value.pid == proc.pid
    finally:
        proc.kill()
        proc.wait()
    with CellStore(tmp_path / "cell").lock():  # the OS dropped the dead holder's lock
        pass


# -- finished means consistent ----------------------------------------------------------------------


def test_metrics_record_the_predictions_checksum_and_count(tmp_path):
    store = finished_cell(tmp_path / "c")
    recorded = json.loads((tmp_path / "c" / METRICS).read_text())["predictions"]
    assert recorded["count"] == 3 and len(recorded["sha256"]) == 64
    assert store.inconsistency(["q0", "q1", "q2"]) is None and store.finished


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: (d / PREDICTIONS).write_bytes((d / PREDICTIONS).read_bytes()[:-9]), "checksum"),
        (lambda d: (d / PREDICTIONS).unlink(), "predictions.jsonl is missing"),
        (lambda d: (d / "config.json").unlink(), "config.json is missing"),
        (lambda d: (d / "config.json").write_text("{"), "config.json is unreadable"),
        (lambda d: (d / METRICS).write_text('{"metrics": [{"na'), "metrics.json is unreadable"),
        (lambda d: (d / METRICS).write_bytes(b"\xff\xfe"), "metrics.json is unreadable"),
        (lambda d: (d / METRICS).unlink(), "not finished"),
    ],
    ids=[
        "predictions-truncated",
        "predictions-deleted",
        "config-deleted",
        "config-garbled",
        "metrics-truncated",
        "metrics-not-utf8",
        "metrics-deleted",
    ],
)
def test_a_cell_whose_files_disagree_is_not_finished(tmp_path, damage, expected):
    store = finished_cell(tmp_path / "c")
    damage(tmp_path / "c")
    problem = store.inconsistency(["q0", "q1", "q2"])
    assert problem is not None and expected in problem
    assert not store.finished


def test_the_split_ids_are_checked_exactly(tmp_path):
    store = finished_cell(tmp_path / "c", ids=("q0", "q1", "zz"))
    assert "not in the split" in store.inconsistency(["q0", "q1", "q2"])
    assert "lacks 1" in store.inconsistency(["q0", "q1", "q2"])
    store = finished_cell(tmp_path / "d", ids=("q0", "q1", "q1"))
    assert "repeats 1" in store.inconsistency(["q0", "q1"])


# -- id-keyed resume --------------------------------------------------------------------------------


def test_resume_after_a_kill_keeps_whole_batches_in_order(tmp_path):
    store = CellStore(tmp_path)
    store.append_predictions(preds("q0", "q1", "q2"))
    store.append_predictions(preds("q3", "q4"))
    with open(tmp_path / PREDICTIONS, "a") as handle:
        handle.write('{"example_id": "q5", "outp')
    kept = store.recover_predictions(3, [f"q{i}" for i in range(9)])
    assert [p.example_id for p in kept] == ["q0", "q1", "q2"]
    assert store.read_predictions() == kept


def test_resume_drops_foreign_duplicate_and_garbled_records_with_a_warning(tmp_path, capsys):
    store = CellStore(tmp_path)
    store.append_predictions(preds("q0", "zz", "q1", "q0"))
    with open(tmp_path / PREDICTIONS, "ab") as handle:
        handle.write(b'{"example_id": 7}\n\xff\xfe\n')
    store.append_predictions(preds("q3"))
    kept = store.recover_predictions(2, ["q0", "q1", "q2", "q3"])
    assert [p.example_id for p in kept] == ["q0", "q1", "q3"]
    assert store.read_predictions() == kept  # rewritten to the valid records only
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning:" in err
    assert "1 duplicate id" in err and "2 garbled line" in err and "1 id not in the split" in err


def test_a_rerun_repairs_an_inconsistent_cell_and_predicts_only_what_is_missing(toys, tmp_path, capsys):
    out = tmp_path / "runs"
    args = (*BASE, "--limit", "5", "--out", str(out))
    assert lamp(*args) == 0
    (cell,) = [d for d in out.iterdir() if d.is_dir()]
    reference = (cell / PREDICTIONS).read_bytes()
    metrics = json.loads((cell / METRICS).read_text())["metrics"]
    lines = reference.splitlines(keepends=True)
    # A foreign id in place of one prediction, and a duplicate of another.
    foreign = json.loads(lines[2])
    foreign["example_id"] = "not-in-the-split"
    (cell / PREDICTIONS).write_bytes(b"".join([*lines[:2], json.dumps(foreign).encode() + b"\n", *lines[3:], lines[0]]))
    capsys.readouterr()
    assert lamp(*args) == 0
    err = capsys.readouterr().err
    assert "repairing the cell" in err and str(cell) in err
    records = [json.loads(line) for line in (cell / PREDICTIONS).read_text().splitlines()]
    assert sorted(r["example_id"] for r in records) == sorted(json.loads(line)["example_id"] for line in lines)
    assert json.loads((cell / METRICS).read_text())["metrics"] == metrics
    assert CellStore(cell).finished
    capsys.readouterr()
    assert lamp(*args) == 0  # now consistent: skipped quietly
    assert "repairing" not in capsys.readouterr().err


@pytest.mark.slow
def test_concurrent_runs_on_one_out_compute_each_prediction_once(toys, tmp_path):
    out = tmp_path / "runs"
    env = toys_env(LAMP_TOY_DELAY="0.05")
    cmd = [
        *LAMP_PROCESS,
        *BASE,
        "--personalizer",
        "none,ipa",
        "--retriever",
        "bm25",
        "--limit",
        "12",
        "--out",
        str(out),
    ]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    errors = [p.communicate(timeout=180)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    reference = tmp_path / "reference"
    assert (
        subprocess.run(
            [*cmd[:-1], str(reference)], env={**env, "LAMP_TOY_DELAY": "0"}, capture_output=True, timeout=180
        ).returncode
        == 0
    )
    cells = sorted(d for d in out.iterdir() if d.is_dir())
    assert len(cells) == 2
    for cell in cells:
        ids = [json.loads(line)["example_id"] for line in (cell / PREDICTIONS).read_text().splitlines()]
        assert len(ids) == len(set(ids)) == 12  # written once, none missing
        assert (cell / PREDICTIONS).read_bytes() == (reference / cell.name / PREDICTIONS).read_bytes()
        assert CellStore(cell).finished
