"""Tie order of rankings: numpy 1.24.2's ``argsort`` (the official LaMP environment), on any machine."""

from __future__ import annotations

import random

import numpy as np
import pytest
from lamp_plugins.bm25 import BM25Retriever
from lamp_plugins.ordering import ALGORITHM, argsort_numpy124, official_descending

from lamp_harness.plugin.contracts import ProfileItem, RankQuery

# ``np.argsort(values)[::-1].tolist()`` recorded under numpy 1.24.2 (the official LaMP pin).
GOLDEN = {
    "zeros17": ([0.0] * 17, [16, 7, 1, 2, 3, 4, 5, 6, 8, 15, 9, 10, 11, 12, 13, 14, 0]),
    "zeros40": (
        [0.0] * 40,
        [
            39,
            38,
            17,
            16,
            15,
            14,
            13,
            12,
            11,
            10,
            9,
            8,
            7,
            6,
            5,
            4,
            3,
            2,
            1,
            18,
            19,
            20,
            30,
            37,
            36,
            35,
            34,
            33,
            32,
            31,
            29,
            21,
            28,
            27,
            26,
            25,
            24,
            23,
            22,
            0,
        ],
    ),
    "mod3_33": (
        [float(i % 3) for i in range(33)],
        [
            32,
            14,
            29,
            2,
            26,
            5,
            23,
            8,
            20,
            11,
            17,
            1,
            4,
            7,
            10,
            13,
            16,
            31,
            19,
            22,
            25,
            28,
            15,
            18,
            12,
            21,
            9,
            24,
            6,
            27,
            3,
            30,
            0,
        ],
    ),
    "lcg64": (
        [float((i * 7919 + 13) % 5) for i in range(64)],
        [
            14,
            54,
            34,
            24,
            39,
            19,
            44,
            49,
            9,
            29,
            4,
            59,
            5,
            35,
            25,
            60,
            40,
            20,
            10,
            55,
            45,
            15,
            30,
            50,
            0,
            16,
            21,
            6,
            26,
            11,
            1,
            31,
            61,
            36,
            56,
            51,
            41,
            46,
            62,
            17,
            2,
            57,
            7,
            52,
            12,
            32,
            47,
            37,
            42,
            22,
            27,
            18,
            33,
            28,
            3,
            58,
            8,
            38,
            43,
            53,
            23,
            13,
            48,
            63,
        ],
    ),
    "halfzero_25": (
        [0.0 if i % 2 else float(i) for i in range(25)],
        [24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 7, 1, 3, 5, 17, 19, 9, 11, 23, 13, 21, 15, 0],
    ),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_many_tied_scores_rank_as_numpy_1_24_did(name):
    values, expected = GOLDEN[name]
    assert list(official_descending(values)) == expected
    assert list(reversed(argsort_numpy124(values))) == expected


# A median-of-three killer (McIlroy's adversary run against this transcription, then every score
# halved so that pairs tie): introsort exhausts its depth and heapsorts a range. ``np.argsort``
# (ascending) recorded under numpy 1.24.2.
HEAP_VALUES = [
    0,
    13,
    1,
    13,
    2,
    14,
    3,
    14,
    4,
    15,
    5,
    15,
    6,
    16,
    7,
    16,
    8,
    17,
    9,
    17,
    10,
    18,
    11,
    18,
    12,
    19,
    19,
    20,
    20,
    21,
    21,
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    22,
    22,
    23,
    23,
    24,
    24,
    25,
    25,
    26,
    26,
    27,
    27,
    28,
    28,
    29,
    29,
    30,
    30,
    31,
    31,
]
HEAP_ORDER = [
    0,
    31,
    2,
    32,
    4,
    33,
    6,
    34,
    8,
    35,
    10,
    36,
    12,
    37,
    14,
    38,
    16,
    39,
    18,
    40,
    20,
    41,
    22,
    42,
    24,
    43,
    1,
    3,
    5,
    7,
    11,
    9,
    13,
    15,
    17,
    19,
    23,
    21,
    26,
    25,
    28,
    27,
    30,
    29,
    45,
    44,
    47,
    46,
    49,
    48,
    51,
    50,
    53,
    52,
    55,
    54,
    56,
    57,
    59,
    58,
    61,
    60,
    62,
    63,
]


def test_the_heapsort_fallback_orders_ties_as_numpy_1_24_did(monkeypatch):
    from lamp_plugins import ordering

    calls = []
    heapsort = ordering._heapsort
    monkeypatch.setattr(ordering, "_heapsort", lambda *args: calls.append(args) or heapsort(*args))
    assert argsort_numpy124([float(x) for x in HEAP_VALUES]) == HEAP_ORDER
    assert calls, "the input no longer reaches the heapsort fallback"


def test_small_profiles_put_the_later_tied_item_first():
    # At most 16 items: numpy 1.24 insertion-sorts (stable), so the reversed order puts later
    # items of a tie first.
    values = [1.0, 0.0, 1.0, 0.0, 2.0, 1.0]
    assert official_descending(values) == (4, 5, 2, 0, 3, 1)


def test_the_order_is_always_a_correct_sort():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 120)
        values = [float(rng.randint(0, 3)) for _ in range(n)]
        order = argsort_numpy124(values)
        assert sorted(order) == list(range(n))
        assert [values[i] for i in order] == sorted(values)


def test_untied_scores_give_the_plain_descending_order():
    scores = np.array([0.3, 2.5, -1.0, 0.7])
    assert official_descending(scores) == (1, 3, 0, 2)


def test_bm25_ranks_many_tied_items_in_the_official_order():
    # 20 identical documents and one match: ties broken as rank_bm25 0.2.2's get_top_n breaks
    # them under numpy 1.24.2 (recorded there).
    documents = ("alpha beta",) * 20 + ("gamma delta",)
    items = tuple(ProfileItem(str(i), i, {"text": d}) for i, d in enumerate(documents))
    [ranking] = BM25Retriever().rank([RankQuery("q", "gamma", documents, items)])
    assert list(ranking) == [20, 9, 1, 2, 3, 4, 5, 6, 7, 8, 10, 19, 11, 12, 13, 14, 15, 16, 17, 18, 0]


def test_the_ranking_cache_key_names_the_tie_order():
    key = BM25Retriever().cache_key()
    assert key["order"] == ALGORITHM and key["version"] >= 2
