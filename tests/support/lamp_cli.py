"""The real ``lamp`` entry point, run in-process by tests, and the toy plugins it can load.

``TOYS`` holds the fake ``lamp-toys`` distribution (model-free generators such as ``toy-echo``);
the ``toys`` fixture in ``conftest.py`` puts it on ``sys.path`` and ``PYTHONPATH``."""

from __future__ import annotations

from pathlib import Path

from lamp_harness.cli import main

TOYS = Path(__file__).resolve().parent / "toy_plugins"


def lamp_code(*args: str) -> int:
    """Run ``lamp ARGS``; its exit code."""
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def lamp_output(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``lamp ARGS``; its exit code, stdout and stderr (read through pytest's ``capsys``)."""
    code = lamp_code(*args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
