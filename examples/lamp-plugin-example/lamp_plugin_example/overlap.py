"""The ``overlap`` retriever: rank profile items by how many distinct words they share with the query."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from lamp_harness import Ranking, RankQuery, Retriever, RunContext, int_arg, reject_unknown_args

_WORD = re.compile(r"\w+")


def words(text: str, min_len: int = 1) -> set[str]:
    """The distinct lowercase words of ``text`` with at least ``min_len`` characters."""
    return {w for w in _WORD.findall(text.lower()) if len(w) >= min_len}


class OverlapRetriever(Retriever):
    """Scores each profile item by the number of distinct lowercase words its document shares with
    the query; ties keep profile order, so rankings are deterministic and need no model.

    Arguments (``--retriever-arg key=value``): ``min_len`` (default 1) ignores shorter words, e.g.
    ``min_len=4`` skips "the", "and", "a".
    """

    name = "overlap"

    def __init__(self, context: RunContext, **args: str) -> None:
        owner = f"retriever {self.name!r}"
        reject_unknown_args(args, {"min_len"}, owner)
        self.min_len = int_arg(args, "min_len", 1, owner, minimum=1)

    def rank(self, queries: Sequence[RankQuery]) -> list[Ranking]:
        rankings: list[Ranking] = []
        for query in queries:
            wanted = words(query.query, self.min_len)
            shared = [len(wanted & words(doc, self.min_len)) for doc in query.documents]
            rankings.append(tuple(sorted(range(len(shared)), key=lambda i: (-shared[i], i))))
        return rankings

    def cache_key(self) -> Mapping[str, Any]:
        return {"name": self.name, "min_len": self.min_len, "version": 1}
