"""The 95% interval of a paired difference of means between two cells, from their scores.json.

    python leaderboard/lamp7-finetuned/paired_ci.py BASELINE_CELL SYSTEM_CELL [--metric rouge-1]

Cells are folder names under this experiment's runs/ (or paths). The per-example scores of both
cells are paired by example id; the interval is the 2.5th and 97.5th percentiles of the mean of
(system - baseline) over 10,000 resamples of the paired examples with replacement (numpy's
default_rng, seed 0). Needs numpy (installed with lamp-harness).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def per_example(cell: str, metric: str) -> dict[str, float]:
    """``{example id: score}`` of ``metric`` in a cell's scores.json."""
    folder = Path(cell) if Path(cell).is_dir() else HERE / "runs" / cell
    scores = json.loads((folder / "scores.json").read_text(encoding="utf-8"))
    for entry in scores["metrics"]:
        if entry["name"].lower() == metric.lower():
            return {i: float(row[0]) for i, row in zip(scores["ids"], entry["rows"], strict=True)}
    raise SystemExit(f"{folder / 'scores.json'}: no metric {metric!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("baseline")
    parser.add_argument("system")
    parser.add_argument("--metric", default="rouge-1")
    parser.add_argument("--resamples", type=int, default=10_000)
    args = parser.parse_args()
    a, b = per_example(args.baseline, args.metric), per_example(args.system, args.metric)
    shared = sorted(a.keys() & b.keys())
    difference = np.array([b[i] - a[i] for i in shared])
    rng = np.random.default_rng(0)
    means = difference[rng.integers(0, len(shared), size=(args.resamples, len(shared)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    print(
        f"{args.metric}: system - baseline = {difference.mean():+.3f} over {len(shared)} paired examples, "
        f"95% interval [{low:+.3f}, {high:+.3f}]"
    )


if __name__ == "__main__":
    main()
