"""The ``lamp`` command line. Each command lives in its own module and registers itself on ``app``.

Commands import heavy libraries (torch, transformers) inside their bodies only, so that
``lamp --help`` and ``lamp plugins`` stay fast.
"""

from __future__ import annotations

import os
import sys

import typer

from lamp_harness import __version__
from lamp_harness.errors import LampError

app = typer.Typer(
    name="lamp",
    help="Benchmark personalized language models on LaMP: run methods side by side, score them "
    "like the official scorer, and render paper-style leaderboards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        print(f"lamp-harness {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                        help="Print the version and exit.")) -> None:
    """lamp-harness."""


from lamp_harness.cli import (  # noqa: E402  (commands register themselves on ``app``)
    data_cmd,
    evaluate_cmd,
    export_cmd,
    leaderboard_cmd,
    models_cmd,
    plugins_cmd,
    rank_cmd,
    run_cmd,
    train_cmd,
)

_COMMANDS = (plugins_cmd, run_cmd, data_cmd, evaluate_cmd, models_cmd, rank_cmd, train_cmd,
             leaderboard_cmd, export_cmd)


ARGV: list[str] = []
"""The arguments of this invocation (``--nproc-per-node`` hands them on to its workers)."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lamp`` script: user errors become one line and exit code 2 (in a
    distributed job, one line naming the rank)."""
    ARGV[:] = sys.argv[1:] if argv is None else list(argv)
    try:
        _main(argv)
    except SystemExit:
        raise
    except BaseException as exc:
        from lamp_harness import distributed

        if not distributed.current().distributed:
            raise
        if not isinstance(exc, LampError) and not distributed.is_peer_failure(exc):
            if not os.environ.get(distributed.LAUNCHED_BY_LAMP):
                raise  # torchrun, srun: the traceback goes to the job's log
        line = distributed.report_failure(exc)
        if line:
            print(f"Error: {line}", file=sys.stderr)
        sys.exit(exc.exit_code if isinstance(exc, LampError) else 1)
    finally:
        from lamp_harness import distributed

        distributed.shutdown()


def _main(argv: list[str] | None) -> None:
    try:
        # Without standalone mode click returns (not raises) the code of a ``typer.Exit``.
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except LampError as exc:
        from lamp_harness import distributed

        if distributed.current().distributed:
            raise  # main() names the rank
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("Interrupted: finished work is saved; run the same command again to resume.", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        raise
