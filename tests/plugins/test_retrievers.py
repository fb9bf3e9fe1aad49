"""The built-in retrievers: official BM25 (hand-computed Okapi numbers, rank_bm25 agreement on real
LaMP-7 dev), recency, random, dense/contriever, argument validation and `lamp rank`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from lamp_plugins.bm25 import okapi_scores, ranking_from_scores

from lamp_harness.base.errors import LampError
from lamp_harness.plugin.contracts import ProfileItem, RankQuery, RunContext
from lamp_harness.plugin.registry import host
from lamp_harness.testing import check_retriever


def items(*texts: str, dates: tuple[str | None, ...] | None = None) -> tuple[ProfileItem, ...]:
    out = []
    for i, text in enumerate(texts):
        fields = {"text": text}
        if dates is not None and dates[i] is not None:
            fields["date"] = dates[i]
        out.append(ProfileItem(id=f"p{i}", position=i, fields=fields))
    return tuple(out)


def query(qid: str, text: str, profile: tuple[ProfileItem, ...]) -> RankQuery:
    return RankQuery(qid, text, tuple(p.get("text") for p in profile), profile)


def retriever(name: str, context: RunContext, **args: str):
    return host().registry.create("retriever", name, context, **args)


@pytest.fixture
def context(lamp_home: Path) -> RunContext:
    return RunContext(lamp_home=lamp_home, seed=0, device="cpu")


# -- BM25 ------------------------------------------------------------------------------------------


def test_bm25_scores_equal_hand_computed_okapi_with_negative_idf_and_ties() -> None:
    # N=5, avgdl=2. 'a' is in 4 of 5 items: idf ln(1.5/4.5) < 0, floored at 0.25 x mean idf.
    docs = ["a b", "a c", "a b", "d", "a e e"]
    ln = math.log
    idf_a, idf_b, idf_rare = ln(1.5) - ln(4.5), ln(3.5) - ln(2.5), ln(4.5) - ln(1.5)
    eps = 0.25 * (idf_a + idf_b + 3 * idf_rare) / 5  # terms a, b, c, d, e
    w_len2 = 2.5 / (1 + 1.5 * (0.25 + 0.75 * 2 / 2))  # tf 1 in a 2-token item: 1.0
    w_len3 = 2.5 / (1 + 1.5 * (0.25 + 0.75 * 3 / 2))
    expected = [eps * w_len2 + idf_b * w_len2, eps * w_len2, eps * w_len2 + idf_b * w_len2, 0.0, eps * w_len3]
    (scores,) = okapi_scores(["a b"], [docs])
    assert scores == pytest.approx(expected, rel=1e-12)
    assert eps == pytest.approx(0.12668484, rel=1e-6)
    # Items 0 and 2 tie: the later one comes first, as get_top_n's argsort()[::-1] orders them.
    assert ranking_from_scores(scores) == (2, 0, 1, 4, 3)


def test_bm25_repeated_query_tokens_count_again_and_unknown_tokens_count_zero() -> None:
    docs = ["x y", "y z", "q r"]
    once, twice, unknown = okapi_scores(["x", "x x", "nothing here"], [docs] * 3)
    assert twice == pytest.approx(2 * once)
    assert not unknown.any()


def test_bm25_equals_rank_bm25_on_unicode_whitespace_and_long_tokens() -> None:
    rank_bm25 = pytest.importorskip("rank_bm25")
    docs = [
        "caf\u00e9\u00a0au\u3000lait caf\u00e9",
        "tab\tsep\x1funit\x1crec new\nline",
        "averyveryverylongtokenwithmorethansixteenbytes short",
        "Same same SAME same",
        "nul\x00byte nul",
        "\U0001f600 emoji\u2003space",
        "",
        "   ",
        "exactly8 exactly8x",
    ]
    queries = [
        "caf\u00e9 lait same",
        "averyveryverylongtokenwithmorethansixteenbytes SAME",
        "nul\x00byte \U0001f600 exactly8",
        "sep unit rec line tab",
    ]
    ours = okapi_scores(queries, [docs] * len(queries))
    index = rank_bm25.BM25Okapi([d.split() for d in docs])
    for q, scores in zip(queries, ours, strict=True):
        assert np.array_equal(scores, index.get_scores(q.split()))


def test_bm25_hash_collisions_fall_back_to_exact_tokens() -> None:
    docs = [f"w{i} w{i * 7 % 13} common" for i in range(40)]
    queries = ["w1 w2 common", "w5 w9 w11"]
    exact = okapi_scores(queries, [docs, docs[:10]])
    forced = okapi_scores(queries, [docs, docs[:10]], hash_bits=2)  # 4 buckets: certain collisions
    assert all(np.array_equal(a, b) for a, b in zip(exact, forced, strict=True))


def test_bm25_empty_profile_empty_items_and_empty_query(context) -> None:
    bm25 = retriever("bm25", context)
    profile = items("", "  ")
    ranked = bm25.rank([query("e", "a b", ()), query("f", "a", profile), query("g", "", items("a", "b"))])
    assert ranked == [(), (1, 0), (1, 0)]


@pytest.mark.slow
def test_bm25_agrees_with_rank_bm25_on_real_lamp7_dev(shared_data: Path) -> None:
    rank_bm25 = pytest.importorskip("rank_bm25")
    questions = json.loads((shared_data / "LaMP-7" / "user" / "dev_questions.json").read_text())
    task = host().registry.create("task", "lamp-7")
    from lamp_harness.plugin.contracts import Example

    queries = []
    for q in questions:
        profile = tuple(ProfileItem(str(i), i, p) for i, p in enumerate(q["profile"]))
        example = Example(q["id"], q["input"], profile)
        queries.append(RankQuery(q["id"], task.query(example), tuple(map(task.document, profile)), profile))
    from lamp_plugins.bm25 import okapi_scores
    from lamp_plugins.ordering import official_descending

    ours = retriever("bm25", RunContext(lamp_home=Path("."))).rank(queries)
    scores = okapi_scores([q.query for q in queries], [q.documents for q in queries])
    same_scores = same_untied = untied = 0
    for rq, ranking, score in zip(queries, ours, scores, strict=True):
        index = rank_bm25.BM25Okapi([d.split() for d in rq.documents])
        official = index.get_scores(rq.query.split())
        same_scores += np.array_equal(official, score)  # bit for bit
        # The order is numpy 1.24.2's argsort (tie order tested in test_tie_order.py); without
        # ties every numpy agrees with it.
        assert ranking == official_descending(official)
        if len(set(official.tolist())) == len(official):
            untied += 1
            same_untied += list(ranking) == np.argsort(official)[::-1].tolist()
    assert len(queries) == 1500
    assert same_scores == 1500 and same_untied == untied > 0


def test_bm25_arguments_are_validated(context) -> None:
    with pytest.raises(LampError, match="Valid keys: b, epsilon, k1"):
        retriever("bm25", context, k=1)
    with pytest.raises(LampError, match="k1='high' is not a number"):
        retriever("bm25", context, k1="high")
    assert retriever("bm25", context, k1="1.2").cache_key()["k1"] == 1.2


# -- recency and random ------------------------------------------------------------------------


def test_recency_ranks_newest_first_across_date_formats(context) -> None:
    profile = items(
        "a", "b", "c", "d", "e", dates=("2011-03-14", "2012-01-01T08:00:00", "March 15, 2011", "2010", "2012-01-01")
    )
    (ranking,) = retriever("recency", context).rank([query("q", "", profile)])
    assert ranking == (1, 4, 2, 0, 3)


def test_recency_equal_dates_put_the_later_item_first(context) -> None:
    profile = items("a", "b", "c", dates=("2011-01-01", "2011-01-01", "2009-05-05"))
    assert retriever("recency", context).rank([query("q", "", profile)]) == [(1, 0, 2)]


def test_recency_without_dates_fails_in_one_line_naming_the_time_split(context) -> None:
    profile = items("a", "b", dates=("2011-01-01", None))
    with pytest.raises(LampError) as caught:
        retriever("recency", context).rank([query("q7", "", profile)])
    message = str(caught.value)
    assert "\n" not in message and "q7" in message and "'p1'" in message and "--scheme time" in message
    fallback = retriever("recency", context, fallback="profile-order")
    assert fallback.rank([query("q7", "", profile)]) == [(1, 0)]


def test_recency_unreadable_dates(context) -> None:
    iso_like = items("a", "b", dates=("2011-13-45", "2011-02-01"))  # not a real date, ISO-shaped
    assert retriever("recency", context).rank([query("q", "", iso_like)]) == [(0, 1)]
    with pytest.raises(LampError, match="unreadable date 'yesterday'"):
        retriever("recency", context).rank([query("q", "", items("a", "b", dates=("yesterday", "2011")))])
    with pytest.raises(LampError, match="fallback='newest' is not one of"):
        retriever("recency", context, fallback="newest")


def test_random_is_seeded_per_example_and_samples_without_replacement(context) -> None:
    profile = items(*[f"t{i}" for i in range(30)])
    first = retriever("random", context).rank([query("a", "", profile), query("b", "", profile)])
    alone = retriever("random", context).rank([query("b", "", profile)])
    assert first[1] == alone[0]  # independent of batching
    assert first[0] != first[1]  # depends on the example id
    assert all(sorted(r) == list(range(30)) for r in first)  # a permutation: no repeats
    other = retriever("random", context, seed="7").rank([query("a", "", profile)])
    assert other[0] != first[0]
    ctx_seed = RunContext(lamp_home=context.lamp_home, seed=7)
    assert retriever("random", ctx_seed).rank([query("a", "", profile)]) == other


# -- dense ---------------------------------------------------------------------------------------


def test_every_builtin_retriever_passes_the_conformance_kit(context) -> None:
    for name, args in (
        ("bm25", {}),
        ("random", {}),
        ("recency", {"fallback": "profile-order"}),
        ("contriever", {}),
        ("dense", {"model": "minilm", "pooling": "cls"}),
    ):
        check_retriever(retriever(name, context, **args))


@pytest.mark.slow
def test_contriever_ranks_by_meaning_and_matches_sentence_transformers(context) -> None:
    contriever = retriever("contriever", context)
    profile = items(
        "The stock market fell sharply today.", "My cat sleeps on the sofa all day.", "Kittens are playful little animals."
    )
    (ranking,) = contriever.rank([query("q", "I adore my pet cat", profile)])
    assert ranking[-1] == 0
    key = contriever.cache_key()
    assert key["encoder"]["pooling"] == "mean" and key["score"] == "dot"
    st = pytest.importorskip("sentence_transformers")
    from lamp_plugins.models import minilm_path

    reference = st.SentenceTransformer(str(minilm_path()), device="cpu").encode([p.get("text") for p in profile])
    ours = contriever.encoder.encode([p.get("text") for p in profile])
    assert np.allclose(ours, reference, atol=1e-5)


def test_dense_arguments(context) -> None:
    with pytest.raises(LampError, match="needs a model"):
        retriever("dense", context)
    with pytest.raises(LampError, match="pooling='max' is not one of mean, cls"):
        retriever("dense", context, model="minilm", pooling="max")
    with pytest.raises(LampError, match="Valid keys"):
        retriever("contriever", context, pooling="cls")
    dense = retriever("dense", context, model="bge", normalize="false", query_prefix="Q: ")
    encoder = dense.encoder
    assert (encoder.normalize, encoder.query_prefix) == (False, "Q: ")
    assert dense.cache_key()["query_prefix"] == "Q: "
    assert dense.cache_key() != retriever("dense", context, model="minilm").cache_key()


# -- lamp rank -------------------------------------------------------------------------------------


def test_lamp_rank_exports_ranked_profile_ids(tmp_path: Path, capsys) -> None:
    from lamp_harness.cli import main

    data = tmp_path / "data"
    data.mkdir()
    questions = [
        {
            "id": "610",
            "input": "Paraphrase the following tweet without any explanation before or after it: cats and dogs",
            "profile": [{"text": "cats purr"}, {"text": "stocks"}, {"text": "dogs and cats"}],
        },
        {
            "id": "611",
            "input": "Paraphrase the following tweet without any explanation before or after it: rain",
            "profile": [{"id": "x1", "text": "sun"}, {"id": "x2", "text": "rain"}],
        },
    ]
    (data / "dev_questions.json").write_text(json.dumps(questions))
    (data / "dev_outputs.json").write_text(
        json.dumps({"task": "LaMP_7", "golds": [{"id": "610", "output": "a"}, {"id": "611", "output": "b"}]})
    )
    out = tmp_path / "rankings.json"
    main(["rank", "--task", "lamp-7", "--retriever", "bm25", "--data-dir", str(data), "--out", str(out)])
    assert json.loads(out.read_text()) == {"610": ["2", "0", "1"], "611": ["x2", "x1"]}
    main(["rank", "--task", "lamp-7", "--retriever", "bm25", "--data-dir", str(data), "--out", str(out), "--top", "1"])
    assert json.loads(out.read_text()) == {"610": ["2"], "611": ["x2"]}
    with pytest.raises(SystemExit) as exited:
        main(["rank", "--task", "lamp-7", "--retriever", "recency", "--data-dir", str(data), "--out", str(out)])
    assert exited.value.code == 2
    assert "--scheme time" in capsys.readouterr().err
