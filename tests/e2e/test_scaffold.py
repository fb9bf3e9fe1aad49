"""``lamp plugins new`` writes a distribution that pip-installs, passes its own generated
conformance tests, and runs in ``lamp run`` as generated."""

from __future__ import annotations

import json
import re

import pytest
from installing import pip_install, plugin_env, run_lamp, run_lamp_into, run_pytest

from lamp_harness import __version__

pytestmark = pytest.mark.slow  # pip-installs a distribution and runs it in subprocesses


@pytest.fixture(scope="module")
def starter(tmp_path_factory):
    """``lamp plugins new lamp-starter --kind all``, generated and pip-installed."""
    root = tmp_path_factory.mktemp("scaffold")
    source = root / "lamp-starter"
    done = run_lamp(
        ["plugins", "new", "lamp-starter", "--out", str(source), "--kind", "all"], plugin_env([], root / "home"), root
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Wrote 12 files" in done.stdout
    return source, pip_install(source, root)


def test_the_generated_distribution_s_own_tests_pass_when_installed(starter, tmp_path):
    source, site = starter
    done = run_pytest(source / "tests", plugin_env([site], tmp_path / "home"), tmp_path, source)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.search(r"\b9 passed\b", summary) and "skipped" not in summary, summary


def test_the_generated_components_are_listed_and_run_end_to_end(starter, tmp_path):
    _, site = starter
    env = plugin_env([site], tmp_path / "home")
    listing = run_lamp(["plugins"], env, tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "broken" not in listing.stdout and "warning" not in listing.stdout
    for kind, name in (
        ("task", "starter-task"),
        ("data source", "starter-data"),
        ("retriever", "starter-retriever"),
        ("personalizer", "starter-personalizer"),
        ("personalizer", "starter-trainable"),
        ("generator", "starter-generator"),
        ("reporter", "starter-reporter"),
    ):
        assert re.search(rf"^│ {kind}\s+│ {name}\s+│ lamp-starter 0\.1\.0", listing.stdout, re.M), (kind, name)

    out = tmp_path / "out"
    run_lamp_into(
        out,
        [
            "run",
            "--task",
            "starter-task",
            "--personalizer",
            "starter-personalizer,starter-trainable",
            "--retriever",
            "starter-retriever",
            "--k",
            "2",
            "--generator",
            "starter-generator",
            "--num-beams",
            "4",
            "--batch-size",
            "auto",
            "--train-arg",
            "max_steps=2",
        ],
        env,
        tmp_path,
    )
    configs = [json.loads(p.read_text(encoding="utf-8")) for p in out.glob("*/config.json")]
    assert sorted(c["personalizer"]["name"] for c in configs) == ["starter-personalizer", "starter-trainable"]
    assert all(c["data"]["source"] == "starter-data:v1" for c in configs)  # the task's own data source
    assert all(c["generator"]["batch_size"] == 8 for c in configs)  # --batch-size auto: the generator's default
    trained = [c for c in configs if c["personalizer"]["name"] == "starter-trainable"]
    assert trained[0]["checkpoint"]  # trained before its cell
    # The scaffold's task scores with the metric helpers: its cells get per-example scores.
    assert all((out / c["cell_id"] / "scores.json").is_file() for c in configs)
    lines = (out / "starter-cells.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and all("accuracy" in json.loads(line)["metrics"] for line in lines)


def test_a_single_kind_scaffold_installs_and_passes(tmp_path):
    source = tmp_path / "lamp-only-reporter"
    done = run_lamp(
        ["plugins", "new", "lamp-only-reporter", "--out", str(source), "--kind", "reporter"],
        plugin_env([], tmp_path / "home"),
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (source / "lamp_only_reporter" / "plugin.py").exists()  # a reporter needs no registration
    pyproject = (source / "pyproject.toml").read_text(encoding="utf-8")
    major, minor = (int(x) for x in __version__.split(".")[:2])
    # the compatible range the plugin guide asks for; no torch for a reporter
    assert f'dependencies = ["lamp-harness>={major}.{minor},<{major}.{minor + 1}"]' in pyproject, pyproject
    site = pip_install(source, tmp_path / "install")
    done = run_pytest(source / "tests", plugin_env([site], tmp_path / "home"), tmp_path, source)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout


def test_bad_scaffold_requests_are_one_line_errors(cli, tmp_path):
    code, _, err = cli("plugins", "new", "lamp-x", "--out", str(tmp_path / "x"), "--kind", "retreiver")
    assert code == 2 and err.count("\n") == 1
    assert "unknown --kind 'retreiver'" in err and "Did you mean 'retriever'?" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine", encoding="utf-8")
    code, _, err = cli("plugins", "new", "lamp-x", "--out", str(tmp_path / "full"))
    assert code == 2 and "is not empty" in err
    assert (tmp_path / "full" / "keep.txt").read_text(encoding="utf-8") == "mine"
    code, out, _ = cli("plugins")
    assert code == 0 and "lamp-harness components" in out  # `lamp plugins` alone still lists
