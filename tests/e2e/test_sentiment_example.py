"""The second example distribution (``examples/lamp-sentiment-example``: a task with its own data
source, a trainable personalizer, a generator and a reporter), pip-installed like a user would:
its own tests pass, ``lamp plugins`` lists it, and ``lamp run`` mixes its task with a built-in one,
trains its personalizer and feeds its reporter."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from installing import cells_with_metrics, pip_install, plugin_env, run_lamp, run_lamp_into, run_pytest

pytestmark = pytest.mark.slow  # pip-installs a distribution and runs it in subprocesses

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lamp-sentiment-example"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    return pip_install(EXAMPLE, tmp_path_factory.mktemp("sentiment-example"))


def test_the_example_s_own_tests_pass_against_the_installed_distribution(installed, tmp_path):
    done = run_pytest(EXAMPLE / "tests", plugin_env([installed], tmp_path / "home"), tmp_path, EXAMPLE)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 9 and "skipped" not in summary, summary


def test_lamp_plugins_lists_both_plugins_and_every_component(installed, tmp_path):
    done = run_lamp(["plugins"], plugin_env([installed], tmp_path / "home"), tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert re.search(r"^│ sentiment\s+│ lamp-sentiment-example\s+│ 0\.2\.0\s+│ lamp_register", text, re.M), text
    assert re.search(r"^│ sentiment-csv\s+│ lamp-sentiment-example\s+│ 0\.2\.0\s+│ lamp_cell_finished", text, re.M)
    for kind, name in (
        ("task", "toy-sentiment"),
        ("data source", "toy-sentiment"),
        ("personalizer", "user-prior"),
        ("generator", "prior-reader"),
        ("reporter", "sentiment-csv"),
    ):
        assert re.search(rf"^│ {kind}\s+│ {name}\s+│ lamp-sentiment-example 0\.2\.0", text, re.M), (kind, name)


def test_one_matrix_runs_the_plugin_task_on_its_own_data_next_to_a_built_in_task(installed, tmp_path):
    env = plugin_env([installed], tmp_path / "home")
    out = tmp_path / "out"
    run_lamp_into(
        out,
        [
            "run",
            "--task",
            "toy-sentiment,lamp-7",
            "--data",
            "lamp-7=demo",
            "--personalizer",
            "none,ipa",
            "--retriever",
            "bm25",
            "--k",
            "3",
            "--generator",
            "prior-reader",
            "--num-beams",
            "4",
            "--limit",
            "6",
        ],
        env,
        tmp_path,
    )
    configs = {
        (c["task"], c["personalizer"]["name"]): c
        for c in (json.loads(p.read_text(encoding="utf-8")) for p in out.glob("*/config.json"))
    }
    assert set(configs) == {("toy-sentiment", "none"), ("toy-sentiment", "ipa"), ("lamp-7", "none"), ("lamp-7", "ipa")}
    assert configs[("toy-sentiment", "ipa")]["data"]["source"] == "toy-sentiment:v1"
    # The example task scores with the metric helpers: its cells get per-example scores.
    assert all((out / c["cell_id"] / "scores.json").is_file() for c in configs.values())
    assert configs[("lamp-7", "ipa")]["data"]["source"] == "demo:v1"
    assert configs[("toy-sentiment", "ipa")]["component_versions"]["lamp-sentiment-example"] == "0.2.0"
    assert any("takes no 'num_beams'" in note for note in configs[("toy-sentiment", "ipa")]["preset_notes"])

    # prior-reader answers the majority label of the retrieved items: check it against the profile.
    cell = out / configs[("toy-sentiment", "ipa")]["cell_id"]
    questions = {
        q["id"]: q
        for q in json.loads((tmp_path / "home" / "toy-sentiment" / "v1" / "dev_questions.json").read_text(encoding="utf-8"))
    }
    for line in (cell / "predictions.jsonl").read_text(encoding="utf-8").splitlines():
        p = json.loads(line)
        labels = {i["id"]: i["label"] for i in questions[p["example_id"]]["profile"]}
        votes = [labels[i] for i in p["retrieved"]]
        assert len(votes) == 3
        assert p["output"] == max(sorted(set(votes)), key=votes.count)

    rows = list(csv.DictReader((out / "cells.csv").open(encoding="utf-8")))
    assert {r["cell_id"] for r in rows} == {c["cell_id"] for c in configs.values()}
    assert {r["metric"] for r in rows if r["task"] == "toy-sentiment"} == {"accuracy", "f1"}


def test_the_trainable_personalizer_is_trained_before_its_cell_and_beats_the_baseline(installed, tmp_path):
    env = plugin_env([installed], tmp_path / "home")
    out = tmp_path / "out"
    run_lamp_into(
        out,
        [
            "run",
            "--task",
            "toy-sentiment",
            "--personalizer",
            "none,user-prior",
            "--generator",
            "prior-reader",
            "--train-arg",
            "lr=0.1",
            "--train-arg",
            "epochs=15",
        ],
        env,
        tmp_path,
    )
    accuracy = {}
    for config, metrics in cells_with_metrics(out):
        accuracy[config["personalizer"]["name"]] = next(m["value"] for m in metrics["metrics"] if m["name"] == "accuracy")
        if config["personalizer"]["name"] == "user-prior":
            assert config["checkpoint"] and Path(config["checkpoint"]).exists()
    assert accuracy["user-prior"] >= 0.8 > accuracy["none"], accuracy
