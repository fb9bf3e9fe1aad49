"""leaderboard/lamp7-finetuned: the README's counts and interval, recomputed from the committed cells
by the experiment's own scripts (the training budgets of budget.py need the real data: skipped
without it)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from real_data import REAL_DATA

EXPERIMENT = Path(__file__).resolve().parents[2] / "leaderboard" / "lamp7-finetuned"
DATA = REAL_DATA / "LaMP-7" / "user"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_answers_talking_about_the_task_are_counted_as_the_readme_says():
    talk = _script("task_talk")
    counts = {
        Path(label.rsplit(" [", 1)[1].rstrip("]")).name: sum(bool(talk.talks_about_task(o)) for o in outputs)
        for label, outputs in talk.cells(EXPERIMENT / "runs")
    }
    assert counts["lamp-7_none-d74fef1e52"] == 125  # zero-shot none
    assert counts["lamp-7_none-d86ec8d121"] == 4  # (a)
    assert counts["lamp-7_pplug-a6a69151f8"] == 1  # (c)
    assert counts["lamp-7_ipa_bm25_k1-f9261a1063"] == 244  # zero-shot IPA
    assert counts["lamp-7_pplug-5388405d1e"] == 8  # (d)
    assert talk.talks_about_task("Here's a revised version of the tweet") == ["here's a", "the tweet"]
    assert talk.talks_about_task("there's a party tonight") == []  # whole words only


def _paired_ci(*cells: str) -> str:
    """What the experiment's ``paired_ci.py CELL CELL`` prints (it must exit 0)."""
    command = [sys.executable, str(EXPERIMENT / "paired_ci.py"), *cells]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def test_the_paired_intervals_against_a_are_the_readmes():
    out = _paired_ci("lamp-7_none-d86ec8d121", "lamp-7_ipa_bm25_k1-08f547223a")
    assert "-0.012 over 495 paired examples, 95% interval [-0.026, +0.003]" in out
    out = _paired_ci("lamp-7_none-d86ec8d121", "lamp-7_pplug-5388405d1e")
    assert "-0.020 over 495 paired examples, 95% interval [-0.036, -0.005]" in out  # (d) against (a)


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason=f"the real LaMP-7 data is not at {DATA} (set LAMP_REAL_DATA)")
def test_the_capped_pplug_run_drew_1008_examples_reaching_652_users():
    out = subprocess.run(
        [sys.executable, str(EXPERIMENT / "budget.py"), str(DATA)], capture_output=True, text=True, check=True
    ).stdout
    capped = next(line for line in out.splitlines() if "augment" not in line and "| 10 |" in line)
    assert "| 11,055 | 126 x 8 | 1,008 | 9% | 652 of 1,005 |" in capped
    fine_tuned = [line for line in out.splitlines() if "(fine-tuned)" in line]
    assert len(fine_tuned) == 2 and all("| 1,005 | 100% | 1,005 of 1,005 |" in line for line in fine_tuned)
