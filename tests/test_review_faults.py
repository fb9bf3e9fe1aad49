"""Faults and bad inputs found by an independent review of the leaderboard-trust, lifetime and
recorded = applied work, each replayed here: one line, the exit code, no traceback, nothing lost."""

from __future__ import annotations

from pathlib import Path


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_task_arg_for_a_task_the_run_does_not_include_is_refused(toys, cli, tmp_path, lamp_home):
    """``--task-arg lamp-5:max_new_tokens=4`` with ``--task lamp-7`` (a typo in the task name) is
    refused like ``--data lamp-5=demo``, instead of running lamp-7 with its default budget; so is
    one option given two values under two spellings of one task."""
    out = tmp_path / "out"
    base = ("run", "--task", "lamp-7", "--data", "demo", "--limit", "2", "--generator", "toy-echo",
            "--quiet", "--out", str(out))
    code, _, err = cli(*base, "--task-arg", "lamp-5:max_new_tokens=4")
    line = _one_line(err)
    assert code == 2 and "--task-arg lamp-5:max_new_tokens=4 names a task this run does not include" in line
    assert "--task-arg lamp-7:max_new_tokens=4" in line  # the fix
    code, _, err = cli(*base, "--task-arg", "lamp-7:max_new_tokens=4", "--task-arg", "lamp_7:max_new_tokens=5")
    assert code == 2 and "two values of max_new_tokens" in _one_line(err)
    assert not out.exists() or not list(Path(out).glob("*/config.json"))
    code, stdout, err = cli(*base, "--task-arg", "lamp-7:max_new_tokens=4", "--task-arg", "LAMP-7:max_new_tokens=4")
    assert code == 0, stdout + err
