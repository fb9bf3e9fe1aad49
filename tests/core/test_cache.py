"""The embedding cache (encode once, survive reruns, detect corrupt files) and the ranking cache
(full rankings computed once and reused across k, only missing questions ranked)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from lamp_harness.inputs import cache as cache_module
from lamp_harness.inputs.cache import EmbeddingCache, rank_examples, ranking_path, text_key
from lamp_harness.plugin.contracts import Example, ProfileItem, Ranking, RankQuery, Retriever, RunContext
from lamp_harness.plugin.registry import host

IDENTITY = {
    "model": "test/encoder",
    "revision": "1",
    "pooling": "mean",
    "normalize": False,
    "max_tokens": 16,
    "role": "document",
}


class CountingEncoder:
    """A deterministic fake encode function that records every text it is asked to encode."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([[len(t), sum(map(ord, t)) % 97, 0.1] for t in texts], dtype=np.float32)

    @property
    def texts(self) -> list[str]:
        return [t for call in self.calls for t in call]


def test_identical_texts_are_encoded_once_and_a_rerun_encodes_nothing(lamp_home: Path) -> None:
    encode = CountingEncoder()
    texts = ["a b", "c", "a b", "d", "c"]
    first = EmbeddingCache(lamp_home, IDENTITY).get_or_encode(texts, encode)
    assert sorted(encode.texts) == ["a b", "c", "d"]
    assert first.shape == (5, 3) and first.dtype == np.float32
    assert np.array_equal(first[0], first[2])

    rerun = CountingEncoder()
    again = EmbeddingCache(lamp_home, IDENTITY).get_or_encode(texts + ["e"], rerun)
    assert rerun.texts == ["e"]
    assert np.array_equal(again[:5], first)  # same float16-rounded values as the first run
    other = EmbeddingCache(lamp_home, {**IDENTITY, "pooling": "cls"})
    other.get_or_encode(["a b"], rerun)
    assert rerun.texts == ["e", "a b"]  # another identity is another cache


def test_get_many_and_put_many_share_keys_with_get_or_encode(lamp_home: Path) -> None:
    store = EmbeddingCache(lamp_home, IDENTITY)
    store.put_many({text_key("x"): np.array([1.0, 2.0, 3.0]), text_key("y"): np.array([0.5, 0.25, 4.0])})
    found = EmbeddingCache(lamp_home, IDENTITY).get_many([text_key("y"), text_key("z")])
    assert np.array_equal(found[0], [0.5, 0.25, 4.0]) and found[1] is None
    encode = CountingEncoder()
    vectors = EmbeddingCache(lamp_home, IDENTITY).get_or_encode(["x", "z"], encode)
    assert encode.texts == ["z"] and np.array_equal(vectors[0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_corrupt_cache_file_is_reported_and_rebuilt(lamp_home: Path, capsys, damage: str) -> None:
    texts = ["one", "two", "three"]
    EmbeddingCache(lamp_home, IDENTITY).get_or_encode(texts, CountingEncoder())
    (shard,) = EmbeddingCache(lamp_home, IDENTITY).root.glob("shard-*.npz")
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:200] + b"\x00" * 64 + data[264:])
    encode = CountingEncoder()
    vectors = EmbeddingCache(lamp_home, IDENTITY).get_or_encode(texts, encode)
    err = capsys.readouterr().err
    assert "warning: embedding cache file" in err and shard.name in err and "corrupt" in err
    assert sorted(encode.texts) == sorted(texts)  # nothing from the corrupt file was used
    assert np.array_equal(vectors, EmbeddingCache(lamp_home, IDENTITY).get_or_encode(texts, encode))
    assert len(encode.calls) == 1  # the rebuilt file is good


def test_many_shards_are_merged_when_opened(lamp_home: Path, monkeypatch) -> None:
    for text in ("a", "b", "c", "d"):
        EmbeddingCache(lamp_home, IDENTITY).get_or_encode([text], CountingEncoder())
    assert len(list(EmbeddingCache(lamp_home, IDENTITY).root.glob("shard-*.npz"))) == 4
    monkeypatch.setattr(cache_module, "MAX_SHARDS", 2)
    store = EmbeddingCache(lamp_home, IDENTITY)
    assert len(store) == 4
    assert len(list(store.root.glob("shard-*.npz"))) == 1
    encode = CountingEncoder()
    EmbeddingCache(lamp_home, IDENTITY).get_or_encode(["a", "b", "c", "d"], encode)
    assert encode.calls == []


@pytest.mark.slow
def test_a_second_dense_run_performs_zero_encoder_forward_passes(lamp_home: Path) -> None:
    profile = tuple(
        ProfileItem(str(i), i, {"text": t})
        for i, t in enumerate(["the cat sat", "stocks fell", "a cat again", "the cat sat"])
    )
    queries = [
        RankQuery("q1", "cats", tuple(p.get("text") for p in profile), profile),
        RankQuery("q2", "money", tuple(p.get("text") for p in profile[:2]), profile[:2]),
    ]

    def run() -> tuple[list[Ranking], int, int]:
        context = RunContext(lamp_home=lamp_home, device="cpu")  # a fresh process's state
        dense = host().registry.create("retriever", "dense", context, model="minilm")
        rankings = dense.rank(queries)
        return rankings, dense.encoder.forward_passes, dense.encoder.encoded_texts

    first, passes, encoded = run()
    assert passes >= 1 and encoded == 3 + 2  # 3 distinct documents, 2 queries
    second, passes, encoded = run()
    assert (passes, encoded) == (0, 0)
    assert second == first


# -- ranking cache ------------------------------------------------------------------------------


class CountingRetriever(Retriever):
    """Ranks by item length (longest first) and records which questions it was asked to rank."""

    name = "counting"

    def __init__(self, key: dict | None = None) -> None:
        self.seen: list[str] = []
        self.key = {"name": "counting"} if key is None else key

    def rank(self, queries: Sequence[RankQuery]) -> list[Ranking]:
        self.seen.extend(q.example_id for q in queries)
        return [tuple(sorted(range(len(q.documents)), key=lambda i: (-len(q.documents[i]), i))) for q in queries]

    def cache_key(self):
        return self.key


def examples(n: int, suffix: str = "") -> list[Example]:
    return [
        Example(
            f"e{i}",
            f"Paraphrase the following tweet: q{i}",
            tuple(ProfileItem(str(j), j, {"text": "x" * (j * 7 % 5 + 1) + suffix}) for j in range(4)),
        )
        for i in range(n)
    ]


@pytest.fixture
def task():
    return host().registry.create("task", "lamp-7")


def test_rankings_are_computed_once_and_reused_for_every_k(lamp_home: Path, task) -> None:
    context = RunContext(lamp_home=lamp_home)
    data = examples(5)
    retriever = CountingRetriever()
    first = rank_examples(retriever, task, "fp1", data, context, progress=False)
    assert retriever.seen == [f"e{i}" for i in range(5)]
    assert first["e0"] == (2, 1, 3, 0)  # item lengths 1, 3, 5, 2: longest first, the full profile
    for k in (1, 4):  # what the runner does per k: slice the same cached ranking
        again = CountingRetriever()
        reused = rank_examples(again, task, "fp1", data, context, progress=False)
        assert again.seen == [] and [reused[e.id][:k] for e in data] == [first[e.id][:k] for e in data]
    stored = json.loads(ranking_path(context, "lamp-7", {"name": "counting"}, "fp1").read_text())
    assert set(stored["rankings"]) == {f"e{i}" for i in range(5)}


def test_only_missing_or_changed_questions_are_ranked(lamp_home: Path, task) -> None:
    context = RunContext(lamp_home=lamp_home)
    rank_examples(CountingRetriever(), task, "fp", examples(3), context, progress=False)
    more = CountingRetriever()
    rank_examples(more, task, "fp", examples(6), context, progress=False, batch_size=2)
    assert more.seen == ["e3", "e4", "e5"]
    changed = CountingRetriever()
    rank_examples(changed, task, "fp", examples(6, suffix="!"), context, progress=False)
    assert changed.seen == [f"e{i}" for i in range(6)]  # documents changed: stale rankings not reused
    other = CountingRetriever({"name": "counting", "k1": 2})
    rank_examples(other, task, "fp", examples(2), context, progress=False)
    assert other.seen == ["e0", "e1"]  # another configuration, another cache


def test_a_corrupt_ranking_file_is_reported_and_recomputed(lamp_home: Path, task, capsys) -> None:
    context = RunContext(lamp_home=lamp_home)
    rank_examples(CountingRetriever(), task, "fp", examples(2), context, progress=False)
    path = ranking_path(context, "lamp-7", {"name": "counting"}, "fp")
    path.write_text(path.read_text()[:40])
    again = CountingRetriever()
    result = rank_examples(again, task, "fp", examples(2), context, progress=False)
    assert again.seen == ["e0", "e1"] and result["e0"] == (2, 1, 3, 0)
    assert str(path) in capsys.readouterr().err


def test_an_empty_cache_key_disables_the_ranking_cache(lamp_home: Path, task) -> None:
    context = RunContext(lamp_home=lamp_home)
    for _ in range(2):
        retriever = CountingRetriever(key={})
        rank_examples(retriever, task, "fp", examples(2), context, progress=False)
        assert retriever.seen == ["e0", "e1"]
    assert not (lamp_home / "rankings").exists()


def test_a_retriever_returning_a_partial_ranking_is_reported(lamp_home: Path, task) -> None:
    class Broken(CountingRetriever):
        def rank(self, queries):
            return [(0,) for _ in queries]

    from lamp_harness.base.errors import LampError

    with pytest.raises(LampError, match="not a full ranking"):
        rank_examples(Broken(), task, "fp", examples(1), RunContext(lamp_home=lamp_home), progress=False)
