"""The leaderboard as a grouped bar chart (PNG or SVG), drawn from the model alone."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from lamp_harness.base.errors import lamp_error
from lamp_harness.report.leaderboard.model import Leaderboard, arrow


def plot_format(path: Path) -> str:
    """``png`` or ``svg`` from the file name; anything else is a one-line error."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise lamp_error(
            f"cannot tell the image format from {Path(path).name!r}",
            where="--plot",
            fix="End the file name with .png or .svg.",
        )
    return fmt


def plot(board: Leaderboard, path: Path) -> Path:
    """A grouped bar chart: one subplot per (block, metric), tasks on the x axis, one bar per
    method (reference columns hatched), 95% intervals as error bars. PNG or SVG by extension."""
    from lamp_harness.base.io import atomic_write_bytes

    path = Path(path)
    fmt = plot_format(path)
    atomic_write_bytes(path, plot_bytes(board, fmt))
    return path


def _plain(text: str) -> str:
    """``text`` as matplotlib shows it literally: a ``$`` would start mathtext (and an unbalanced
    or invalid ``$…$`` in a label, say ``--generator-arg stop=$``, is a parse error), so it is
    escaped."""
    return str(text).replace("$", r"\$")


def plot_bytes(board: Leaderboard, fmt: str = "svg") -> bytes:
    """The chart of :func:`plot` as ``png`` or ``svg`` bytes."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    panels = []
    for block in board.blocks:
        for metric in dict.fromkeys(r.metric for r in block.rows):
            panels.append((block, metric, [r for r in block.rows if r.metric == metric]))
    # Our methods first, then the papers' columns in their tables' order; one color per column.
    columns = sorted(dict.fromkeys(c for block in board.blocks for c in block.columns), key=lambda c: c.kind != "run")
    ncols = min(3, len(panels)) or 1
    nrows = max(1, -(-len(panels) // ncols))
    with matplotlib.rc_context({"svg.hashsalt": "lamp-harness", "svg.fonttype": "none"}):
        fig = Figure(figsize=(5.0 * ncols, 3.6 * nrows + 0.4 * (len(columns) // 2 + 1)), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False)
        colors = matplotlib.colormaps["tab20"]
        handles: dict[str, Any] = {}
        for ax, (block, metric, rows) in zip(axes.flat, panels, strict=False):
            present = [
                c for c in columns if c in block.columns and any(r.values[block.columns.index(c)] is not None for r in rows)
            ]
            width = 0.8 / max(1, len(present))
            for j, column in enumerate(present):
                index = block.columns.index(column)
                errs: list[list[float]]
                xs, ys, errs = [], [], [[], []]
                for i, row in enumerate(rows):
                    v = row.values[index]
                    if v is None:
                        continue
                    xs.append(i - 0.4 + width * (j + 0.5))
                    ys.append(v.value)
                    errs[0].append(v.value - v.ci_low if v.ci_low is not None else 0.0)
                    errs[1].append(v.ci_high - v.value if v.ci_high is not None else 0.0)
                bars = ax.bar(
                    xs,
                    ys,
                    width,
                    color=colors(columns.index(column) % 20),
                    hatch="//" if column.kind == "reference" else None,
                    yerr=errs if any(errs[0] + errs[1]) else None,
                    capsize=2,
                    edgecolor="black",
                    linewidth=0.4,
                    label=_plain(column.label),
                )
                handles.setdefault(_plain(column.label), bars)
            ax.set_xticks(range(len(rows)), [_plain(r.task) for r in rows])
            ax.set_title(_plain(f"{metric} {arrow(rows[0].higher_is_better)} ({block.title})"), fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="outside lower center",
            ncols=min(3, max(1, len(handles))),
            fontsize=8,
            frameon=False,
        )
        buffer = io.BytesIO()
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(buffer, format=fmt, metadata=metadata, dpi=120)
    return buffer.getvalue()
