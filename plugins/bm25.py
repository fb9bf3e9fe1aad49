"""``bm25``: the official LaMP BM25 ranking, reproduced bit for bit and batched across questions.

The official code builds one ``rank_bm25.BM25Okapi`` per question over that question's profile
(whitespace tokens, no lowercasing, k1=1.5, b=0.75, epsilon=0.25) and calls ``get_top_n``, i.e.
``np.argsort(scores)[::-1]``. This module computes the very same float64 scores for a whole batch
of questions at once and ranks each question in the order that call gives under the official
pinned numpy 1.24.2, so rankings (top-k and the full order, ties included) are identical to the
official ones on every machine:

- **Tokens**: ``str.split()``. All texts are joined into one byte buffer and split with numpy;
  texts with non-ASCII characters are first rewritten as ``" ".join(text.split())`` so that
  Unicode whitespace is honoured exactly. A token is identified by a 64-bit hash of its bytes,
  checked against a second independent hash: if two different tokens ever collide, the chunk is
  recomputed with exact Python-dictionary token ids (never observed; tested by forcing it).
- **IDF**: ``log(N - n + 0.5) - log(n + 0.5)`` per question (``math.log`` values, tabulated); a
  negative IDF becomes ``epsilon x mean IDF``, where the mean is summed sequentially in the order
  in which ``BM25Okapi`` meets the terms (first occurrence in the profile), so it has the same bits.
- **Scores**: ``idf * (tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)))`` with the same
  operation order, accumulated per document in query-token order (repeated query tokens count
  again, as in ``get_scores``).
- **Order**: ``np.argsort(scores)[::-1]`` as numpy 1.24.2 computes it, transcribed in pure code
  (:mod:`lamp_plugins.ordering`): numpy's own ``argsort`` orders ties differently on numpy >= 2
  with AVX2/AVX-512 CPUs. Ties in a profile of at most 16 items come out later item first (an
  insertion sort, reversed); larger profiles follow numpy 1.24's introsort partitions.

Why not ``bm25s``: its ``robertson`` scorer has no epsilon floor at the mean IDF, computes the IDF
as ``log(a / b)`` rather than ``log(a) - log(b)`` (different last bits), and one ``bm25s`` index per
question is slower than the official code (0.64x); its tokenizer splits on a regex, not on
whitespace. Top-1 agreement of a plain bm25s index with the official ranking is 0.96 on LaMP-7 dev,
this module's is 1.0. Empty profiles rank to ``()``; a profile whose items are all empty (where
``BM25Okapi`` divides by zero) scores every item 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from lamp_plugins.ordering import ALGORITHM, official_descending

from lamp_harness import (
    Options,
    Ranking,
    RankQuery,
    Retriever,
    RunContext,
    option,
)

# Bytes that ``str.isspace()`` accepts among ASCII characters.
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_CHUNK_CHARS = 1_000_000
"""Texts per chunk (characters): bounds memory and keeps enough bits for the token hash."""
_MIN_HASH_BITS = 40
_M64 = (1 << 64) - 1
_SEEDS = ((0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9), (0xD6E8FEB86659FD93, 0x94D049BB133111EB))


@dataclass(frozen=True)
class OkapiParams(Options):
    """BM25Okapi's parameters (the official values by default): the ``bm25`` retriever's options."""

    k1: float = option(1.5, "term-frequency saturation (the official 1.5)")
    b: float = option(0.75, "document-length normalisation (the official 0.75)")
    epsilon: float = option(0.25, "floor of negative IDFs, as a fraction of the mean IDF (the official 0.25)")


class BM25Retriever(Retriever):
    """The official LaMP BM25 (``rank_bm25.BM25Okapi`` per question), batched across questions.

    Arguments (``--retriever-arg``): ``k1`` (default 1.5), ``b`` (0.75), ``epsilon`` (0.25).
    """

    name = "bm25"
    options = OkapiParams

    def __init__(self, context: RunContext | None = None, **args: str) -> None:
        self.params = OkapiParams.parse(args, "retriever 'bm25'")

    def rank(self, queries: Sequence[RankQuery]) -> list[Ranking]:
        scores = okapi_scores([q.query for q in queries], [q.documents for q in queries], self.params)
        return [ranking_from_scores(s) for s in scores]

    def cache_key(self) -> Mapping[str, Any]:
        return {
            "name": self.name,
            "k1": self.params.k1,
            "b": self.params.b,
            "epsilon": self.params.epsilon,
            "tokens": "whitespace",
            "order": ALGORITHM,
            "version": 2,
        }


def ranking_from_scores(scores: np.ndarray) -> Ranking:
    """Best first, exactly as ``BM25.get_top_n`` orders under numpy 1.24.2
    (``np.argsort(scores)[::-1]``, ties included), whatever numpy and CPU run it."""
    return official_descending(scores)


def okapi_scores(
    queries: Sequence[str],
    profiles: Sequence[Sequence[str]],
    params: OkapiParams = OkapiParams(),
    *,
    hash_bits: int | None = None,
) -> list[np.ndarray]:
    """``BM25Okapi(profile).get_scores(query.split())`` for every (query, profile) pair, with
    whitespace tokens, as float64 arrays bit-identical to rank_bm25's.

    ``hash_bits`` forces a narrower token hash (tests use it to exercise the collision fallback).
    """

    def score(chunk: list[int]) -> list[np.ndarray]:
        sub_queries = [queries[i] for i in chunk]
        sub_profiles = [profiles[i] for i in chunk]
        try:
            return _chunk_scores(sub_queries, sub_profiles, params, _hashed_tokens, hash_bits)
        except _Collision:
            return _chunk_scores(sub_queries, sub_profiles, params, _exact_tokens, None)

    chunks = _chunks(profiles)
    workers = min(len(chunks), _threads())
    if workers <= 1:
        return [s for chunk in chunks for s in score(chunk)]
    # numpy releases the GIL in its sorts and array arithmetic: chunks scale across cores.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [s for part in pool.map(score, chunks) for s in part]


def _threads() -> int:
    """Worker threads for scoring: ``LAMP_BM25_THREADS``, else the CPUs this process may use."""
    import os

    configured = os.environ.get("LAMP_BM25_THREADS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------


class _Collision(Exception):
    """Two different tokens share a hash inside one question: use exact token ids instead."""


@dataclass(frozen=True)
class _Tokens:
    """Whitespace tokens of a list of texts: which text each token is in, and its identity."""

    text: np.ndarray  # int64 [T]: index of the text the token belongs to
    key: np.ndarray  # uint64 [T]: token identity (hash, or exact id)
    check: np.ndarray  # uint64 [T]: second identity used to detect hash collisions
    exact: bool


_SEPARATOR = "\x1f"  # whitespace for str.split(), so a token never spans two texts


def _joined(texts: Sequence[str]) -> str:
    """The texts joined by the separator, each rewritten so that the bytes split like ``str.split``."""
    if not all(map(str.isascii, texts)):  # Unicode whitespace: normalise to single spaces
        texts = [t if t.isascii() else " ".join(t.split()) for t in texts]
    joined = _SEPARATOR.join(texts)
    if joined.count(_SEPARATOR) != max(len(texts) - 1, 0):  # the separator inside a text
        joined = _SEPARATOR.join(t.replace(_SEPARATOR, " ") for t in texts)
    return joined


def _spans(texts: Sequence[str]) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    """(buffer, token starts, token lengths, token text index) of the whitespace tokens."""
    buffer = _joined(texts).encode("utf-8") + b" " * 9  # padding for 8-byte reads
    data = np.frombuffer(buffer, dtype=np.uint8)
    low = np.flatnonzero(data <= 32)
    spaces = low[_WHITESPACE[data[low]]]
    bounds = np.concatenate(([-1], spaces))
    gaps = np.diff(bounds)
    which = np.flatnonzero(gaps > 1)
    starts = bounds[which] + 1
    lengths = gaps[which] - 1
    # A token's text is the number of separators among the whitespace bytes before it.
    separators = np.concatenate(([0], np.cumsum(data[spaces] == 0x1F)))
    return buffer, starts, lengths, separators[which]


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place (a bijection on 64 bits that spreads every input bit)."""
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def _hashed_tokens(texts: Sequence[str]) -> _Tokens:
    buffer, starts, lengths, text = _spans(texts)
    words = np.ndarray(shape=(len(buffer) - 7,), dtype="<u8", buffer=buffer, strides=(1,))
    masks = np.array([(1 << (8 * n)) - 1 if n < 8 else _M64 for n in range(9)], dtype=np.uint64)
    first = words[starts]
    first &= masks[np.minimum(lengths, 8)]
    rounds = []  # tokens longer than 8 bytes: 8 more bytes per round
    longer = np.flatnonzero(lengths > 8)
    offset = 8
    while len(longer):
        rounds.append((longer, words[starts[longer] + offset] & masks[np.minimum(lengths[longer] - offset, 8)]))
        offset += 8
        longer = longer[lengths[longer] > offset]
    length = lengths.astype(np.uint64)
    keys = []
    with np.errstate(over="ignore"):
        for seed, prime in _SEEDS:
            h = first ^ np.uint64(seed)
            h *= np.uint64(prime)
            for index, chunk in rounds:
                h[index] = (h[index] ^ chunk) * np.uint64(prime)
            h ^= length
            keys.append(_mix(h))
    return _Tokens(text, keys[0], keys[1], exact=False)


def _exact_tokens(texts: Sequence[str], vocab: dict[str, int]) -> _Tokens:
    counts, ids = [], []
    for text in texts:
        tokens = text.split()
        counts.append(len(tokens))
        ids.extend(vocab.setdefault(t, len(vocab)) for t in tokens)
    key = np.array(ids, dtype=np.uint64)
    return _Tokens(np.repeat(np.arange(len(texts)), counts), key, key, exact=True)


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


def _chunks(profiles: Sequence[Sequence[str]]) -> list[list[int]]:
    chunks: list[list[int]] = [[]]
    size = 0
    for i, docs in enumerate(profiles):
        chars = sum(map(len, docs)) + len(docs)
        if chunks[-1] and size + chars > _CHUNK_CHARS:
            chunks.append([])
            size = 0
        chunks[-1].append(i)
        size += chars
    return [c for c in chunks if c]


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


def _chunk_scores(
    queries: Sequence[str], profiles: Sequence[Sequence[str]], params: OkapiParams, tokenizer: Any, hash_bits: int | None
) -> list[np.ndarray]:
    n_questions = len(profiles)
    n_docs = np.fromiter(map(len, profiles), dtype=np.int64, count=n_questions)
    doc_start = np.concatenate(([0], np.cumsum(n_docs)))
    n_total = int(doc_start[-1])
    docs = [d for profile in profiles for d in profile]
    if tokenizer is _exact_tokens:
        vocab: dict[str, int] = {}
        toks, qtoks = _exact_tokens(docs, vocab), _exact_tokens(list(queries), vocab)
        h_bits = _bits(len(vocab))
    else:
        toks, qtoks = _hashed_tokens(docs), _hashed_tokens(list(queries))
        h_bits = 0
    q_of_doc = np.repeat(np.arange(n_questions), n_docs)
    doc_len = np.bincount(toks.text, minlength=n_total)
    tok_q = q_of_doc[toks.text]
    q_tokens = np.bincount(tok_q, minlength=n_questions)
    tok_start = np.concatenate(([0], np.cumsum(q_tokens)))
    n_tok = int(tok_start[-1])
    pos = np.arange(n_tok, dtype=np.int64) - tok_start[tok_q]

    p_bits = _bits(int(q_tokens.max()) if n_questions else 1)
    q_bits = _bits(n_questions)
    if not toks.exact:
        h_bits = hash_bits if hash_bits is not None else 63 - p_bits - q_bits
        if h_bits < _MIN_HASH_BITS and hash_bits is None:
            if n_questions > 1:  # too many questions for one packed key: split the chunk
                half = n_questions // 2
                return _chunk_scores(queries[:half], profiles[:half], params, tokenizer, None) + _chunk_scores(
                    queries[half:], profiles[half:], params, tokenizer, None
                )
            raise _Collision  # one enormous profile: exact ids are safer than a short hash
    elif q_bits + h_bits + p_bits > 63:
        raise ValueError("profile too large for BM25 batching")

    def term(key: np.ndarray) -> np.ndarray:
        return key if toks.exact else key >> np.uint64(64 - h_bits)

    # One sort of (question, term, position) gives groups (question, term) with positions ascending.
    packed = (
        (tok_q.astype(np.uint64) << np.uint64(h_bits + p_bits))
        | (term(toks.key) << np.uint64(p_bits))
        | pos.astype(np.uint64)
    )
    packed = np.sort(packed.view(np.int64)).view(np.uint64)  # int64 sorts faster; bit 63 is 0
    group_key = packed >> np.uint64(p_bits)
    token = tok_start[(group_key >> np.uint64(h_bits)).astype(np.int64)] + (packed & np.uint64((1 << p_bits) - 1)).astype(
        np.int64
    )
    new_group = np.ones(n_tok, dtype=bool)
    new_group[1:] = group_key[1:] != group_key[:-1]
    group_start = np.flatnonzero(new_group)
    group_of_token = np.cumsum(new_group) - 1
    check = toks.check[token]
    if not toks.exact and np.any(check != check[group_start][group_of_token]):
        raise _Collision
    doc = toks.text[token]
    new_posting = new_group.copy()
    new_posting[1:] |= doc[1:] != doc[:-1]
    posting_start = np.flatnonzero(new_posting)
    tf = np.diff(np.append(posting_start, n_tok))
    posting_doc = doc[posting_start]
    posting_group = group_of_token[posting_start]
    n_groups = len(group_start)
    df = np.bincount(posting_group, minlength=n_groups)
    group_first_posting = np.concatenate(([0], np.cumsum(df)))
    group_q = (group_key[group_start] >> np.uint64(h_bits)).astype(np.int64)
    first_token = token[group_start]

    # IDF, with the negative-IDF floor at epsilon x the mean IDF summed in first-occurrence order.
    logs = np.array([math.log(x + 0.5) for x in range(int(n_docs.max(initial=0)) + 1)])
    n_q = n_docs[group_q]
    idf = logs[n_q - df] - logs[df]
    by_position = np.zeros(n_tok)
    is_first = np.zeros(n_tok, dtype=bool)
    by_position[first_token] = idf
    is_first[first_token] = True
    ordered = by_position[is_first]
    vocab_size = np.bincount(group_q, minlength=n_questions)
    vocab_start = np.concatenate(([0], np.cumsum(vocab_size)))
    idf_sum = np.zeros(n_questions)
    for q in np.flatnonzero(vocab_size):
        idf_sum[q] = np.cumsum(ordered[vocab_start[q] : vocab_start[q + 1]])[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = params.epsilon * (idf_sum / vocab_size)
        avgdl = q_tokens / n_docs
    idf = np.where(idf < 0, eps[group_q], idf)

    # Per posting: tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)), in rank_bm25's order.
    dl = doc_len[posting_doc]
    weight = tf * (params.k1 + 1) / (tf + params.k1 * (1 - params.b + params.b * dl / avgdl[q_of_doc[posting_doc]]))

    # Query tokens -> (question, term) groups; each contributes idf * weight to every doc with it.
    q_of_qtok = qtoks.text
    qkey = (q_of_qtok.astype(np.uint64) << np.uint64(h_bits)) | term(qtoks.key)
    sorted_keys = group_key[group_start]
    found = np.searchsorted(sorted_keys, qkey)
    found_ok = found < n_groups
    found_ok[found_ok] = sorted_keys[found[found_ok]] == qkey[found_ok]
    if not qtoks.exact and np.any(qtoks.check[found_ok] != toks.check[first_token[found[found_ok]]]):
        raise _Collision
    q_len = np.bincount(q_of_qtok, minlength=n_questions)
    q_pos = np.arange(len(qkey)) - np.concatenate(([0], np.cumsum(q_len)))[q_of_qtok]
    hit = np.flatnonzero(found_ok)
    groups = found[hit]
    counts = df[groups]
    owner = np.repeat(np.arange(len(hit)), counts)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    posting = group_first_posting[groups][owner] + (np.arange(int(offsets[-1])) - offsets[owner])
    values = idf[groups][owner] * weight[posting]
    target = posting_doc[posting]
    step = q_pos[hit][owner]
    scores = np.zeros(n_total)
    if len(step):
        # get_scores adds query token by query token: sum each document's terms in that order.
        # Within one query position a document receives at most one term, so += is safe.
        order = np.argsort(step.astype(np.int32), kind="stable")
        step_sorted = step[order]
        cuts = np.flatnonzero(np.diff(step_sorted)) + 1
        for piece in np.split(order, cuts):
            scores[target[piece]] += values[piece]
    return [scores[doc_start[q] : doc_start[q + 1]].copy() for q in range(n_questions)]
