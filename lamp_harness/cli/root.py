"""The root ``lamp`` command that every command module registers itself on, and what the
commands share (:data:`SEED_MAX`, :data:`ARGV`). It sits below the command modules, which import
it, and below :mod:`lamp_harness.cli`, which imports them."""

from __future__ import annotations

import typer

from lamp_harness import __version__
from lamp_harness.run.cells import SEED_MAX  # noqa: F401  (the commands' --seed bound: one rule with the matrix file's)

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
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """lamp-harness."""


ARGV: list[str] = []
"""The arguments of this invocation (``--nproc-per-node`` hands them on to its workers)."""
