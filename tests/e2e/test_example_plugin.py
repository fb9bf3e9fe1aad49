"""The example third-party plugin (``examples/lamp-plugin-example``), installed with pip like a user
would, is discovered by ``lamp plugins``, passes its own conformance tests and runs in ``lamp run``.

pip installs into a temporary ``--target`` folder without network (``--no-index``) and with the
venv's setuptools (``--no-build-isolation``); subprocesses see it through ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from installing import pip_install, plugin_env, run_lamp, run_pytest

pytestmark = pytest.mark.slow  # pip-installs a distribution and runs it in subprocesses

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "lamp-plugin-example"
LAMP7 = "Paraphrase the following tweet without any explanation before or after it: "


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The example plugin pip-installed into a temporary target folder."""
    target = pip_install(EXAMPLE, tmp_path_factory.mktemp("example-plugin"))
    assert (target / "lamp_plugin_example" / "overlap.py").is_file()
    return target


def _env(installed: Path, home: Path, **extra: str) -> dict[str, str]:
    return plugin_env([installed], home, **extra)


_lamp = run_lamp


def test_lamp_plugins_lists_the_installed_overlap_retriever(installed, tmp_path):
    done = _lamp(["plugins"], _env(installed, tmp_path / "home"), tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if re.search(r"^│ retriever\s+│ overlap\b", line)]
    assert len(rows) == 1, done.stdout
    assert "lamp-plugin-example 0.1.0 (overlap)" in rows[0]
    plugin = [line for line in done.stdout.splitlines() if re.search(r"^│ overlap\s+│ lamp-plugin-example", line)]
    assert len(plugin) == 1 and "lamp_register" in plugin[0] and "retriever overlap" in plugin[0], done.stdout
    assert "broken" not in done.stdout and "conflict" not in done.stdout


def test_lamp_disable_plugins_hides_the_installed_plugin(installed, tmp_path):
    env = _env(installed, tmp_path / "home", LAMP_DISABLE_PLUGINS="lamp-plugin-example")
    done = _lamp(["plugins"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "disabled by LAMP_DISABLE_PLUGINS: overlap (lamp-plugin-example)" in done.stdout
    assert not re.search(r"retriever\s+│\s+overlap", done.stdout)


def test_the_example_s_own_conformance_tests_pass_against_the_installed_plugin(installed, tmp_path):
    env = _env(installed, tmp_path / "home")
    done = run_pytest(EXAMPLE / "tests", env, tmp_path, EXAMPLE)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 8, summary
    assert "skipped" not in summary and "failed" not in summary, summary


def _write_lamp7(folder: Path) -> None:
    """Three LaMP-7 dev questions whose best word-overlap items are known (ids a2, b2, c1)."""
    folder.mkdir(parents=True)
    questions = [
        {
            "id": "610",
            "input": LAMP7 + "Watching the sunset on the beach with a pelican",
            "profile": [
                {"id": "a1", "text": "coffee time again"},
                {"id": "a2", "text": "a pelican stole my fries at the beach"},
                {"id": "a3", "text": "work work work"},
            ],
        },
        {
            "id": "611",
            "input": LAMP7 + "Coffee is the best start of the morning",
            "profile": [{"id": "b1", "text": "late night gaming"}, {"id": "b2", "text": "morning coffee on the porch"}],
        },
        {"id": "612", "input": LAMP7 + "A third tweet", "profile": [{"id": "c1", "text": "only one item"}]},
    ]
    golds = {
        "task": "LaMP_7",
        "golds": [
            {"id": "610", "output": "Sunset, beach, pelican."},
            {"id": "611", "output": "Coffee: the best start."},
            {"id": "612", "output": "Tweet number three."},
        ],
    }
    (folder / "dev_questions.json").write_text(json.dumps(questions), encoding="utf-8")
    (folder / "dev_outputs.json").write_text(json.dumps(golds), encoding="utf-8")


def test_lamp_run_uses_the_installed_retriever(installed, tmp_path):
    data = tmp_path / "lamp7"
    _write_lamp7(data)
    out = tmp_path / "out"
    env = _env(installed, tmp_path / "home")
    args = [
        "run",
        "--task",
        "lamp-7",
        "--personalizer",
        "ipa",
        "--retriever",
        "overlap",
        "--k",
        "1",
        "--data-dir",
        str(data),
        "--split",
        "dev",
        "--limit",
        "2",
        "--generator",
        "toy-echo",
        "--out",
        str(out),
        "--quiet",
    ]
    done = _lamp(args, env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    cells = [p.parent for p in out.rglob("config.json")]
    assert len(cells) == 1, cells
    config = json.loads((cells[0] / "config.json").read_text(encoding="utf-8"))
    assert config["retriever"]["name"] == "overlap"
    predictions = [json.loads(line) for line in (cells[0] / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    by_id = {p["example_id"]: p for p in predictions}
    assert sorted(by_id) == ["610", "611"]  # --limit 2
    assert list(by_id["610"]["retrieved"]) == ["a2"]
    assert list(by_id["611"]["retrieved"]) == ["b2"]
    assert "a pelican stole my fries at the beach" in by_id["610"]["prompt"]
    metrics = json.loads((cells[0] / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n"] == 2 and metrics["metrics"]

    bad = _lamp(
        [*args[:-3], "--out", str(tmp_path / "bad"), "--quiet", "--retriever-arg", "overlap:min_len=zero"], env, tmp_path
    )
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr
    error_lines = [line for line in bad.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and "min_len='zero' is not an integer" in error_lines[0], bad.stderr
