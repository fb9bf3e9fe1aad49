"""The ``lamp`` command line. Each command lives in its own module and registers itself on ``app``.

Commands import heavy libraries (torch, transformers) inside their bodies only, so that
``lamp --help`` and ``lamp plugins`` stay fast.
"""

from __future__ import annotations

import os
import sys

import typer

from lamp_harness.base.errors import LampError
from lamp_harness.base.secrets import redact_text
from lamp_harness.cli import (  # the commands register themselves on ``app`` when imported
    data_cmd,
    evaluate_cmd,
    export_cmd,
    leaderboard_cmd,
    models_cmd,
    plugins_cmd,
    rank_cmd,
    run_cmd,
    score_cmd,
    train_cmd,
)
from lamp_harness.cli.root import ARGV, SEED_MAX, app  # noqa: F401  (SEED_MAX: re-exported)

_COMMANDS = (
    plugins_cmd,
    run_cmd,
    data_cmd,
    evaluate_cmd,
    models_cmd,
    rank_cmd,
    train_cmd,
    leaderboard_cmd,
    export_cmd,
    score_cmd,
)


def _one_default_each(typer_app: typer.Typer) -> None:
    """Options whose help states its default in words (``[default: 1e-4]``, ``[default: the
    preset's generator]``) do not get typer's own ``[default: ...]`` line as well."""
    import inspect
    import typing

    for command in typer_app.registered_commands:
        if command.callback is None:
            continue
        for parameter in inspect.signature(command.callback, eval_str=True).parameters.values():
            # Old style, ``x: int = typer.Option(...)``, or an alias of lamp_harness.cli.options,
            # ``x: Seed = 0`` (the option sits in the ``Annotated`` metadata).
            infos = [parameter.default, *typing.get_args(parameter.annotation)[1:]]
            for info in infos:
                if isinstance(info, typer.models.ParameterInfo) and "[default:" in (info.help or ""):
                    info.show_default = False
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _one_default_each(group.typer_instance)


_one_default_each(app)


from lamp_harness.base.errors import INTERRUPTED  # noqa: E402  (here for the commands that print it)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lamp`` script: user errors become one line and exit code 2 (in a
    distributed job, one line naming the rank)."""
    ARGV[:] = sys.argv[1:] if argv is None else list(argv)
    if argv is None:
        _as_a_rank()
    from lamp_harness.base.secrets import remember_environment

    remember_environment()  # no line printed or written repeats a key from the environment
    ended_well = False
    try:
        _main(argv)
        ended_well = True
    except SystemExit as exc:
        ended_well = exc.code in (None, 0)
        raise
    except BaseException as exc:
        from lamp_harness.base import distributed

        if not distributed.current().distributed:
            raise
        if not isinstance(exc, LampError) and not distributed.is_peer_failure(exc):
            if not os.environ.get(distributed.LAUNCHED_BY_LAMP):
                raise  # torchrun, srun: the traceback goes to the job's log
        line = distributed.report_failure(exc)
        if line:
            print(f"Error: {redact_text(line)}", file=sys.stderr)
        sys.exit(exc.exit_code if isinstance(exc, LampError) else 1)
    finally:
        from lamp_harness.base import distributed

        distributed.shutdown(wait=ended_well)


def _as_a_rank() -> None:
    """A process a launcher started as one rank dies with its launcher; a worker of
    ``--nproc-per-node`` also ends silently on Ctrl-C (its launcher prints the one line)."""
    from lamp_harness.base import distributed

    if not distributed.is_rank_process():
        return
    distributed.die_with_launcher()
    if os.environ.get(distributed.LAUNCHED_BY_LAMP):
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)


def _terminate_like_ctrl_c() -> None:
    """SIGTERM (``kill``, ``timeout``, a scheduler's stop) ends a ``lamp`` command as Ctrl-C does:
    locks released, the one line, exit code 130; without this it died silently with -15. A rank
    of a data-parallel job is left as it is: its launcher stops it and prints the line (the
    launcher's own SIGTERM handling replaces this one when it starts the ranks)."""
    import signal
    import threading

    from lamp_harness.base import distributed

    if distributed.is_rank_process() or threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupt)


def _main(argv: list[str] | None) -> None:
    """Run the command: usage and user errors become one line on stderr and exit code 2.

    Usage errors come from click, and typer may bundle its own copy of click (typer 0.2x does), so
    they are recognised by their class names rather than by ``isinstance`` against one copy.
    """
    if argv is None:  # the ``lamp`` process itself (tests call it in-process with a list)
        _terminate_like_ctrl_c()
    try:
        # Without standalone mode click returns (not raises) the code of a ``typer.Exit``.
        code = app(args=argv, standalone_mode=False, prog_name="lamp")
    except LampError as exc:
        from lamp_harness.base import distributed

        if distributed.current().distributed:
            raise  # main() names the rank
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail(INTERRUPTED, 130, prefix="")
    except OSError as exc:
        import errno

        if not exc.filename and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            from lamp_harness.base.io import lamp_home

            # A write that did not say where (a library writing an open file): both places lamp writes.
            _fail(
                f"{exc.strerror or exc} (writing under the output folder or LAMP_HOME={lamp_home()}). Free "
                "some space there, then run the same command again: finished work is saved.",
                2,
            )
        if not exc.filename:  # not about a path the user gave: a bug, keep the traceback
            raise
        # A full disk, a read-only or vanished folder met mid-run: the path and the reason suffice.
        where = exc.filename if not exc.filename2 else f"{exc.filename} -> {exc.filename2}"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            _fail(
                f"{where}: {exc.strerror or exc}. Free some space there (or point --out / LAMP_HOME "
                "to a larger disk), then run the same command again: finished work is saved.",
                2,
            )
        _fail(
            f"{where}: {exc.strerror or exc}. Check the path and its permissions (finished work is "
            "saved; run the same command again to resume).",
            2,
        )
    except Exception as exc:
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "Exit" in kinds:
            code = getattr(exc, "exit_code", 0)
        elif "Abort" in kinds:  # click turns Ctrl-C (and EOF at a prompt) into Abort
            _fail(INTERRUPTED, 130, prefix="")
        elif "NoArgsIsHelpError" in kinds:  # a bare `lamp` or `lamp data`: show the help
            ctx = getattr(exc, "ctx", None)
            print(ctx.get_help() if ctx is not None else exc.format_message())  # type: ignore[attr-defined]  # click's
            path = ctx.command_path if ctx is not None else "lamp"
            _fail(f"{path}: missing command. Pick one of the commands listed above.", 2)
        elif "ClickException" in kinds:
            _fail(_usage_message(exc), 2)
        else:
            raise
    if isinstance(code, int) and code:
        if code == 130:  # typer turns Ctrl-C into Exit(130)
            print(INTERRUPTED, file=sys.stderr)
        sys.exit(code)


def _usage_message(exc: Exception) -> str:
    """One line: the command, what click found wrong, and where to read the options."""
    text = " ".join(str(exc.format_message()).split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return text
    text = text.rstrip(".")
    end = " " if text.endswith(("?", "!")) else ". "
    return f"{ctx.command_path}: {text}{end}See `{ctx.command_path} --help`."


def _fail(message: str, code: int, prefix: str = "Error: ") -> None:
    print(f"{prefix}{' '.join(redact_text(message).split())}", file=sys.stderr)
    sys.exit(code)
