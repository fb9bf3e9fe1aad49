"""The runner and run store: matrices, cell folders, skipping, resuming, and crash safety."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from lamp_cli import LAMP_PROCESS, demo_run, toys_env
from lamp_cli import lamp_code as lamp

from lamp_harness.plugin.contracts import Prediction
from lamp_harness.run.store import CellStore


def cells(out: Path) -> dict[str, Path]:
    return {
        json.loads((d / "config.json").read_text())["label"]: d
        for d in sorted(out.iterdir())
        if (d / "config.json").is_file()
    }


BASE = demo_run()


def test_matrix_drops_meaningless_cells_and_writes_every_file(toys, tmp_path):
    out = tmp_path / "runs"
    code = lamp(
        *BASE, "--personalizer", "none,ipa", "--retriever", "bm25,random", "--k", "1,2", "--limit", "5", "--out", str(out)
    )
    assert code == 0
    found = cells(out)
    # none ignores retrievers and k: one cell, not four.
    assert sorted(found) == sorted(
        [
            "none / toy-echo",
            "ipa / bm25 / k=1 / toy-echo",
            "ipa / bm25 / k=2 / toy-echo",
            "ipa / random / k=1 / toy-echo",
            "ipa / random / k=2 / toy-echo",
        ]
    )
    cell = found["ipa / bm25 / k=2 / toy-echo"]
    config = json.loads((cell / "config.json").read_text())
    assert config["task"] == "lamp-7" and config["k"] == 2 and config["retriever"]["name"] == "bm25"
    assert config["generator"]["model"] == "toy" and config["data"]["checksums"]
    assert "lamp-harness" in config["versions"]
    predictions = [json.loads(line) for line in (cell / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 5 and all(len(p["retrieved"]) == 2 for p in predictions)
    metrics = json.loads((cell / "metrics.json").read_text())
    assert {m["name"] for m in metrics["metrics"]} >= {"rouge-1", "rouge-L"}
    assert all(m["higher_is_better"] for m in metrics["metrics"])
    timing = json.loads((cell / "timing.json").read_text())
    assert timing["examples"] == 5 and timing["examples_per_s"] > 0


def test_rerun_skips_finished_cells_and_force_recomputes(toys, tmp_path):
    out = tmp_path / "runs"
    args = (*BASE, "--personalizer", "ipa", "--retriever", "bm25", "--limit", "4", "--out", str(out))
    assert lamp(*args) == 0
    (cell,) = cells(out).values()
    first = (cell / "predictions.jsonl").read_bytes()
    stamp = (cell / "metrics.json").stat().st_mtime_ns
    assert lamp(*args) == 0
    assert (cell / "metrics.json").stat().st_mtime_ns == stamp  # skipped, not recomputed
    assert lamp(*args, "--force") == 0
    assert (cell / "metrics.json").stat().st_mtime_ns != stamp
    assert (cell / "predictions.jsonl").read_bytes() == first


def test_impossible_cells_are_all_listed_before_any_work(toys, tmp_path):
    out = tmp_path / "runs"
    code = lamp(*BASE, "--task", "lamp-7,lamp-4", "--personalizer", "fid", "--retriever", "bm25", "--out", str(out))
    assert code == 2
    assert not out.exists() or not any(out.iterdir())


def test_recovery_cuts_torn_lines_and_partial_batches(tmp_path):
    store = CellStore(tmp_path)
    batch = [Prediction(f"q{i}", f"out {i}", f"raw {i}") for i in range(3)]
    store.append_predictions(batch)
    store.append_predictions(batch[:2])  # a partial second batch (crash before the third line)
    with open(tmp_path / "predictions.jsonl", "a") as handle:
        handle.write('{"example_id": "q9", "outp')  # torn write
    recovered = store.recover_predictions(batch_size=3)
    assert [p.example_id for p in recovered] == ["q0", "q1", "q2"]
    assert store.read_predictions() == recovered  # the file itself was cut back


def test_matrix_file(toys, tmp_path):
    config = tmp_path / "matrix.toml"
    out = tmp_path / "runs"
    config.write_text(f"""
task = ["lamp-7"]
personalizer = ["none", "ipa"]
retriever = ["random"]
k = [1]
generator = ["toy-echo"]
data = "demo"
limit = 3
out = "{out.as_posix()}"

[retriever-args.random]
seed = "7"
""")
    assert lamp("run", "--config", str(config), "--quiet") == 0
    found = cells(out)
    assert sorted(found) == ["ipa / random / k=1 / toy-echo", "none / toy-echo"]
    config_json = json.loads((found["ipa / random / k=1 / toy-echo"] / "config.json").read_text())
    assert config_json["retriever"] == {"name": "random", "seed": "7"}


def test_matrix_file_groups_combine_sub_products(toys, tmp_path):
    config = tmp_path / "matrix.toml"
    out = tmp_path / "runs"
    config.write_text(f"""
task = ["lamp-7"]
generator = ["toy-echo"]
data = "demo"
limit = 2
out = "{out.as_posix()}"

[[group]]
personalizer = ["none"]
retriever = ["bm25"]          # dropped: none uses no retrieval

[[group]]
personalizer = ["ipa"]
retriever = ["bm25", "random"]
k = [2]
""")
    assert lamp("run", "--config", str(config), "--quiet") == 0
    assert sorted(cells(out)) == ["ipa / bm25 / k=2 / toy-echo", "ipa / random / k=2 / toy-echo", "none / toy-echo"]
    config.write_text(config.read_text() + "limit = 3\n")
    assert lamp("run", "--config", str(config)) == 2  # shared settings cannot move into a group


def test_bad_matrix_file_is_one_line(toys, tmp_path, capsys):
    config = tmp_path / "matrix.toml"
    config.write_text('task = ["lamp-7"]\nretreiver = ["bm25"]\n')
    assert lamp("run", "--config", str(config)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "retreiver" in err and str(config) in err


def _run_cli(out: Path, delay: str) -> subprocess.Popen:
    env = toys_env(LAMP_TOY_DELAY=delay)
    cmd = [
        *LAMP_PROCESS,
        *BASE,
        "--personalizer",
        "ipa",
        "--retriever",
        "bm25",
        "--limit",
        "30",
        "--out",
        str(out),
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_identical_predictions(toys, tmp_path):
    reference = tmp_path / "reference"
    assert _run_cli(reference, "0").wait(timeout=120) == 0
    (ref_cell,) = cells(reference).values()

    out = tmp_path / "killed"
    proc = _run_cli(out, "0.25")
    deadline = time.time() + 120
    predictions = None
    while time.time() < deadline:
        found = list(out.glob("*/predictions.jsonl")) if out.exists() else []
        if found and found[0].read_bytes().count(b"\n") >= 6:
            predictions = found[0]
            break
        time.sleep(0.02)
    assert predictions is not None, proc.stderr.read().decode() if proc.poll() is not None else "timeout"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (predictions.parent / "metrics.json").exists()
    lines_at_kill = predictions.read_bytes().count(b"\n")
    assert 6 <= lines_at_kill < 30

    assert _run_cli(out, "0").wait(timeout=120) == 0
    assert predictions.parent.name == ref_cell.name  # the same stable cell id
    assert predictions.read_bytes() == (ref_cell / "predictions.jsonl").read_bytes()
    assert (
        json.loads((ref_cell / "metrics.json").read_text())["metrics"]
        == json.loads((predictions.parent / "metrics.json").read_text())["metrics"]
    )


def test_a_trainable_method_is_trained_before_its_cell_once_and_checkpoints_are_reusable(
    tiny_llama_dir, tiny_encoder_dir, tmp_path, lamp_home
):
    out = tmp_path / "runs"
    args = demo_run(
        "--personalizer",
        "pplug",
        "--personalizer-arg",
        f"encoder={tiny_encoder_dir}",
        "--train-arg",
        "max_steps=2",
        "--train-arg",
        "batch_size=2",
        "--train-arg",
        "limit=4",
        "--generator-arg",
        "max_new_tokens=4",
        "--device",
        "cpu",
        generator=str(tiny_llama_dir),
        limit=3,
    )
    assert lamp(*args, "--out", str(out)) == 0
    (cell,) = cells(out).values()
    config = json.loads((cell / "config.json").read_text())
    checkpoint = Path(config["checkpoint"])
    assert checkpoint.is_relative_to(lamp_home / "checkpoints")  # trained first, cached by config hash
    trained_at = {p: p.stat().st_mtime_ns for p in checkpoint.rglob("*") if p.is_file()}

    again = tmp_path / "again"
    assert lamp(*args, "--out", str(again)) == 0  # same config: the cached checkpoint, no training
    assert {p: p.stat().st_mtime_ns for p in checkpoint.rglob("*") if p.is_file()} == trained_at
    (cell_again,) = cells(again).values()
    assert (cell_again / "predictions.jsonl").read_bytes() == (cell / "predictions.jsonl").read_bytes()

    explicit = tmp_path / "explicit"
    assert lamp(*args, "--checkpoint", str(checkpoint), "--out", str(explicit)) == 0
    (cell_explicit,) = cells(explicit).values()
    assert (cell_explicit / "predictions.jsonl").read_bytes() == (cell / "predictions.jsonl").read_bytes()


@pytest.mark.slow
def test_real_smollm2_end_to_end_on_demo_examples(tmp_path):
    """The packaged offline generator through the whole path: demo data, BM25, IPA prompt,
    SmolLM2 generation, scoring; and label decoding that only ever answers with valid labels."""
    out = tmp_path / "runs"
    assert (
        lamp(
            *demo_run(
                "--personalizer",
                "ipa",
                "--retriever",
                "bm25",
                "--generator-arg",
                "max_new_tokens=24",
                generator=None,
                limit=2,
                out=out,
            )
        )
        == 0
    )
    (cell,) = cells(out).values()
    config = json.loads((cell / "config.json").read_text())
    assert config["generator"]["model"] == "smollm2-135m-instruct"
    assert config["generator"]["substitutes"] is None or "smollm2" not in config["generator"]["substitutes"]
    predictions = [json.loads(line) for line in (cell / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 2 and all(p["raw"].strip() for p in predictions)
    assert all("are written by a person" in p["prompt"] for p in predictions)  # the LaMP-7 AIP

    labels_out = tmp_path / "labels"
    assert (
        lamp(
            "run",
            "--task",
            "lamp-3",
            "--data",
            "demo",
            "--decode",
            "labels",
            "--limit",
            "4",
            "--out",
            str(labels_out),
            "--quiet",
        )
        == 0
    )
    (cell,) = cells(labels_out).values()
    assert json.loads((cell / "config.json").read_text())["decode"] == "labels"
    outputs = [json.loads(line)["output"] for line in (cell / "predictions.jsonl").read_text().splitlines()]
    assert len(outputs) == 4 and set(outputs) <= {"1", "2", "3", "4", "5"}
