"""What a leaderboard says beyond its numbers: paired tests against a baseline column, breakdowns by
profile size or user, and a mean win rate per column.

Everything is computed from the cells' per-example scores (:mod:`lamp_harness.report.scores`), so the
same statistic that produced a value is recomputed on every trial, resample and group. Nothing here
knows a concrete task, metric or method: the baseline is chosen by the user (``--baseline``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from lamp_harness.base.errors import lamp_error
from lamp_harness.report import significance as sig
from lamp_harness.report.leaderboard.model import (
    PLACES,
    Block,
    Breakdown,
    BreakdownRow,
    Bucket,
    Cell,
    Leaderboard,
    Significance,
    Summary,
    Value,
    WinRate,
    natural_key,
)
from lamp_harness.report.scores import CellScores, cell_scores

BREAKDOWNS = ("profile-size", "user")


def _norm(text: Any) -> str:
    return str(text).strip().lower().replace("_", "-")


class ScoreBook:
    """Per-example scores of the board's cells, loaded once each; remembers why some are missing."""

    def __init__(self, cells: Sequence[Cell]) -> None:
        self._cells = {c.cell_id: c for c in cells}
        self._scores: dict[str, CellScores | None] = {}
        self.missing: dict[str, str] = {}
        self.recomputed: dict[str, str] = {}

    def cell(self, cell_id: str) -> Cell | None:
        """The board's cell with this id."""
        return self._cells.get(cell_id)

    def get(self, cell_id: str) -> CellScores | None:
        """The cell's per-example scores (loaded or rescored once), ``None`` when unavailable."""
        if cell_id not in self._scores:
            cell = self._cells.get(cell_id)
            scores, reason = cell_scores(cell.dir, cell.record, cell.metrics) if cell else (None, "unknown cell")
            self._scores[cell_id] = scores
            if scores is None:
                self.missing[cell_id] = reason or "no per-example scores"
            elif reason:
                self.recomputed[cell_id] = reason
        return self._scores[cell_id]

    def notes(self) -> list[str]:
        """One line per cell without per-example scores, naming its folder and why."""
        return [
            f"{self._cells[c].dir if c in self._cells else c}: no per-example scores, so no paired test or "
            f"breakdown for this cell ({reason})"
            for c, reason in sorted(self.missing.items())
        ] + [f"{self._cells[c].dir if c in self._cells else c}: {reason}" for c, reason in sorted(self.recomputed.items())]


# ---------------------------------------------------------------------------------------------
# The baseline column
# ---------------------------------------------------------------------------------------------


def _personalizer(cell: Cell) -> str:
    value = cell.record.personalizer
    return _norm(value.get("name") if isinstance(value, Mapping) else value)


def baseline_column(board: Leaderboard, block: Block, selector: str) -> int | None:
    """The index of the column ``selector`` names in ``block``: a column label, a personalizer name
    (``none``), or a cell-id prefix, in that order of preference. ``None`` when nothing matches;
    a one-line error when a personalizer name matches several columns."""
    wanted = _norm(selector)
    labels = [c.label for c in block.columns]
    runs = [i for i, c in enumerate(block.columns) if c.kind == "run"]
    exact = [i for i in runs if _norm(labels[i]) == wanted]
    if exact:
        return exact[0]
    members = [c for c in board.cells if c.block == block.key]
    named = sorted({labels.index(c.label) for c in members if _personalizer(c) == wanted and c.label in labels})
    if len(named) > 1:  # prefer the plain method over its variants (pplug over pplug[aggregation=mean])
        plain = [i for i in named if _norm(labels[i].split(" / ")[0]) == wanted]
        named = plain if len(plain) == 1 else named
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise lamp_error(
            f"--baseline {selector!r} matches {len(named)} columns in the table '{block.title}': "
            + "; ".join(labels[i] for i in named),
            fix=f"Pass one column's full label or a cell-id prefix, e.g. --baseline '{labels[named[0]]}'.",
        )
    prefixed = sorted({labels.index(c.label) for c in members if _norm(c.cell_id).startswith(wanted) and c.label in labels})
    if len(prefixed) > 1:
        raise lamp_error(
            f"--baseline {selector!r} is the start of the cell ids of {len(prefixed)} columns in the table "
            f"'{block.title}': " + "; ".join(labels[i] for i in prefixed),
            fix="Pass a longer cell-id prefix (see `ls` of the runs folder) or a column's full label.",
        )
    return prefixed[0] if prefixed else None


# ---------------------------------------------------------------------------------------------
# Paired tests
# ---------------------------------------------------------------------------------------------


def with_significance(
    board: Leaderboard,
    baseline: str,
    *,
    test: str = "ar",
    trials: int | None = None,
    correction: str = "holm",
    seed: int = 0,
    book: ScoreBook | None = None,
) -> Leaderboard:
    """``board`` with every run column of every row tested against the baseline column (per task
    and metric, on the examples both cells scored), corrected across the columns of the row."""
    sig.check_test(test)
    sig.check_correction(correction)
    trials = trials or sig.DEFAULT_TRIALS[test]
    book = book or ScoreBook(board.cells)
    blocks, notes, small = [], list(board.notes), []
    for block in board.blocks:
        index = baseline_column(board, block, baseline)
        if index is None:
            notes.append(f"table '{block.title}': no column matches --baseline {baseline!r}; no tests there")
            blocks.append(block)
            continue
        rows = []
        for row in block.rows:
            base = row.values[index]
            base_scores = book.get(base.cell_id) if base is not None and base.cell_id else None
            base_metric = base_scores.metric(row.metric) if base_scores else None
            results: dict[int, sig.PairedResult] = {}
            for j, (column, value) in enumerate(zip(block.columns, row.values, strict=True)):
                if j == index or column.kind != "run" or value is None or base_metric is None:
                    continue
                scores = book.get(value.cell_id)
                metric = scores.metric(row.metric) if scores else None
                if metric is None:
                    continue
                if metric.statistic != base_metric.statistic:  # computed another way: not comparable
                    notes.append(
                        f"table '{block.title}', {row.task} {row.metric}: {column.label} is a "
                        f"{metric.statistic} statistic and the baseline a {base_metric.statistic} one; "
                        "no test between them"
                    )
                    continue
                result = sig.paired_test(base_metric, metric, test=test, trials=trials, seed=seed)
                if result.n:
                    results[j] = result
                    if result.n < sig.SMALL_N:
                        small.append((block.title, row.task, result.n))
            adjusted = sig.correct([r.p_value for r in results.values()], correction)
            values = list(row.values)
            for (j, result), p_adjusted in zip(results.items(), adjusted, strict=True):
                tested = values[j]
                assert tested is not None  # a test ran only against a value
                values[j] = replace(
                    tested,
                    p_value=result.p_value,
                    p_adjusted=p_adjusted,
                    significant=p_adjusted < sig.ALPHA,
                    n_paired=result.n,
                    delta=result.delta,
                )
            rows.append(replace(row, values=tuple(values)))
        blocks.append(replace(block, rows=tuple(rows), baseline=index))
    if all(b.baseline is None for b in blocks):
        labels = sorted({c.label for b in board.blocks for c in b.columns if c.kind == "run"}, key=natural_key)
        raise lamp_error(
            f"no column matches --baseline {baseline!r}",
            where="--baseline",
            fix=f"Use a personalizer name (e.g. none), a cell-id prefix or a column label: {'; '.join(labels)}.",
        )
    for title in dict.fromkeys(t for t, _, _ in small):
        tasks = sorted({(task, n) for t, task, n in small if t == title}, key=lambda x: natural_key(x[0]))
        shown = ", ".join(f"{task}: n={n}" for task, n in dict(tasks).items())
        notes.append(
            f"table '{title}': paired tests on fewer than {sig.SMALL_N} shared examples ({shown}); "
            "so few examples can only show very large differences, and the p-values are coarse"
        )
    notes.extend(book.notes())
    info = Significance(baseline, test, trials, correction, seed, sig.ALPHA)
    return replace(board, blocks=tuple(blocks), notes=tuple(dict.fromkeys(notes)), significance=info)


# ---------------------------------------------------------------------------------------------
# Breakdowns
# ---------------------------------------------------------------------------------------------


def check_breakdown(by: str) -> str:
    """``by`` when it names a breakdown, else a one-line error listing them."""
    if by not in BREAKDOWNS:
        raise lamp_error(f"unknown breakdown {by!r}", where="--by", fix="Use profile-size or user.")
    return by


def _bucket_value(scores: CellScores, metric: str, ids: set[str]) -> Value | None:
    import numpy as np

    from lamp_harness.inputs.metrics import combine

    entry = scores.metric(metric)
    if entry is None:
        return None
    mask = np.array([i in ids for i in entry.ids])
    n = int(mask.sum())
    if not n:
        return None
    rows = np.asarray(entry.rows)[mask]
    return Value(float(combine(entry.statistic, rows.sum(axis=0), n)), n=n)


def _quartile_buckets(sizes: Mapping[str, int]) -> list[tuple[str, set[str]]]:
    """Examples grouped by profile-size quartile (groups that ties leave empty are dropped)."""
    import numpy as np

    values = np.array(list(sizes.values()))
    edges = np.quantile(values, [0.25, 0.5, 0.75])
    groups: list[set[str]] = [set(), set(), set(), set()]
    for example_id, size in sizes.items():
        groups[int(np.searchsorted(edges, size, side="left"))].add(example_id)
    buckets = []
    for q, group in enumerate(groups, 1):
        if group:
            low, high = min(sizes[i] for i in group), max(sizes[i] for i in group)
            span = f"{low}" if low == high else f"{low}–{high}"
            buckets.append((f"Q{q}: {span} items", group))
    return buckets


def breakdowns(board: Leaderboard, by: str, *, book: ScoreBook | None = None) -> tuple[list[Breakdown], list[str]]:
    """Each block's metrics per group of examples: quartiles of the asking user's profile size
    (``profile-size``) or per user (``user``: the mean over users of each user's metric, and how
    many users each column serves better or worse than the baseline). Returns the breakdowns and
    notes about what could not be broken down."""
    import numpy as np

    from lamp_harness.inputs.metrics import combine

    check_breakdown(by)
    book = book or ScoreBook(board.cells)
    results, notes = [], []
    for block in board.blocks:
        runs = [i for i, c in enumerate(block.columns) if c.kind == "run"]
        columns = tuple(block.columns[i].label for i in runs)
        rows = []
        for row in block.rows:
            cells = [row.values[i] for i in runs]
            scored = [book.get(v.cell_id) if v is not None and v.cell_id else None for v in cells]
            if by == "profile-size":
                sizes: dict[str, int] = {}
                for s in scored:
                    if s is not None and s.profile_size is not None:
                        sizes.update(zip(s.ids, s.profile_size, strict=True))
                if not sizes:
                    continue
                buckets = [
                    Bucket(label, tuple(_bucket_value(s, row.metric, ids) if s else None for s in scored))
                    for label, ids in _quartile_buckets(sizes)
                ]
            else:
                users = [dict(zip(s.ids, s.user, strict=True)) if s is not None and s.user else None for s in scored]
                if not any(users):
                    continue
                per_user: list[dict[str, float] | None] = []
                for s, owner in zip(scored, users, strict=True):
                    entry = s.metric(row.metric) if s is not None and owner else None
                    if entry is None or owner is None:
                        per_user.append(None)
                        continue
                    groups: dict[str, list[int]] = {}
                    for k, example_id in enumerate(entry.ids):
                        groups.setdefault(owner[example_id], []).append(k)
                    array = np.asarray(entry.rows)
                    per_user.append(
                        {u: float(combine(entry.statistic, array[ks].sum(axis=0), len(ks))) for u, ks in groups.items()}
                    )
                base = runs.index(block.baseline) if block.baseline in runs else None
                values: list[Value | None] = []
                details: list[str] = []
                for j, means in enumerate(per_user):
                    if means is None:
                        values.append(None)
                        details.append("")
                        continue
                    values.append(Value(sum(means.values()) / len(means), n=len(means)))
                    other = per_user[base] if base is not None and j != base else None
                    if other:
                        shared = [u for u in means if u in other]
                        sign = 1 if row.higher_is_better else -1
                        better = sum(sign * (means[u] - other[u]) > 1e-12 for u in shared)
                        worse = sum(sign * (other[u] - means[u]) > 1e-12 for u in shared)
                        details.append(f"{better}↑ {worse}↓ of {len(shared)} users")
                    else:
                        details.append("")
                buckets = [Bucket("mean over users", tuple(values), tuple(details))]
            rows.append(BreakdownRow(row.task, row.metric, row.higher_is_better, tuple(buckets)))
        if rows:
            results.append(Breakdown(by, block.title, columns, tuple(rows)))
        elif by == "user":
            notes.append(
                f"table '{block.title}': --by user needs user ids, and these cells' examples carry none "
                "(profile items without ids of their own)"
            )
        else:
            notes.append(f"table '{block.title}': no per-example scores with profile sizes; no breakdown")
    return results, notes


# ---------------------------------------------------------------------------------------------
# Mean win rate
# ---------------------------------------------------------------------------------------------


def win_rates(board: Leaderboard) -> list[Summary]:
    """Per block, each run column's mean win rate (HELM): in every row (task x metric), the share
    of the other columns with a value that it beats (direction-aware; a tie at the printed
    precision counts one half), averaged over the rows where it met at least one other column."""
    summaries = []
    for block in board.blocks:
        runs = [i for i, c in enumerate(block.columns) if c.kind == "run"]
        totals: dict[int, list[float]] = {i: [] for i in runs}
        for row in block.rows:
            present = [i for i in runs if row.values[i] is not None]
            for i in present:
                others = [j for j in present if j != i]
                if not others:
                    continue
                mine = round(row.values[i].value, PLACES)  # type: ignore[union-attr]
                score = 0.0
                for j in others:
                    theirs = round(row.values[j].value, PLACES)  # type: ignore[union-attr]
                    better = mine > theirs if row.higher_is_better else mine < theirs
                    score += 1.0 if better else 0.5 if math.isclose(mine, theirs) else 0.0
                totals[i].append(score / len(others))
        rates = [WinRate(block.columns[i].label, sum(t) / len(t), len(t)) for i, t in totals.items() if t]
        rates.sort(key=lambda r: (-r.win_rate, natural_key(r.column)))
        summaries.append(Summary(block.title, tuple(rates)))
    return summaries


def compare(
    board: Leaderboard,
    *,
    baseline: str | None = None,
    test: str = "ar",
    trials: int | None = None,
    correction: str = "holm",
    seed: int = 0,
    by: Sequence[str] = (),
    summary: bool = False,
) -> Leaderboard:
    """``board`` with what was asked for: paired tests against ``baseline``, breakdowns ``by``
    profile size or user, and the mean win rate (``summary``). Per-example scores are loaded once."""
    book = ScoreBook(board.cells)
    if baseline:
        board = with_significance(board, baseline, test=test, trials=trials, correction=correction, seed=seed, book=book)
    found: list[Breakdown] = []
    notes = list(board.notes)
    for name in dict.fromkeys(by):
        results, more = breakdowns(board, name, book=book)
        found += results
        notes += more
    notes += book.notes()
    return replace(
        board,
        breakdowns=tuple(found),
        summaries=tuple(win_rates(board)) if summary else (),
        notes=tuple(dict.fromkeys(notes)),
    )
