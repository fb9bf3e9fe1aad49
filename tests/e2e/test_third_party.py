"""A third-party distribution written from ``docs/plugins.md`` alone (``tests/support/third_party/lamp-suite``:
a task with its own data source, a TF-IDF retriever, a summary personalizer, a trainable
personalizer, a rule-based generator, a CSV reporter), pip-installed and run against the harness."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from installing import cells_with_metrics, pip_install, plugin_env, run_lamp, run_lamp_into, run_pytest

pytestmark = pytest.mark.slow  # pip-installs a distribution and runs it in subprocesses

SUITE = Path(__file__).resolve().parents[1] / "support" / "third_party" / "lamp-suite"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    return pip_install(SUITE, tmp_path_factory.mktemp("third-party"))


def test_its_own_conformance_tests_pass(installed, tmp_path):
    done = run_pytest(SUITE / "tests", plugin_env([installed], tmp_path / "home"), tmp_path, SUITE)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout


def test_a_matrix_mixing_its_task_with_a_lamp_task_runs_trains_and_reports(installed, tmp_path):
    env = plugin_env([installed], tmp_path / "home")
    listing = run_lamp(["plugins"], env, tmp_path)
    assert listing.returncode == 0 and "broken" not in listing.stdout and "warning" not in listing.stdout
    out = tmp_path / "runs"
    run_lamp_into(
        out,
        [
            "run",
            "--task",
            "city-guess,lamp-2",
            "--data",
            "lamp-2=demo",
            "--personalizer",
            "none,summary,ipa,city-prior",
            "--retriever",
            "tfidf",
            "--k",
            "2",
            "--generator",
            "rules",
            "--num-beams",
            "4",
            "--limit",
            "10",
            "--train-arg",
            "lr=0.5",
            "--train-arg",
            "epochs=10",
        ],
        env,
        tmp_path,
    )
    accuracy = {}
    for config, metrics in cells_with_metrics(out):
        accuracy[(config["task"], config["personalizer"]["name"])] = next(
            m["value"] for m in metrics["metrics"] if m["name"] == "accuracy"
        )
        assert config["component_versions"].get("lamp-suite") == "1.0.0"
    assert len(accuracy) == 8
    # The city is in the user's posts: the summary and the trained prior find it, the bare input cannot.
    assert accuracy[("city-guess", "summary")] == 1.0 and accuracy[("city-guess", "city-prior")] == 1.0
    assert accuracy[("city-guess", "none")] < 0.5
    rows = list(csv.reader((out / "suite-log.csv").open(encoding="utf-8")))
    assert len(rows) == 16  # 8 cells x (accuracy, f1)
