"""``recency`` and ``random``: retrievers that ignore the query.

``recency`` ranks profile items newest first by their ``date``. Dates are parsed robustly
(ISO ``2011-03-14`` with optional time and zone, ``2011``, ``2011-03``, ``2011/03/14``,
``03/14/2011``, ``March 14, 2011``, ``14 March 2011``, Twitter's ``Mon Mar 14 10:00:00 +0000
2011``, and Unix timestamps); naive times count as UTC. If some date of a profile cannot be
parsed but all of them start with a four-digit year, the profile is ordered by the date strings
(ISO-like strings sort correctly as text); otherwise the item is reported. Items with equal dates
keep the official order: sorted oldest first (stably), then reversed, so the later profile item
comes first. A profile with an undated item is an error that suggests the time-based split
(``--scheme time``), unless ``--retriever-arg fallback=profile-order``: then such a profile is
ranked by position, last item first (profiles are appended in time order, so the last items are
the most recent).

``random`` ranks a uniformly random permutation of the profile, seeded per example from
``(seed, example id)`` (``--retriever-arg seed=N``, default: the run's ``--seed``), so a run is
reproducible and independent of batching; top-k items are distinct. The official LaMP code
samples with replacement (``random.choices``) and unseeded, so it can repeat an item and is not
reproducible.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from lamp_harness import (
    Options,
    Ranking,
    RankQuery,
    Retriever,
    RunContext,
    lamp_error,
    option,
)

FALLBACKS = ("error", "profile-order")
_FORMATS = (
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M:%S",
    "%m/%d/%Y",
    "%m/%d/%Y %H:%M:%S",
    "%B %d, %Y",
    "%b %d, %Y",
    "%d %B %Y",
    "%d %b %Y",
    "%a %b %d %H:%M:%S %z %Y",
    "%Y-%m",
    "%Y%m%d",
)


def parse_date(value: str) -> float | None:
    """Seconds since the epoch (UTC) of a date string, or ``None`` when it cannot be parsed."""
    text = value.strip()
    if re.fullmatch(r"\d{4}", text):
        return datetime(int(text), 1, 1, tzinfo=timezone.utc).timestamp()
    if re.fullmatch(r"-?\d{9,}(\.\d+)?", text):  # a Unix timestamp (seconds; milliseconds if huge)
        number = float(text)
        return number / 1000 if abs(number) > 1e11 else number
    candidates = [text, text.replace("Z", "+00:00")] if text.endswith("Z") else [text]
    for candidate in candidates:
        try:
            return _utc(datetime.fromisoformat(candidate))
        except ValueError:
            pass
    for fmt in _FORMATS:
        try:
            return _utc(datetime.strptime(text, fmt))
        except ValueError:
            continue
    return None


def _utc(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


@dataclass(frozen=True)
class RecencyOptions(Options):
    """The ``recency`` retriever's options."""

    fallback: str = option(
        "error",
        "what an undated profile gets: an error, or its items last first (profile-order)",
        choices=FALLBACKS,
    )


class RecencyRetriever(Retriever):
    """Newest profile items first, by ``date`` (``--retriever-arg fallback=profile-order`` ranks
    undated profiles last item first instead of failing)."""

    name = "recency"
    options = RecencyOptions

    def __init__(self, context: RunContext | None = None, **args: str) -> None:
        self.fallback = RecencyOptions.parse(args, "retriever 'recency'").fallback

    def cache_key(self) -> Mapping[str, Any]:
        return {"name": self.name, "fallback": self.fallback, "order": "stable-newest-first", "version": 1}

    def rank(self, queries: Sequence[RankQuery]) -> list[Ranking]:
        return [self._rank(q) for q in queries]

    def _rank(self, query: RankQuery) -> Ranking:
        n = len(query.items)
        dates = [item.date for item in query.items]
        undated = next((i for i, d in enumerate(dates) if d is None), None)
        if undated is not None:
            if self.fallback == "profile-order":
                return tuple(range(n - 1, -1, -1))
            item = query.items[undated]
            raise lamp_error(
                f"profile item {item.id!r} has no 'date', so 'recency' cannot rank it",
                where=f"example {query.example_id}",
                fix="Use the time-based split (--scheme time), whose profiles are dated, or "
                "pass --retriever-arg fallback=profile-order (last item first).",
            )
        parsed = [parse_date(d) for d in dates if d is not None]
        keys: list[Any]
        if all(p is not None for p in parsed):
            keys = parsed
        elif all(re.match(r"\d{4}", d.strip()) for d in dates if d is not None):
            keys = [d.strip() for d in dates if d is not None]  # ISO-like: text order is date order
        else:
            bad = next(i for i, p in enumerate(parsed) if p is None)
            raise lamp_error(
                f"profile item {query.items[bad].id!r} has an unreadable date {dates[bad]!r}",
                where=f"example {query.example_id}",
                fix="Write dates as YYYY-MM-DD (ISO 8601) in the data file.",
            )
        oldest_first = sorted(range(n), key=lambda i: keys[i])
        return tuple(reversed(oldest_first))


@dataclass(frozen=True)
class RandomOptions(Options):
    """The ``random`` retriever's options."""

    seed: int | None = option(None, "the permutation's seed (unset: the run's --seed)")


class RandomRetriever(Retriever):
    """A seeded random permutation of each profile (without replacement)."""

    name = "random"
    options = RandomOptions

    def __init__(self, context: RunContext | None = None, **args: str) -> None:
        default = context.seed if context is not None else 0
        self.seed = RandomOptions.parse(args, "retriever 'random'", seed=default).seed

    def cache_key(self) -> Mapping[str, Any]:
        return {"name": self.name, "seed": self.seed, "order": "numpy-pcg64-permutation", "version": 1}

    def rank(self, queries: Sequence[RankQuery]) -> list[Ranking]:
        import numpy as np

        rankings: list[Ranking] = []
        for query in queries:
            digest = hashlib.sha256(f"{self.seed}:{query.example_id}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            rankings.append(tuple(rng.permutation(len(query.items)).tolist()))
        return rankings
