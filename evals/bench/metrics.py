"""Ranking metrics and percentiles as small pure functions.

``ranked`` is a list of ids, best first, without repeats (see :func:`unique`); relevance is
a mapping ``id -> grade`` (grades <= 0 count as not relevant) or, for the binary metrics, a
collection of relevant ids. Gains are linear (``grade / log2(rank + 1)``), as in
pytrec_eval and the BEIR figures.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


def unique(items: Iterable[T]) -> list[T]:
    """``items`` without repeats, each kept at its first occurrence."""
    seen: set[T] = set()
    out: list[T] = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _top(ranked: Sequence[T], k: int) -> Sequence[T]:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    top = ranked[:k]
    if len(set(top)) != len(top):
        raise ValueError("ranked ids repeat: deduplicate them first (unique())")
    return top


def dcg(gains: Iterable[float]) -> float:
    """Discounted cumulative gain of gains in rank order (rank 1 first)."""
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))


def ndcg_at_k(ranked: Sequence[T], relevance: Mapping[T, float] | Collection[T], k: int
              ) -> float:
    """nDCG@k; 0.0 when nothing is relevant."""
    grades = relevance if isinstance(relevance, Mapping) else dict.fromkeys(relevance, 1.0)
    ideal = dcg(sorted((g for g in grades.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg(max(grades.get(item, 0.0), 0.0) for item in _top(ranked, k)) / ideal


def recall_at_k(ranked: Sequence[T], relevant: Collection[T], k: int) -> float:
    """Share of the relevant ids found in the top ``k``; 0.0 when nothing is relevant."""
    if not relevant:
        return 0.0
    return sum(item in relevant for item in _top(ranked, k)) / len(relevant)


def mrr_at_k(ranked: Sequence[T], relevant: Collection[T], k: int) -> float:
    """1 / rank of the first relevant id in the top ``k``; 0.0 if there is none."""
    for rank, item in enumerate(_top(ranked, k), start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
