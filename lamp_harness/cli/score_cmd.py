"""``lamp score``: judge finished cells again (another judge, or a judge that was down) without generating."""

from __future__ import annotations

from pathlib import Path

import typer

from lamp_harness.cli.options import Quiet
from lamp_harness.cli.root import app


@app.command("score")
def score(
    runs: list[Path] = typer.Argument(..., help="Run folders (--out of `lamp run`) or cell folders."),
    judge: str = typer.Option(
        None,
        "--judge",
        help="The judge, in the forms of --generator: a model for hf, PLUGIN or "
        "PLUGIN:MODEL, e.g. openai:Qwen/Qwen2.5-32B-Instruct. [default: each judged "
        "metric's default for the preset the cell ran with]",
    ),
    judge_arg: list[str] = typer.Option(
        [],
        "--judge-arg",
        help="KEY=VALUE for the judge generator (e.g. base_url=URL), or its "
        "decoding: parse_retries=N, max_new_tokens=N, decode=generate|labels "
        "(see docs/judges.md) (repeatable).",
    ),
    quiet: Quiet = False,
) -> None:
    """Score the judged metrics of finished cells with a judge, without generating again.

    Each judge's scores are a metric of their own, named after the judge
    (aspect-score@MODEL:PROMPT-VERSION:DIGEST), added beside the cell's other metrics, so `lamp
    leaderboard` shows both judges' rows. Judge answers are cached in $LAMP_HOME/judge: scoring
    again, or after an interruption, sends only what was never answered. The judge's raw answer
    and parsed score per question are written to each cell's judgments.json.

    Example: lamp score runs --judge openai:Qwen/Qwen2.5-32B-Instruct --judge-arg base_url=http://127.0.0.1:8000/v1
    """
    from rich.console import Console
    from rich.table import Table

    from lamp_harness.plugin.options import parse_kv
    from lamp_harness.run.judge import JudgeChoice, score_cells

    console = Console(stderr=True)
    summaries = score_cells(
        runs, JudgeChoice(judge, parse_kv(judge_arg, "--judge-arg")), console=console, progress=not quiet
    )
    table = Table("cell", "metric", "value", "questions", "sent", "cached", "unparsable")
    skipped = 0
    for s in summaries:
        if not s["judged"]:
            skipped += 1
        for j in s["judged"]:
            table.add_row(
                Path(s["dir"]).name,
                j["metric"],
                f"{j['value']:.4f}",
                str(j["questions"]),
                str(j["calls"]),
                str(j["cached"]),
                str(j["unparsable"]),
            )
    Console().print(table)
    if skipped:
        console.print(f"{skipped} cell(s) have no judged metric and were left as they are.")
