"""The leaderboard as one self-contained HTML page (``lamp leaderboard --format html --out page.html``).

Everything is inline: CSS, a few lines of JavaScript (sortable columns, an interval toggle) and the
bar chart as SVG. Nothing is loaded from the network (no CDN, no web fonts), so the page can be
mailed, attached to a paper's supplement or opened offline. The layout is the papers': rows task
x metric with ↑/↓, one column per method, the best value in bold, ``†`` for a significant
difference from the baseline column; each column's configuration (model, retriever, k, preset,
data checksums, versions) is one click away.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

from lamp_harness.report.leaderboard.model import (
    PLACES,
    Block,
    Breakdown,
    Cell,
    Leaderboard,
    Summary,
    Value,
    arrow,
    column_title,
    training_budget,
)
from lamp_harness.report.leaderboard.plot import plot_bytes

STYLE = """
:root { --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --head: #f6f8fa; --best: #0a3069;
        --sig: #cf222e; --base: #fff8c5; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       margin: 24px auto; max-width: 1400px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.muted { color: var(--muted); }
.controls { margin: 12px 0; display: flex; gap: 18px; align-items: center; flex-wrap: wrap; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0 10px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; vertical-align: top; }
thead th { background: var(--head); font-weight: 600; cursor: pointer; user-select: none; }
thead th.sorted-asc::after { content: " ▲"; color: var(--muted); }
thead th.sorted-desc::after { content: " ▼"; color: var(--muted); }
tbody td:nth-child(-n+2) { white-space: nowrap; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.best .v { font-weight: 700; color: var(--best); }
.baseline { background: var(--base); }
sup.sig { color: var(--sig); font-weight: 700; }
.ci, .n { color: var(--muted); font-size: 12px; }
body:not(.show-ci) .ci { display: none; }
.ref { font-style: italic; }
details { margin: 4px 0; } summary { cursor: pointer; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 6px 0 10px 16px; }
dt { color: var(--muted); } dd { margin: 0; font-family: ui-monospace, SFMono-Regular, Menlo, monospace;
     font-size: 12px; word-break: break-all; }
.plot svg { max-width: 100%; height: auto; }
ul.notes { color: var(--muted); font-size: 12px; }
section.header ul { margin: 8px 0; padding-left: 20px; } li.warning { color: var(--sig); }
"""

SCRIPT = """
(function () {
  function key(cell) {
    var v = cell.getAttribute('data-sort');
    if (v === null || v === '') return null;
    var x = parseFloat(v);
    return isNaN(x) ? v.toLowerCase() : x;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var body = table.tBodies[0];
    var original = Array.prototype.slice.call(body.rows);
    table.querySelectorAll('thead th').forEach(function (th, index) {
      th.addEventListener('click', function () {
        var state = th.classList.contains('sorted-desc') ? 'asc' : 'desc';
        table.querySelectorAll('thead th').forEach(function (h) { h.classList.remove('sorted-asc', 'sorted-desc'); });
        var rows = original.slice();
        if (index > 1) {
          rows.sort(function (a, b) {
            var x = key(a.cells[index]), y = key(b.cells[index]);
            if (x === null) return 1; if (y === null) return -1;
            var lower = a.getAttribute('data-higher') === 'false';
            var d = x < y ? -1 : x > y ? 1 : 0;
            if (lower) d = -d;  // "desc" puts the best first whatever the metric's direction
            return state === 'desc' ? -d : d;
          });
          th.classList.add('sorted-' + state);
        }
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var toggle = document.getElementById('toggle-ci');
  if (toggle) toggle.addEventListener('change', function () { document.body.classList.toggle('show-ci', toggle.checked); });
  document.documentElement.classList.add('js-ready');
})();
"""


def render_html(board: Leaderboard, *, ci: bool = False, title: str = "lamp-harness leaderboard", plots: bool = True) -> str:
    """The whole page. ``ci`` shows the intervals from the start (the toggle still works)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style></head>",
        f'<body class="{"show-ci" if ci else ""}">',
        f"<h1>{escape(title)}</h1>",
        '<p class="muted">Rows: task × metric (↑ higher is better, ↓ lower is better); columns: methods '
        "(personalizer / retriever / k / generator). Bold: the best of our values in each row. Click a "
        "column header to sort by it (best first), the task header to restore the order.</p>",
        '<div class="controls"><label><input type="checkbox" id="toggle-ci"'
        + (" checked" if ci else "")
        + "> show 95% bootstrap intervals</label>",
    ]
    if board.significance is not None:
        parts.append(f'<span><sup class="sig">†</sup> {escape(board.significance.legend()[2:].replace("`", ""))}</span>')
    parts.append("</div>")
    if board.header is not None:
        parts.append(_header(board))
    for number, block in enumerate(board.blocks):
        parts.append(_block(board, block, number))
    for breakdown in board.breakdowns:
        parts.append(_breakdown(breakdown))
    for summary in board.summaries:
        parts.append(_summary(summary))
    if plots and board.blocks:
        parts.append('<h2>Plot</h2><div class="plot">' + inline_svg(plot_bytes(board, "svg")) + "</div>")
    if board.notes:
        parts.append('<h2>Notes</h2><ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in board.notes) + "</ul>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"


def _header(board: Leaderboard) -> str:
    """What the tables are (data, models, training, references, warnings): the header block of
    :class:`~lamp_harness.report.leaderboard.Header`, its ``**name**`` marks as bold and its inline code
    as code."""
    assert board.header is not None
    items = []
    for line in board.header.lines():
        text = escape(line)
        text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
        text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
        warning = line.startswith("**Warning**")
        items.append(f"<li{' class=warning' if warning else ''}>{text}</li>")
    return f'<section class="header"><ul>{"".join(items)}</ul></section>'


def _value_cell(value: Value | None, *, baseline: bool, reference: bool) -> str:
    classes = ["num"] + (["baseline"] if baseline else []) + (["ref"] if reference else [])
    if value is None:
        return f'<td class="{" ".join(classes)}" data-sort="">–</td>'
    if value.best:
        classes.append("best")
    tip = []
    if value.n:
        tip.append(f"n = {value.n}")
    if value.p_value is not None:
        tip.append(
            f"vs baseline: Δ = {value.delta:+.{PLACES}f}, p = {value.p_value:.4f}, "
            f"adjusted p = {value.p_adjusted:.4f}, paired on {value.n_paired} examples"
        )
    if value.cell_id:
        tip.append(f"cell {value.cell_id}")
    text = f'<span class="v">{value.value:.{PLACES}f}</span>'
    if value.significant:
        text += '<sup class="sig">†</sup>'
    if value.ci_low is not None and value.ci_high is not None:
        text += f' <span class="ci">[{value.ci_low:.{PLACES}f}, {value.ci_high:.{PLACES}f}]</span>'
    if value.n_paired and value.n and value.n_paired != value.n:
        text += f' <span class="n">(n={value.n_paired})</span>'
    return f'<td class="{" ".join(classes)}" data-sort="{value.value!r}" title="{escape("; ".join(tip))}">{text}</td>'


def _block(board: Leaderboard, block: Block, number: int) -> str:
    head = "".join(
        f"<th{' class=baseline' if block.baseline == i else ''}>{escape(column_title(block, i))}</th>"
        for i in range(len(block.columns))
    )
    rows = []
    for row in block.rows:
        cells = "".join(
            _value_cell(v, baseline=block.baseline == i, reference=block.columns[i].kind == "reference")
            for i, v in enumerate(row.values)
        )
        rows.append(
            f'<tr data-higher="{str(row.higher_is_better).lower()}"><td data-sort="{escape(row.task)}">'
            f"{escape(row.task)}</td><td>{escape(row.metric)} {arrow(row.higher_is_better)}</td>{cells}</tr>"
        )
    table = (
        f'<div class="scroll"><table class="sortable" id="block-{number}"><thead><tr><th>task</th>'
        f"<th>metric</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
    return f"<section><h2>{escape(block.title)}</h2>{table}{_configurations(board, block)}</section>"


def _configurations(board: Leaderboard, block: Block) -> str:
    """Each run column's configuration, gathered from its cells' records (``config.json``)."""
    items = []
    for column in block.columns:
        if column.kind != "run":
            continue
        cells = [c for c in board.cells if c.label == column.label and c.block == block.key]
        if not cells:
            continue
        facts = configuration(cells)
        body = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts.items())
        items.append(f"<details><summary>{escape(column.label)}</summary><dl>{body}</dl></details>")
    if not items:
        return ""
    return '<div class="configs"><p class="muted">Configuration of each column:</p>' + "".join(items) + "</div>"


def configuration(cells: Iterable[Cell]) -> dict[str, str]:
    """What a column is: model, retriever, k, personalizer, preset, data and versions (values that
    differ between its cells are listed with their tasks)."""
    facts: dict[str, dict[str, list[str]]] = {}

    def add(key: str, value: Any, task: str) -> None:
        if value in (None, "", {}, []):
            return
        facts.setdefault(key, {}).setdefault(str(value), []).append(task)

    for cell in sorted(cells, key=lambda c: c.task):
        record = cell.record
        generator = record.section("generator")
        add("model", generator.get("model"), cell.task)
        add("model revision", generator.get("revision"), cell.task)
        add("decoding", _pairs(generator, ("dtype", "num_beams", "max_new_tokens", "max_input_tokens")), cell.task)
        add("personalizer", _pairs(record.personalizer, None), cell.task)
        retriever = record.retriever
        add("retriever", _pairs(retriever, None) if isinstance(retriever, Mapping) else retriever, cell.task)
        if retriever:
            add("k", record.k, cell.task)
        add("preset", record.preset, cell.task)
        add("decode", record.decode, cell.task)
        add("seed", record.seed, cell.task)
        add("checkpoint", record.checkpoint, cell.task)
        add("training", training_budget(record), cell.task)
        data = record.section("data")
        add("data", data.get("source"), cell.task)
        checksums = data.get("checksums") or {}
        add(
            "data checksums",
            ", ".join(f"{name}: {str(digest)[:12]}" for name, digest in sorted(checksums.items())),
            cell.task,
        )
        add("versions", _pairs(record.versions, None), cell.task)
        add("cell", cell.cell_id, cell.task)
    shown = {}
    for key, values in facts.items():
        if len(values) == 1:
            shown[key] = next(iter(values))
        else:
            shown[key] = "; ".join(f"{', '.join(tasks)}: {value}" for value, tasks in values.items())
    return shown


def _pairs(mapping: Any, keys: Iterable[str] | None) -> str:
    if not isinstance(mapping, Mapping):
        return "" if mapping is None else str(mapping)
    chosen = keys if keys is not None else sorted(mapping)
    return ", ".join(f"{k}={mapping[k]}" for k in chosen if k in mapping and mapping[k] not in (None, ""))


def _breakdown(breakdown: Breakdown) -> str:
    what = (
        "quartiles of the asking user's profile size; n = examples"
        if breakdown.by == "profile-size"
        else "mean over users of each user's value; n = users; ↑/↓ = users served better/worse than by the baseline"
    )
    head = "".join(f"<th>{escape(c)}</th>" for c in breakdown.columns)
    rows = []
    for row in breakdown.rows:
        for bucket in row.buckets:
            cells = []
            for k, v in enumerate(bucket.values):
                if v is None:
                    cells.append('<td class="num" data-sort="">–</td>')
                    continue
                detail = bucket.detail[k] if k < len(bucket.detail) else ""
                cells.append(
                    f'<td class="num" data-sort="{v.value!r}"><span class="v">{v.value:.{PLACES}f}</span> '
                    f'<span class="n">(n={v.n}){" " + escape(detail) if detail else ""}</span></td>'
                )
            rows.append(
                f'<tr data-higher="{str(row.higher_is_better).lower()}"><td data-sort="{escape(row.task)}">'
                f"{escape(row.task)}</td><td>{escape(row.metric)} {arrow(row.higher_is_better)} · "
                f"{escape(bucket.label)}</td>{''.join(cells)}</tr>"
            )
    return (
        f"<section><h2>By {escape(breakdown.by)}: {escape(breakdown.block)}</h2>"
        f'<p class="muted">Each metric recomputed per group ({what}).</p><div class="scroll">'
        f'<table class="sortable"><thead><tr><th>task</th><th>metric · group</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _summary(summary: Summary) -> str:
    rows = "".join(
        f'<tr data-higher="true"><td data-sort="{escape(r.column)}">{escape(r.column)}</td>'
        f'<td>{r.rows} rows</td><td class="num" data-sort="{r.win_rate!r}">{r.win_rate:.{PLACES}f}</td></tr>'
        for r in summary.rates
    )
    return (
        f"<section><h2>Mean win rate: {escape(summary.block)}</h2>"
        '<p class="muted">Per row, the share of the other columns each column beats (direction-aware, ties '
        "count one half), averaged over rows.</p>"
        '<table class="sortable"><thead><tr><th>column</th><th>compared in</th><th>mean win rate</th></tr>'
        f"</thead><tbody>{rows}</tbody></table></section>"
    )


_SVG_NOISE = (
    re.compile(r"<\?xml[^>]*\?>\s*"),
    re.compile(r"<!DOCTYPE[^>]*>\s*", re.IGNORECASE),
    re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL),
    re.compile(r'\s+xmlns(:\w+)?="[^"]*"'),
)


def inline_svg(svg: bytes) -> str:
    """Matplotlib's SVG made fit to inline: no XML prolog, DOCTYPE, metadata or namespace
    declarations (HTML does not need them, and they are URLs the page must not carry)."""
    text = svg.decode("utf-8")
    for pattern in _SVG_NOISE:
        text = pattern.sub("", text)
    return text.replace("xlink:href=", "href=")
