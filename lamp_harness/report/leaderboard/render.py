"""The leaderboard as text: markdown (the papers' layout), JSON and CSV (long format), and the
dispatch to the HTML page (:mod:`lamp_harness.report.leaderboard.page`). Deterministic: the same board
renders to the same bytes."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from typing import Any

from lamp_harness.base.errors import lamp_error
from lamp_harness.report.leaderboard.model import (
    PLACES,
    Block,
    Breakdown,
    Leaderboard,
    Row,
    Summary,
    Value,
    arrow,
    column_title,
)
from lamp_harness.report.leaderboard.page import render_html

FORMATS = ("markdown", "json", "csv", "html")


def format_value(value: Value | None, ci: bool = False, bold: bool = True) -> str:
    """``0.512``, ``**0.512**`` when best, ``0.512†`` when significantly different from the
    baseline, ``0.512 [0.490, 0.530]`` with intervals, ``(n=45)`` when the test paired fewer
    examples than the cell scored."""
    if value is None:
        return "–"
    text = f"{value.value:.{PLACES}f}"
    if bold and value.best:
        text = f"**{text}**"
    if value.significant:
        text += "†"
    if ci and value.ci_low is not None and value.ci_high is not None:
        text += f" [{value.ci_low:.{PLACES}f}, {value.ci_high:.{PLACES}f}]"
    if value.n_paired and value.n and value.n_paired != value.n:
        text += f" (n={value.n_paired})"
    return text


def render(board: Leaderboard, fmt: str = "markdown", ci: bool = False) -> str:
    """The leaderboard as ``markdown``, ``json``, ``csv`` or ``html`` text (deterministic)."""
    if fmt == "markdown":
        return render_markdown(board, ci)
    if fmt == "json":
        return render_json(board)
    if fmt == "csv":
        return render_csv(board)
    if fmt == "html":
        return render_html(board, ci=ci)
    raise lamp_error(f"unknown format {fmt!r}", where="--format", fix=f"Use one of {', '.join(FORMATS)}.")


def _cell_text(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(board: Leaderboard, ci: bool = False) -> str:
    """The leaderboard as markdown: the header (what the tables are), then one table per
    (split, scheme, data) block."""
    parts = []
    if board.header is not None:
        parts.append("# Leaderboard\n\n" + "\n".join(f"- {_cell_text(line)}" for line in board.header.lines()))
    for block in board.blocks:
        header = ["task", "metric"] + [_cell_text(column_title(block, i)) for i in range(len(block.columns))]
        lines = [
            f"## {block.title}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---", "---"] + ["---:"] * len(block.columns)) + "|",
        ]
        for row in block.rows:
            cells = [row.task, f"{row.metric} {arrow(row.higher_is_better)}"]
            cells += [format_value(v, ci) for v in row.values]
            lines.append("| " + " | ".join(_cell_text(c) for c in cells) + " |")
        if board.significance is not None and block.baseline is not None:
            lines += ["", board.significance.legend()]
        parts.append("\n".join(lines))
    parts += [_markdown_breakdown(b) for b in board.breakdowns]
    parts += [_markdown_summary(s) for s in board.summaries]
    return "\n\n".join(parts) + "\n"


def _markdown_breakdown(breakdown: Breakdown) -> str:
    what = (
        "quartiles of the asking user's profile size" if breakdown.by == "profile-size" else "per user, averaged over users"
    )
    lines = [
        f"## by {breakdown.by}: {breakdown.block}",
        "",
        f"Each metric recomputed on the examples of each group ({what}); "
        + (
            "n = users; ↑/↓ = users served better/worse than by the baseline."
            if breakdown.by == "user"
            else "n = examples in the group."
        ),
        "",
        "| task | metric | group | " + " | ".join(_cell_text(c) for c in breakdown.columns) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * len(breakdown.columns)) + "|",
    ]
    for row in breakdown.rows:
        for bucket in row.buckets:
            shown = []
            for k, v in enumerate(bucket.values):
                text = "–" if v is None else f"{v.value:.{PLACES}f} (n={v.n})"
                if v is not None and k < len(bucket.detail) and bucket.detail[k]:
                    text += f" {bucket.detail[k]}"
                shown.append(text)
            cells = [row.task, f"{row.metric} {arrow(row.higher_is_better)}", bucket.label, *shown]
            lines.append("| " + " | ".join(_cell_text(c) for c in cells) + " |")
    return "\n".join(lines)


def _markdown_summary(summary: Summary) -> str:
    lines = [
        f"## mean win rate: {summary.block}",
        "",
        "Per row (task x metric), the share of the other columns each column beats (direction-aware, ties "
        "count one half), averaged over rows.",
        "",
        "| column | mean win rate | rows |",
        "|---|---:|---:|",
    ]
    lines += [f"| {_cell_text(r.column)} | {r.win_rate:.{PLACES}f} | {r.rows} |" for r in summary.rates]
    return "\n".join(lines)


def entry(block: Block, row: Row, index: int, test: str | None) -> dict[str, Any]:
    """One (task, metric, column) entry with its interval and its test against the baseline."""
    column, v = block.columns[index], row.values[index]
    assert v is not None
    return {
        "task": row.task,
        "metric": row.metric,
        "column": column.label,
        "kind": column.kind,
        "value": v.value,
        "ci_low": v.ci_low,
        "ci_high": v.ci_high,
        "n": v.n or None,
        "cell_id": v.cell_id or None,
        "best": v.best,
        "baseline": block.baseline == index,
        "p_value": v.p_value,
        "p_adjusted": v.p_adjusted,
        "significant": v.significant,
        "test": test if v.p_value is not None else None,
        "n_paired": v.n_paired or None,
        "delta": v.delta,
    }


def render_json(board: Leaderboard) -> str:
    """The leaderboard as JSON: blocks, methods, metrics and values with intervals."""
    test = board.significance.test if board.significance else None
    blocks = []
    for block in board.blocks:
        blocks.append(
            {
                "split": block.split,
                "scheme": block.scheme,
                "data": block.data,
                "columns": [
                    {"label": c.label, "kind": c.kind, "source": c.source or None, "baseline": block.baseline == i}
                    for i, c in enumerate(block.columns)
                ],
                "rows": [
                    {
                        "task": row.task,
                        "metric": row.metric,
                        "higher_is_better": row.higher_is_better,
                        "values": [None if v is None else entry(block, row, i, test) for i, v in enumerate(row.values)],
                    }
                    for row in block.rows
                ],
            }
        )
    document: dict[str, Any] = {}
    if board.header is not None:
        document["header"] = asdict(board.header)
    document["blocks"] = blocks
    if board.significance is not None:
        document["significance"] = asdict(board.significance)
    if board.breakdowns:
        document["breakdowns"] = [asdict(b) for b in board.breakdowns]
    if board.summaries:
        document["summaries"] = [asdict(s) for s in board.summaries]
    if board.notes:
        document["notes"] = list(board.notes)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


CSV_FIELDS = (
    "split",
    "scheme",
    "data",
    "task",
    "metric",
    "higher_is_better",
    "column",
    "kind",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "best",
    "cell_id",
    "baseline",
    "p_value",
    "p_adjusted",
    "significant",
    "test",
    "n_paired",
    "delta",
)


def render_csv(board: Leaderboard) -> str:
    """Long format: one line per (split, task, metric, column)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    test = board.significance.test if board.significance else None

    def text(x: Any) -> str:
        if x is None:
            return ""
        if isinstance(x, bool):
            return str(x).lower()
        return repr(x) if isinstance(x, float) else str(x)

    for block in board.blocks:
        for row in block.rows:
            for index, v in enumerate(row.values):
                if v is None:
                    continue
                e = entry(block, row, index, test)
                run = e["kind"] == "run"
                writer.writerow(
                    [
                        block.split,
                        block.scheme or "",
                        block.data or "",
                        row.task,
                        row.metric,
                        text(row.higher_is_better),
                        e["column"],
                        e["kind"],
                        text(e["value"]),
                        text(e["ci_low"]),
                        text(e["ci_high"]),
                        text(e["n"]),
                        text(e["best"]) if run else "",
                        text(e["cell_id"]),
                        text(e["baseline"]) if run else "",
                        text(e["p_value"]),
                        text(e["p_adjusted"]),
                        text(e["significant"]),
                        text(e["test"]),
                        text(e["n_paired"]),
                        text(e["delta"]),
                    ]
                )
    return out.getvalue()
