"""``lamp leaderboard``: paper-style tables (and a bar chart) from finished run folders."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from lamp_harness.cli.options import SEED_DEFAULT, Seed
from lamp_harness.cli.root import app


@app.command("leaderboard")
def leaderboard(
    runs_dirs: list[Path] = typer.Argument(
        None,
        metavar="RUNS_DIR",
        help="Run folders to read, searched recursively for cells "
        "(folders with config.json + metrics.json). [default: runs]",
    ),
    fmt: str = typer.Option(
        "markdown",
        "--format",
        "-f",
        help="markdown (the papers' layout), json, csv (one line per task x "
        "metric x column), or html (one self-contained page: sortable, intervals on "
        "a toggle, plots and each column's configuration; use with --out).",
    ),
    ci: bool = typer.Option(
        False,
        "--ci",
        help="Show 95% bootstrap intervals, e.g. 0.512 [0.490, 0.530] (markdown; json and csv always carry them).",
    ),
    reference: list[str] = typer.Option(
        [],
        "--reference",
        help="Add a paper's numbers as extra columns (repeatable): "
        "lamp-user, lamp-time (LaMP paper, FlanT5-base), pplug (PPlug paper, FlanT5-XXL), "
        "lamp-qa (LaMP-QA paper) or personamem (PersonaMem paper, 128k contexts). "
        "Example: --reference lamp-time",
    ),
    plot: Path = typer.Option(
        None,
        "--plot",
        help="Also write a grouped bar chart, one panel per metric; PNG or SVG by extension, e.g. --plot leaderboard.png",
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="Also write the table to this file (atomically; html goes only there)."
    ),
    baseline: str = typer.Option(
        None,
        "--baseline",
        "-b",
        help="Test every other column against this one, per task and metric, on the examples both "
        "cells scored: a personalizer name (none), a column label or a cell-id prefix. "
        "Significant values get a † (p < 0.05 after correction). Example: --baseline none",
    ),
    test: str = typer.Option(
        "ar",
        "--test",
        help="ar: paired approximate randomization, 10,000 trials; bootstrap: paired bootstrap, "
        "1,000 resamples. Both recompute corpus-level metrics (macro-F1, RMSE) on every trial.",
    ),
    correction: str = typer.Option(
        "holm",
        "--correction",
        help="holm: Holm's correction across the columns compared in each row; none.",
    ),
    seed: Seed = SEED_DEFAULT,
    by: list[str] = typer.Option(
        [],
        "--by",
        help="Also break every metric down (repeatable): profile-size (quartiles of the asking "
        "user's profile length) or user (per-user means, users better/worse than the baseline).",
    ),
    summary: bool = typer.Option(
        False,
        "--summary",
        help="Add each column's mean win rate across tasks and metrics (direction-aware, as HELM).",
    ),
) -> None:
    """Render the leaderboard of finished runs: one block per split (and data scheme), rows task x
    metric with the direction (↑ higher is better, ↓ lower is better), one column per method
    (personalizer / retriever / k=K / model ...), the best value of each row in bold.

    Examples:

    lamp leaderboard runs/ --reference lamp-user --ci --plot runs/leaderboard.png

    lamp leaderboard runs/ --baseline none --by profile-size --summary --format html --out page.html
    """
    from lamp_harness.base.errors import lamp_error
    from lamp_harness.base.io import atomic_write_text, writable_file
    from lamp_harness.report import leaderboard as lb

    if fmt not in lb.FORMATS:
        raise lamp_error(f"unknown format {fmt!r}", where="--format", fix=f"Use one of {', '.join(lb.FORMATS)}.")
    if plot is not None:
        lb.plot_format(plot)
    for path, option in ((out, "--out"), (plot, "--plot")):
        if path is not None:
            writable_file(path, option)
    from lamp_harness.report import significance
    from lamp_harness.report.leaderboard import comparisons

    for name in reference:  # checked before any reading, so a typo fails fast
        lb.load_reference(name)
    significance.check_test(test)
    significance.check_correction(correction)
    for name in by:
        comparisons.check_breakdown(name)
    if baseline is not None and not baseline.strip():  # `--baseline "$B"` with B unset: no silent untested table
        raise lamp_error(
            f"{baseline!r} names no column",
            where="--baseline",
            fix="Pass a personalizer name, a column label or a cell-id prefix (e.g. --baseline none), "
            "or leave --baseline out for a table without tests.",
        )
    if fmt == "html" and out is None:
        raise lamp_error("an html page needs a file", where="--format html", fix="Add --out page.html.")
    board = lb.leaderboard(runs_dirs or [Path("runs")], references=reference)
    board = comparisons.compare(
        board, baseline=baseline, test=test, correction=correction, seed=seed, by=by, summary=summary
    )
    for note in board.notes:
        print(f"note: {note}", file=sys.stderr)
    text = lb.render(board, fmt, ci=ci)
    if fmt != "html":
        sys.stdout.write(text)
    if out is not None:
        atomic_write_text(out, text)
        print(f"wrote {out}", file=sys.stderr)
    if plot is not None:
        lb.plot(board, plot)
        print(f"wrote {plot}", file=sys.stderr)
