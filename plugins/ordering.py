"""Machine-independent ranking orders: numpy 1.24's ``argsort``, transcribed in pure code.

The official LaMP BM25 ranks with ``np.argsort(scores)[::-1]`` under numpy 1.24.2. That call's
default ``quicksort`` is an introsort: partitions with a median-of-three pivot while a range has
more than 16 elements, sorts ranges of at most 16 elements by insertion sort, and falls back to
heapsort after ``2 * floor(log2(n))`` levels. Which of several tied scores comes first depends on
those steps. numpy >= 1.25 on AVX-512 CPUs, and numpy >= 2 on AVX2 ones, dispatch the same call to
SIMD sorting networks that order ties differently, so calling ``np.argsort`` today gives rankings
that depend on the numpy version and on the CPU.

:func:`argsort_numpy124` reproduces numpy 1.24's steps exactly (``aquicksort_`` and ``aheapsort_``
of ``numpy/core/src/npysort/quicksort.cpp`` and ``heapsort.cpp``, float comparison with NaN
last), so a ranking is the official pinned environment's on every machine. Only ties need it:
:func:`official_descending` uses a plain stable sort when all scores differ (any correct sort
gives the same order then) and the transcription otherwise.

``ALGORITHM`` names this order; retrievers put it in their ranking-cache key, so rankings cached
under an older order are never reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ALGORITHM = "numpy-1.24-introsort"
SMALL_QUICKSORT = 15
"""numpy's threshold: ranges with ``hi - lo > 15`` (more than 16 elements) are partitioned."""


def _less(a: float, b: float) -> bool:
    """numpy's ``Tag::less`` for floats: NaN sorts after every number."""
    return a < b or (b != b and a == a)


def argsort_numpy124(values: Sequence[float]) -> list[int]:
    """``np.argsort(values)`` (kind ``quicksort``) exactly as numpy 1.24.2 orders it, ties included."""
    v = [float(x) for x in values]
    n = len(v)
    order = list(range(n))
    if n < 2:
        return order
    stack: list[tuple[int, int, int]] = []
    lo, hi = 0, n - 1
    depth = (n.bit_length() - 1) * 2  # npy_get_msb(n) * 2
    while True:
        if depth < 0:
            _heapsort(v, order, lo, hi - lo + 1)
        else:
            while hi - lo > SMALL_QUICKSORT:
                mid = lo + ((hi - lo) >> 1)
                if _less(v[order[mid]], v[order[lo]]):
                    order[mid], order[lo] = order[lo], order[mid]
                if _less(v[order[hi]], v[order[mid]]):
                    order[hi], order[mid] = order[mid], order[hi]
                if _less(v[order[mid]], v[order[lo]]):
                    order[mid], order[lo] = order[lo], order[mid]
                pivot = v[order[mid]]
                i, j = lo, hi - 1
                order[mid], order[j] = order[j], order[mid]
                while True:
                    i += 1
                    while _less(v[order[i]], pivot):
                        i += 1
                    j -= 1
                    while _less(pivot, v[order[j]]):
                        j -= 1
                    if i >= j:
                        break
                    order[i], order[j] = order[j], order[i]
                k = hi - 1
                order[i], order[k] = order[k], order[i]
                # The larger part waits on the stack; the loop goes on with the smaller one.
                depth -= 1
                if i - lo < hi - i:
                    stack.append((i + 1, hi, depth))
                    hi = i - 1
                else:
                    stack.append((lo, i - 1, depth))
                    lo = i + 1
            for i in range(lo + 1, hi + 1):  # insertion sort: stable within a small range
                item = order[i]
                value = v[item]
                j = i
                while j > lo and _less(value, v[order[j - 1]]):
                    order[j] = order[j - 1]
                    j -= 1
                order[j] = item
        if not stack:
            return order
        lo, hi, depth = stack.pop()


def _heapsort(v: list[float], order: list[int], start: int, n: int) -> None:
    """numpy's ``aheapsort_`` on ``order[start:start + n]`` (1-based heap indexing)."""

    def get(i: int) -> int:
        return order[start + i - 1]

    def put(i: int, value: int) -> None:
        order[start + i - 1] = value

    def sift_down(tmp: int, i: int, n: int) -> None:
        """Move ``tmp`` down from heap slot ``i`` of a heap of ``n``."""
        j = i << 1
        while j <= n:
            if j < n and _less(v[get(j)], v[get(j + 1)]):
                j += 1
            if _less(v[tmp], v[get(j)]):
                put(i, get(j))
                i = j
                j += j
            else:
                break
        put(i, tmp)

    for top in range(n >> 1, 0, -1):
        sift_down(get(top), top, n)
    while n > 1:
        tmp = get(n)
        put(n, get(1))
        n -= 1
        sift_down(tmp, 1, n)


def official_descending(scores: Any) -> tuple[int, ...]:
    """``np.argsort(scores)[::-1]`` under numpy 1.24.2: best first, machine-independent."""
    import numpy as np

    array = np.asarray(scores, dtype=np.float64)
    if len(np.unique(array)) == len(array) and not np.isnan(array).any():
        return tuple(np.argsort(array, kind="stable")[::-1].tolist())  # no ties: any sort agrees
    return tuple(reversed(argsort_numpy124(array.tolist())))
