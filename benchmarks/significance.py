"""Significance benchmark: how long one paired test takes at the sizes the leaderboard meets.

Prints seconds per pair (best of ``--repeats``) for approximate randomization (10,000 trials) and
the paired bootstrap (1,000 resamples) over ``--examples`` examples, for a mean metric (ROUGE,
accuracy, MAE: one column per example), RMSE, and macro-F1 over 15 labels (45 confusion-count
columns per example, recomputed on every trial), and the p-values, so a run can be compared with
another machine's.

Usage: ``python benchmarks/significance.py [--examples 2500] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lamp_harness import metrics
from lamp_harness.report import significance as sig


def pairs(n: int) -> dict[str, tuple[object, object]]:
    rng = np.random.default_rng(0)
    a = rng.random(n)
    b = np.clip(a + rng.normal(0.01, 0.2, n), 0, 1)
    gold = rng.integers(1, 6, n).astype(float)
    labels = [f"tag{i}" for i in range(15)]
    gold_l = [labels[i] for i in rng.integers(0, 15, n)]
    pred_a = [g if rng.random() < 0.5 else labels[rng.integers(0, 15)] for g in gold_l]
    pred_b = [g if rng.random() < 0.52 else labels[rng.integers(0, 15)] for g in gold_l]
    return {
        "mean (ROUGE-like)": (
            metrics.example_scores("m", a, statistic="mean", higher_is_better=True),
            metrics.example_scores("m", b, statistic="mean", higher_is_better=True),
        ),
        "RMSE": (
            metrics.squared_error_scores(list(np.clip(gold + rng.integers(-1, 2, n), 1, 5)), list(gold)),
            metrics.squared_error_scores(list(np.clip(gold + rng.integers(-1, 2, n), 1, 5)), list(gold)),
        ),
        "macro-F1, 15 labels": (
            metrics.macro_f1_scores(pred_a, gold_l, labels),
            metrics.macro_f1_scores(pred_b, gold_l, labels),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.examples} paired examples, best of {args.repeats}")
    for name, (a, b) in pairs(args.examples).items():
        for test in sig.TESTS:
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                result = sig.paired_test(a, b, test=test)
                times.append(time.perf_counter() - start)
            print(f"  {name:22s} {test:9s} {result.trials:6d} trials: {min(times):6.3f} s/pair  p = {result.p_value:.4f}")


if __name__ == "__main__":
    main()
