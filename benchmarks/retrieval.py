"""Retrieval benchmark: our BM25 against the official approach, dense encoding, cached reruns.

Prints, in one run:

1. BM25 on the real LaMP-7 dev set (the folder ``LAMP7_DATA`` names, skipped when unset or absent) and
   on a synthetic LaMP-4-sized set (200 items of ~200 words per profile, ~200-word queries, 500
   questions, Zipf-distributed words): queries/s of ``lamp_plugins.bm25`` vs the official approach
   (one ``rank_bm25.BM25Okapi`` per question + ``get_top_n``), and top-1 / top-4 / full-ranking
   agreement with the official ranking: rank_bm25's scores in the order ``get_top_n`` gives under
   the official numpy 1.24.2 (also: agreement with ``get_top_n`` under this machine's numpy, whose
   tie order may differ).
2. Dense encoding: items/s of our encoder (MiniLM offline) vs a plain sentence-transformers
   ``encode`` of the same texts, and the largest difference between their vectors.
3. Cached reruns in a temporary LAMP_HOME: the ``contriever`` retriever over LaMP-7 profiles
   (first run encodes; the rerun reads the embedding cache, counting forward passes) and
   ``rank_examples`` with bm25 (the rerun reads the ranking cache).

Usage: ``python benchmarks/retrieval.py [--questions 500] [--dense-texts 2000]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LAMP7 = Path(os.environ.get("LAMP7_DATA", REPO / "data" / "LaMP-7" / "user"))


def official_rankings(queries: list[str], profiles: list[list[str]]) -> tuple[list[list[int]], float]:
    """What the official code does per question, timed: BM25Okapi over the profile + get_top_n."""
    from rank_bm25 import BM25Okapi

    started = time.perf_counter()
    rankings = []
    for query, docs in zip(queries, profiles, strict=True):
        index = BM25Okapi([d.split() for d in docs])
        rankings.append(index.get_top_n(query.split(), list(range(len(docs))), n=len(docs)))
    return rankings, time.perf_counter() - started


def ours(queries: list[str], profiles: list[list[str]]) -> tuple[list[tuple[int, ...]], float]:
    from lamp_plugins.bm25 import BM25Retriever

    from lamp_harness.plugin.contracts import ProfileItem, RankQuery

    rank_queries = [
        RankQuery(str(i), q, tuple(d), tuple(ProfileItem(str(j), j, {}) for j in range(len(d))))
        for i, (q, d) in enumerate(zip(queries, profiles, strict=True))
    ]
    retriever = BM25Retriever()
    started = time.perf_counter()
    rankings = retriever.rank(rank_queries)
    return rankings, time.perf_counter() - started


def compare_bm25(label: str, queries: list[str], profiles: list[list[str]], repeats: int = 3) -> None:
    """Both sides timed ``repeats`` times in this one run; the best time of each is compared
    (the usual ``timeit`` practice: the minimum is the least disturbed by other processes)."""
    ours(queries[:50], profiles[:50])  # warm numpy's code paths
    mine, t_ours = ours(queries, profiles)
    official, t_official = official_rankings(queries, profiles)
    for _ in range(repeats - 1):
        t_ours = min(t_ours, ours(queries, profiles)[1])
        t_official = min(t_official, official_rankings(queries, profiles)[1])
    from lamp_plugins.ordering import official_descending
    from rank_bm25 import BM25Okapi

    local = official
    official = [
        list(official_descending(BM25Okapi([d.split() for d in docs]).get_scores(q.split())))
        for q, docs in zip(queries, profiles, strict=True)
    ]
    n = len(queries)
    top1 = sum(list(a[:1]) == b[:1] for a, b in zip(mine, official, strict=True)) / n
    top4 = sum(list(a[:4]) == b[:4] for a, b in zip(mine, official, strict=True)) / n
    full = sum(list(a) == b for a, b in zip(mine, official, strict=True)) / n
    here = sum(list(a[:4]) == b[:4] for a, b in zip(mine, local, strict=True)) / n
    print(f"BM25 {label}: {n} questions, {sum(map(len, profiles)) / n:.1f} items/profile")
    print(f"  official (BM25Okapi per question + get_top_n): {n / t_official:10.1f} q/s ({t_official:.2f} s)")
    print(
        f"  lamp bm25 (batched):                           {n / t_ours:10.1f} q/s ({t_ours:.2f} s)"
        f"  -> {t_official / t_ours:.1f}x"
    )
    print(f"  agreement with the official ranking: top-1 {top1:.4f}, top-4 {top4:.4f}, full {full:.4f}")
    print(f"  top-4 agreement with get_top_n under this numpy {np.__version__} (tie order may differ by CPU): {here:.4f}")


def synthetic(n_questions: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """LaMP-4-sized profiles: 200 items of 150-250 words, Zipf(1.07) over 50,000 made-up words."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, rng.integers(2, 10))) for _ in range(50_000)]
    weights = 1 / np.arange(1, len(vocab) + 1) ** 1.07
    weights /= weights.sum()

    def text(n: int) -> str:
        return " ".join(vocab[i] for i in rng.choice(len(vocab), n, p=weights))

    queries, profiles = [], []
    for _ in range(n_questions):
        queries.append(text(200))
        profiles.append([text(int(rng.integers(150, 251))) for _ in range(200)])
    return queries, profiles


def lamp7() -> tuple[list[dict], list[str], list[list[str]]] | None:
    path = LAMP7 / "dev_questions.json"
    if not path.is_file():
        return None
    questions = json.loads(path.read_text(encoding="utf-8"))
    queries = [q["input"][q["input"].find(":") + 1 :] for q in questions]  # LaMP-7: after the first ':'
    profiles = [[p["text"] for p in q["profile"]] for q in questions]
    return questions, queries, profiles


def dense(texts: list[str]) -> None:
    from lamp_plugins.encoders import load_encoder
    from lamp_plugins.models import minilm_path
    from sentence_transformers import SentenceTransformer

    from lamp_harness.plugin.contracts import RunContext

    context = RunContext(lamp_home=Path(os.environ["LAMP_HOME"]), device="cpu")
    encoder = load_encoder(context, "minilm", "contriever", batch_size=64)
    encoder.encode(texts[:64])
    started = time.perf_counter()
    mine = encoder.encode(texts)
    t_ours = time.perf_counter() - started
    st = SentenceTransformer(str(minilm_path()), device="cpu")
    st.encode(texts[:64], batch_size=64)
    started = time.perf_counter()
    reference = st.encode(texts, batch_size=64)
    t_st = time.perf_counter() - started
    print(f"Dense encoding (MiniLM, CPU, batch 64): {len(texts)} LaMP-7 profile texts")
    print(f"  sentence-transformers encode: {len(texts) / t_st:8.1f} items/s")
    print(
        f"  lamp encoder:                 {len(texts) / t_ours:8.1f} items/s  "
        f"(max |difference| {np.abs(mine - reference).max():.2e})"
    )


def cached_reruns(questions: list[dict], n: int) -> None:
    from lamp_harness.inputs.cache import rank_examples
    from lamp_harness.plugin.contracts import Example, ProfileItem, RunContext
    from lamp_harness.plugin.registry import host

    registry = host().registry
    task = registry.create("task", "lamp-7")
    examples = [
        Example(q["id"], q["input"], tuple(ProfileItem(str(i), i, p) for i, p in enumerate(q["profile"])))
        for q in questions[:n]
    ]
    home = Path(os.environ["LAMP_HOME"])
    print(
        f"Cached reruns ({len(examples)} LaMP-7 questions, "
        f"{sum(len(e.profile) for e in examples)} profile items, fresh LAMP_HOME):"
    )
    for name in ("contriever", "bm25"):
        for attempt in ("first run", "rerun"):
            context = RunContext(lamp_home=home, device="cpu")  # new process state each time
            retriever = registry.create("retriever", name, context)
            started = time.perf_counter()
            rank_examples(retriever, task, "bench", examples, context, progress=False)
            elapsed = time.perf_counter() - started
            extra = ""
            if name == "contriever":
                extra = f", {retriever.encoder.forward_passes} encoder forward passes"
            print(f"  {name:10s} {attempt:9s}: {elapsed:7.2f} s{extra}")
        # the embedding cache alone: rankings recomputed, vectors read from disk
        if name == "contriever":
            context = RunContext(lamp_home=home, device="cpu")
            retriever = registry.create("retriever", name, context)
            from lamp_harness.inputs.cache import rank_query

            started = time.perf_counter()
            retriever.rank([rank_query(task, e) for e in examples])
            print(
                f"  contriever rank() with a warm embedding cache only: "
                f"{time.perf_counter() - started:.2f} s, {retriever.encoder.forward_passes} forward passes"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=500, help="synthetic questions [500]")
    parser.add_argument("--dense-texts", type=int, default=2000, help="texts for the dense benchmark [2000]")
    parser.add_argument("--rerun-questions", type=int, default=300, help="LaMP-7 questions for reruns [300]")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="lamp-bench-") as home:
        os.environ["LAMP_HOME"] = home
        real = lamp7()
        if real is None:
            print(f"(LaMP-7 dev not found at {LAMP7}: real-data figures skipped)")
        else:
            compare_bm25("LaMP-7 dev (real)", real[1], real[2])
        compare_bm25("synthetic LaMP-4-sized", *synthetic(args.questions))
        if real is not None:
            texts = list(dict.fromkeys(t for profile in real[2] for t in profile))[: args.dense_texts]
            dense(texts)
            cached_reruns(real[0], args.rerun_questions)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
