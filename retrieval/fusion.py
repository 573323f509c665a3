"""Fusing ranked lists: min-max score fusion (the default) and reciprocal rank fusion.

Both are convex combinations: each list has a weight and the weights of a hybrid search
are ``alpha`` (dense) and ``1 - alpha`` (BM25). Ties keep the order in which items were
first seen, so the first list's better-ranked items win.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar, cast

from orchestrator.retrieval.errors import RetrievalError

K = TypeVar("K", bound=Hashable)
FusionMethod = Literal["score", "rrf"]
FUSION_METHODS: tuple[FusionMethod, ...] = ("score", "rrf")
RRF_K = 60


@dataclass(frozen=True)
class Fusion:
    """How a hybrid search combines its dense and BM25 rankings.

    Example:
        ```python
        Retriever(store, fusion=Fusion("rrf", candidates=50))
        ```
    """

    method: FusionMethod = "score"
    """``score``: ``alpha * minmax(dense) + (1 - alpha) * minmax(bm25)``;
    ``rrf``: ``alpha / (rrf_k + dense rank) + (1 - alpha) / (rrf_k + bm25 rank)``."""
    alpha: float = 0.5
    """Weight of the dense ranking, 0..1; BM25 gets ``1 - alpha``."""
    candidates: int = 300
    """Chunks taken from each ranking before fusing. Min-max fusion needs a deep list: its
    last candidate sets the zero of the scale."""
    rrf_k: int = RRF_K
    """The RRF constant (``rrf`` only)."""

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise RetrievalError(f"unknown fusion {self.method!r}: use score or rrf")
        if not 0.0 <= self.alpha <= 1.0:
            raise RetrievalError(f"fusion alpha must be within 0..1, got {self.alpha}")
        if self.candidates < 1:
            raise RetrievalError(f"fusion candidates must be at least 1, got {self.candidates}")
        if self.rrf_k < 0:
            raise RetrievalError(f"the RRF constant must not be negative, got {self.rrf_k}")

    @classmethod
    def named(cls, method: str) -> Fusion:
        """The fusion a setting names: ``score``, or ``rrf`` with its usual 50 candidates."""
        return cls("rrf", candidates=50) if method == "rrf" else cls(cast(FusionMethod, method))

    def fuse(self, rankings: Sequence[Sequence[tuple[K, float]]], weights: Sequence[float]
             ) -> list[tuple[K, float]]:
        """``rankings`` of (item, score), best first, fused by this method; best first."""
        if self.method == "rrf":
            ids = [[item for item, _ in ranking] for ranking in rankings]
            return reciprocal_rank_fusion(ids, self.rrf_k, weights)
        return min_max_fusion(rankings, weights)


def _weights(count: int, weights: Sequence[float] | None) -> Sequence[float]:
    if weights is None:
        return [1.0] * count
    if len(weights) != count:
        raise ValueError(f"{count} rankings but {len(weights)} weights")
    return weights


def _ranked(scores: dict[K, float]) -> list[tuple[K, float]]:
    return sorted(scores.items(), key=lambda pair: -pair[1])  # stable: ties by first seen


def reciprocal_rank_fusion(rankings: Sequence[Sequence[K]], k: int = RRF_K,
                           weights: Sequence[float] | None = None) -> list[tuple[K, float]]:
    """Fuse ranked lists: score = sum of weight / (k + rank), rank from 1."""
    scores: dict[K, float] = {}
    for ranking, weight in zip(rankings, _weights(len(rankings), weights), strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return _ranked(scores)


def min_max(ranking: Sequence[tuple[K, float]]) -> dict[K, float]:
    """Scores scaled to 0..1 within the list (best 1, last 0); all 1.0 if they are equal."""
    if not ranking:
        return {}
    low = min(score for _, score in ranking)
    span = max(score for _, score in ranking) - low
    return {item: (score - low) / span if span else 1.0 for item, score in ranking}


def min_max_fusion(rankings: Sequence[Sequence[tuple[K, float]]],
                   weights: Sequence[float] | None = None) -> list[tuple[K, float]]:
    """Fuse scored lists: score = sum of weight * min-max scaled score; absent counts 0."""
    scores: dict[K, float] = {}
    for ranking, weight in zip(rankings, _weights(len(rankings), weights), strict=True):
        for item, scaled in min_max(ranking).items():
            scores[item] = scores.get(item, 0.0) + weight * scaled
    return _ranked(scores)


__all__ = ["FUSION_METHODS", "RRF_K", "Fusion", "FusionMethod", "min_max", "min_max_fusion",
           "reciprocal_rank_fusion"]
