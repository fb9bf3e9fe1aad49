"""The real ``lamp`` entry point, run in-process by tests, and the toy plugins it can load.

``TOYS`` holds the fake ``lamp-toys`` distribution (model-free generators such as ``toy-echo``);
the ``toys`` fixture in ``conftest.py`` puts it on ``sys.path`` and ``PYTHONPATH``, ``toys_env`` on the
``PYTHONPATH`` of a ``lamp`` process (``LAMP_PROCESS``, or the ``lamp`` script). ``demo_run`` writes
out the ``lamp run`` command line most tests start from (by default lamp-7 on the bundled demo data),
``pplug_train`` a ``lamp train`` of PPlug on it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lamp_harness.cli import main

TOYS = Path(__file__).resolve().parent / "toy_plugins"

# The command of a ``lamp`` process run by this interpreter (the harness this test session imports).
LAMP_PROCESS = (sys.executable, "-c", "from lamp_harness.cli import main; main()")


def toys_env(**extra: str) -> dict[str, str]:
    """The environment of a ``lamp`` process that loads the toy plugins: this process's, plus
    EXTRA, with ``TOYS`` first on ``PYTHONPATH``."""
    return {**os.environ, **extra, "PYTHONPATH": os.pathsep.join([str(TOYS), os.environ.get("PYTHONPATH", "")])}


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


def demo_run(
    *extra: str,
    task: str = "lamp-7",
    data: str = "demo",
    generator: str | None = "toy-echo",
    limit: int | str | None = None,
    out: str | os.PathLike | None = None,
    quiet: bool = True,
) -> tuple[str, ...]:
    """The arguments of ``lamp run --task TASK --data DATA --generator GENERATOR --limit LIMIT
    --out OUT --quiet EXTRA...``: ``generator``, ``limit`` and ``out`` are left out when None,
    ``--quiet`` when ``quiet`` is false; EXTRA follows in the order given."""
    args = ["run", "--task", task, "--data", data]
    if generator is not None:
        args += ["--generator", generator]
    if limit is not None:
        args += ["--limit", str(limit)]
    if out is not None:
        args += ["--out", str(out)]
    if quiet:
        args.append("--quiet")
    return (*args, *extra)


def pplug_train(generator: str | os.PathLike, encoder: str | os.PathLike, *extra: str) -> tuple[str, ...]:
    """The arguments of ``lamp train`` of PPlug on lamp-7's demo data: the generator folder
    ``generator`` (greedy: ``num_beams=1``) with the history encoder folder ``encoder``; EXTRA follows."""
    return (
        "train", "--task", "lamp-7", "--personalizer", "pplug", "--data", "demo", "--generator", str(generator),
        "--generator-arg", "num_beams=1", "--personalizer-arg", f"encoder={encoder}", *extra,
    )  # fmt: skip
