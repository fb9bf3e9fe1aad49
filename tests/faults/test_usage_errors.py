"""Every usage error of every command and sub-command is one line ``Error: ...``, exit code 2, no
traceback, and nothing written, whatever typer or click version is installed.

The commands are discovered from the CLI itself, so a command added later is covered too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from lamp_harness.cli import app, main


def _leaves(command, path=()):
    """Every command that runs something: leaves, and groups that also run on their own."""
    subcommands = getattr(command, "commands", None)
    if not subcommands or (path and getattr(command, "invoke_without_command", False)):
        yield path, command
    for name, sub in sorted((subcommands or {}).items()):
        yield from _leaves(sub, (*path, name))


COMMANDS = list(_leaves(typer.main.get_command(app)))


def _options(command):
    return [
        p
        for p in command.params
        if getattr(p, "opts", None)
        and p.opts[0].startswith("--")
        and not getattr(p, "is_flag", False)
        and p.name not in ("help",)
    ]


def _number(param) -> bool:
    """Whether an option takes a number (click keeps the type on ``param.type``; typer's own
    parameters keep the annotation on ``param.type_descriptor``)."""
    kind = getattr(param, "type", None)
    if kind is not None:
        return getattr(kind, "name", "") in ("integer", "float") or "Range" in type(kind).__name__
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    return annotation in (int, float)


def _minimum(param):
    kind = getattr(param, "type", None)
    return getattr(kind, "min", None) if kind is not None else getattr(param, "min", None)


def _cases():
    for path, command in COMMANDS:
        name = " ".join(path)
        yield pytest.param(path, ["--no-such-option", "1"], "No such option", id=f"{name}-unknown-option")
        long = [p for p in _options(command) if len(p.opts[0]) > 5]
        if long:  # a typo of a real option (one letter dropped) gets a did-you-mean
            opt = long[0].opts[0]
            typo = opt[:3] + opt[4:]
            yield pytest.param(path, [typo, "1"], "No such option", id=f"{name}-misspelled-option")
        required = [p for p in command.params if p.required]
        if required:
            yield pytest.param(path, [], "Missing", id=f"{name}-missing-required")
        number = next((p for p in _options(command) if _number(p)), None)
        if number is not None:
            yield pytest.param(path, [number.opts[0], "abc"], "Invalid value", id=f"{name}-bad-type")
        ranged = next((p for p in _options(command) if _minimum(p) is not None), None)
        if ranged is not None:
            below = str(_minimum(ranged) - 1)
            yield pytest.param(path, [ranged.opts[0], below], "Invalid value", id=f"{name}-out-of-range")


CASES = list(_cases())


def test_the_matrix_covers_every_command():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {
        "run",
        "train",
        "rank",
        "evaluate",
        "export",
        "leaderboard",
        "plugins",
        "models",
        "data download",
        "data validate",
        "data info",
    } <= names
    ids = {c.id for c in CASES}
    for kind in ("bad-type", "out-of-range", "missing-required", "misspelled-option"):
        assert any(i.endswith(kind) for i in ids), kind


def _invoke(args, capsys):
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, out, err, expect=""):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: "), err
    assert "Traceback" not in err + out
    assert expect in lines[0], lines[0]


@pytest.mark.parametrize(("path", "args", "expect"), CASES)
def test_usage_error_is_one_line_exit_2(path, args, expect, capsys, tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    code, out, err = _invoke([*path, *args], capsys)
    assert_one_line_error(code, out, err, expect)
    assert not out.strip()
    assert list(work.iterdir()) == []  # nothing written
    if "misspelled" in expect or "No such option" in expect:
        assert f"lamp {' '.join(path)} --help" in err  # says where to look


def test_misspelled_option_suggests_the_right_one(capsys):
    code, out, err = _invoke(["run", "--limt", "2"], capsys)
    assert_one_line_error(code, out, err, "--limit")


@pytest.mark.parametrize("args", [[], ["data"]], ids=["lamp", "lamp-data"])
def test_a_bare_group_shows_its_help_and_one_error_line(args, capsys):
    code, out, err = _invoke(args, capsys)
    assert_one_line_error(code, "", err, "missing command")
    assert "Usage" in out or "Commands" in out


@pytest.mark.parametrize("args", [["runn"], ["data", "validat"]], ids=["lamp-runn", "lamp-data-validat"])
def test_an_unknown_command_is_one_line_with_a_suggestion(args, capsys):
    code, out, err = _invoke(args, capsys)
    assert_one_line_error(code, out, err, "No such command")
    assert "Did you mean" in err


def test_ctrl_c_prints_the_resume_line(monkeypatch, capsys, tmp_path):
    from lamp_harness.run import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_matrix", interrupted)
    code, out, err = _invoke(["run", "--task", "lamp-7", "--data", "demo", "--out", str(tmp_path / "r")], capsys)
    assert code == 130
    assert err.strip() == "Interrupted: finished work is saved; run the same command again to resume."


def test_the_installed_click_is_the_one_typer_raises(capsys):
    """Whichever click typer uses (its bundled copy or the click package), main() catches it."""
    command = typer.main.get_command(app)
    module = type(command).__module__.split(".")[0]
    assert module in ("typer", "click")
    code, out, err = _invoke(["rank", "--top", "x"], capsys)
    assert_one_line_error(code, out, err, "--top")


def test_the_usage_error_exit_code_survives_a_real_process(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "from lamp_harness.cli import main; main()", "run", "--limt", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: ")
    assert not list(Path(tmp_path).iterdir())


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "lamp")
def test_help_states_each_default_once(path, capsys, monkeypatch):
    """An option whose help states its default in words does not get typer's line as well."""
    command = dict(COMMANDS)[path]
    for param in command.params:
        if "[default:" in (getattr(param, "help", None) or ""):
            assert not param.show_default, f"lamp {' '.join(path)} {param.opts[0]}: two defaults"
    monkeypatch.setenv("COLUMNS", "240")
    try:
        main([*path, "--help"])
    except SystemExit as stop:
        assert stop.code in (0, None)
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert not re.search(r"(\[default: [^\]]+\]) \1", text), text
