"""Paired significance tests between two cells on the examples they share, and Holm's correction.

Both tests follow the procedures the field uses for corpus-level metrics (Koehn 2004; Riezler and
Maxwell 2005; as in sacrebleu): the metric is recomputed from per-example sufficient statistics on
every trial, so macro-F1 and RMSE are tested as the corpus-level statistics they are, and
accuracy, MAE and ROUGE as means.

- **Approximate randomization** (default, 10,000 trials): under the null hypothesis the two
  systems' outputs are exchangeable per example; each trial swaps every example's pair with
  probability 1/2 and recomputes the absolute difference. ``p = (c + 1) / (trials + 1)``, with
  ``c`` the trials whose difference is at least the observed one.
- **Paired bootstrap** (1,000 resamples): the examples are resampled with replacement and the
  difference recomputed; the resampled differences, centred on their mean, stand for the null
  distribution, and ``c`` counts those at least as far from 0 as the observed difference.

Counting "at least as large" (not "larger") makes a system compared with itself get ``p = 1``.
Every trial is drawn at once per chunk from ``numpy.random.default_rng(seed)``: 10,000 trials
over 2,500 examples take well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lamp_harness.base.errors import lamp_error
from lamp_harness.plugin.contracts import ExampleScores

if TYPE_CHECKING:
    import numpy as np

TESTS = ("ar", "bootstrap")
TEST_NAMES = {"ar": "paired approximate randomization", "bootstrap": "paired bootstrap"}
DEFAULT_TRIALS = {"ar": 10_000, "bootstrap": 1_000}
CORRECTIONS = ("holm", "none")
ALPHA = 0.05
SMALL_N = 30
"""Below this many shared examples a paired test is reported with a warning: its p-values are
coarse and it can rarely detect anything but very large differences."""
_CHUNK = 1_000
_TOLERANCE = 1e-9  # differences equal up to rounding count as "at least as large"


@dataclass(frozen=True)
class PairedResult:
    """One paired test of ``system`` against ``baseline``."""

    p_value: float
    delta: float
    """The system's value minus the baseline's, both on the shared examples."""
    n: int
    """Examples both cells scored."""
    test: str
    trials: int


def check_test(test: str) -> str:
    """``test`` when it names a test (``ar``, ``bootstrap``), else a one-line error."""
    if test not in TESTS:
        raise lamp_error(
            f"unknown test {test!r}", where="--test", fix="Use ar (approximate randomization, the default) or bootstrap."
        )
    return test


def check_correction(correction: str) -> str:
    """``correction`` when known (``holm``, ``none``), else a one-line error."""
    if correction not in CORRECTIONS:
        raise lamp_error(f"unknown correction {correction!r}", where="--correction", fix="Use holm or none.")
    return correction


def shared_rows(baseline: ExampleScores, system: ExampleScores) -> tuple[np.ndarray, np.ndarray]:
    """Both cells' rows on the ids they share, in the baseline's order."""
    import numpy as np

    position = {i: k for k, i in enumerate(system.ids)}
    keep = [k for k, i in enumerate(baseline.ids) if i in position]
    a = np.asarray(baseline.rows, dtype=np.float64)[keep]
    b = np.asarray(system.rows, dtype=np.float64)[[position[baseline.ids[k]] for k in keep]]
    return a, b


def paired_test(
    baseline: ExampleScores, system: ExampleScores, *, test: str = "ar", trials: int | None = None, seed: int = 0
) -> PairedResult:
    """Test whether ``system`` differs from ``baseline`` on the examples both scored (two-sided)."""
    import numpy as np

    from lamp_harness.inputs.metrics import combine, resample_counts

    check_test(test)
    if baseline.statistic != system.statistic:
        raise ValueError(f"cannot pair {baseline.statistic!r} with {system.statistic!r} statistics")
    trials = trials or DEFAULT_TRIALS[test]
    a, b = shared_rows(baseline, system)
    n = len(a)
    if n == 0:
        return PairedResult(float("nan"), float("nan"), 0, test, trials)
    statistic = baseline.statistic
    total_a, total_b = a.sum(axis=0), b.sum(axis=0)
    delta = float(combine(statistic, total_b, n) - combine(statistic, total_a, n))
    observed = abs(delta) - _TOLERANCE
    rng = np.random.default_rng(seed)
    hits = 0
    if test == "ar":
        # float32 halves the work; it is exact for integer rows (counts, 0/1) and off by far less
        # than the tolerance for real-valued ones.
        difference = (b - a).astype(np.float32)
        width = (n + 7) // 8
        for start in range(0, trials, _CHUNK):
            size = min(_CHUNK, trials - start)
            # One random bit per example and trial: 1 swaps the pair.
            bits = np.frombuffer(rng.bytes(size * width), dtype=np.uint8).reshape(size, width)
            swaps = np.unpackbits(bits, axis=1, count=n).astype(np.float32)
            moved = (swaps @ difference).astype(np.float64)
            shuffled = combine(statistic, total_b - moved, n) - combine(statistic, total_a + moved, n)
            hits += int(np.count_nonzero(np.abs(shuffled) >= observed))
    else:
        counts = resample_counts(n, seed=seed, resamples=trials).astype(np.float64)
        differences = combine(statistic, counts @ b, n) - combine(statistic, counts @ a, n)
        hits = int(np.count_nonzero(np.abs(differences - differences.mean()) >= observed))
    return PairedResult((hits + 1) / (trials + 1), delta, n, test, trials)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order;
    NaN entries (no test) are left out of the family and stay NaN."""
    import math

    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(tested)
    adjusted = [float("nan")] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def correct(p_values: Sequence[float], correction: str) -> list[float]:
    """``p_values`` adjusted for multiple comparisons (``holm``) or unchanged (``none``)."""
    return holm(p_values) if check_correction(correction) == "holm" else list(p_values)
