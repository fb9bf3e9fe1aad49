"""``lamp export --submission``: official-format prediction files and the leaderboard zip."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from lamp_harness.cli.root import app


@app.command("export")
def export(
    submission: Path = typer.Option(
        ...,
        "--submission",
        help="Output folder: one LaMP_N.json per task (the official "
        "gold format) and submission.zip holding them. "
        "Example: --submission submission/",
    ),
    runs_dirs: list[Path] = typer.Argument(
        None, metavar="RUNS_DIR", help="Run folders to read, searched recursively. [default: runs]"
    ),
    split: str = typer.Option("test", "--split", help="Which split's predictions: test or dev. [default: test]"),
    select: str = typer.Option(
        None,
        "--select",
        help="Which cell per task when several match, as KEY=VALUE pairs separated "
        "by commas; keys: personalizer, retriever, k, generator, model, label, "
        "cell_id (a prefix). Example: --select personalizer=ipa,retriever=bm25,k=4",
    ),
) -> None:
    """Export predictions in the official format for the LaMP leaderboard (or `lamp evaluate`).

    Each task's predictions come from exactly one finished cell of the chosen split; a task with
    several candidate cells is an error listing them. The leaderboard scorer needs all seven tasks:
    missing ones are reported.

    Example: lamp export --submission submission/ runs/ --select personalizer=ipa,retriever=bm25
    """
    from lamp_harness.base.io import writable_dir
    from lamp_harness.plugin.options import parse_kv
    from lamp_harness.report.export import export_submission

    pairs = [p for p in (select or "").split(",") if p.strip()]
    chosen = parse_kv(pairs, "--select")
    writable_dir(submission, "--submission")
    result = export_submission(runs_dirs or [Path("runs")], submission, split=split, select=chosen)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for item in result.exported:
        print(f"{item.path}  {item.examples} predictions  from {item.cell.label} ({item.cell.dir})")
    print(f"{result.zip_path}  {len(result.exported)} task file(s)")
    for path in result.stale:
        print(
            f"warning: {path} is from an earlier export and is not in the zip; delete it before evaluating the folder",
            file=sys.stderr,
        )
    if result.missing:
        print(
            f"warning: missing task(s) {', '.join(result.missing)}: a benchmark's leaderboard needs every "
            f"one of its tasks; run them with `lamp run --task ... --split {split}`",
            file=sys.stderr,
        )
