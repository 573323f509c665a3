"""Search: dense (chromadb), BM25 (bm25s), or both fused by reciprocal rank fusion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from retrieval.bm25 import Bm25Cache
from retrieval.errors import RetrievalError
from retrieval.store import KnowledgeStore, Metadata, index_text

SearchMode = Literal["hybrid", "dense", "bm25"]
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "dense", "bm25")
RRF_K = 60


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk with where it came from."""

    collection: str
    chunk_id: str
    source: str
    position: int
    title: str
    heading: str
    text: str
    score: float
    metadata: Metadata = field(default_factory=dict, compare=False)

    @property
    def citation(self) -> str:
        """``source#chunk``: what answers cite."""
        return f"{self.source}#{self.position}"


@dataclass(frozen=True)
class SearchFilters:
    """Metadata filters: an exact source and/or tags that must all be present."""

    source: str | None = None
    tags: tuple[str, ...] = ()

    def chroma_where(self) -> dict[str, Any] | None:
        clauses: list[dict[str, Any]] = []
        if self.source:
            clauses.append({"source": self.source})
        clauses.extend({f"tag:{t}": True} for t in self.tags)
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def matches(self, metadata: Metadata) -> bool:
        if self.source and metadata.get("source") != self.source:
            return False
        return all(metadata.get(f"tag:{t}") is True for t in self.tags)

    @property
    def empty(self) -> bool:
        return not self.source and not self.tags


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = RRF_K
                           ) -> list[tuple[str, float]]:
    """Fuse ranked id lists: score = sum of 1 / (k + rank), rank from 1."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


class Retriever:
    """Searches one or more collections of a :class:`KnowledgeStore`.

    Example:
        ```python
        hits = Retriever(store).search("which pool does web-3 fail over to?", ["it_ops"], k=5)
        print(hits[0].citation, hits[0].text)
        ```
    """

    def __init__(self, store: KnowledgeStore, *, candidates: int = 50) -> None:
        self.store = store
        self.candidates = candidates
        self._bm25 = Bm25Cache()

    def search(
        self,
        query: str,
        collections: Sequence[str],
        *,
        k: int = 5,
        mode: SearchMode = "hybrid",
        filters: SearchFilters | None = None,
    ) -> list[Hit]:
        """The best ``k`` chunks for ``query`` across ``collections``."""
        if mode not in SEARCH_MODES:
            raise RetrievalError(f"unknown search mode {mode!r}: use hybrid, dense or bm25")
        if not query.strip():
            raise RetrievalError("the search query is empty")
        if k < 1:
            raise RetrievalError("k must be at least 1")
        filters = filters or SearchFilters()
        depth = max(self.candidates, k)
        vector = self.store.embedder.embed_query(query) if mode != "bm25" else None
        rankings: list[list[tuple[str, str]]] = []  # (collection, id) per ranking
        scores: dict[tuple[str, str], float] = {}
        for name in collections:
            if mode != "bm25":
                assert vector is not None
                dense = self.store.dense_search(name, vector, depth, filters.chroma_where())
                rankings.append([(name, i) for i, _ in dense])
                scores.update({(name, i): s for i, s in dense})
            if mode != "dense":
                lexical = self.bm25_search(name, query, depth, filters)
                rankings.append([(name, i) for i, _ in lexical])
                scores.update({(name, i): s for i, s in lexical})
        if mode == "hybrid" or len(rankings) > 1:
            keyed = [[f"{c}\x00{i}" for c, i in r] for r in rankings]
            fused = [(tuple(key.split("\x00", 1)), score)
                     for key, score in reciprocal_rank_fusion(keyed)]
            ranked: list[tuple[tuple[str, str], float]] = [((c, i), s) for (c, i), s in fused]
        else:
            ranked = [(key, scores[key]) for key in rankings[0]] if rankings else []
        return self._hits(ranked[:k])

    def bm25_search(self, collection: str, query: str, k: int,
                    filters: SearchFilters | None = None) -> list[tuple[str, float]]:
        version = self.store.version(collection)

        def load() -> tuple[list[str], list[str], list[Metadata]]:
            stored = self.store.all_chunks(collection)
            return stored.ids, stored.texts, stored.metadatas

        index, metadatas = self._bm25.get(collection, version, load)
        mask = None if filters is None or filters.empty else [filters.matches(m)
                                                               for m in metadatas]
        return index.search(query, k, mask)

    def _hits(self, ranked: list[tuple[tuple[str, str], float]]) -> list[Hit]:
        by_collection: dict[str, list[str]] = {}
        for (collection, chunk_id), _ in ranked:
            by_collection.setdefault(collection, []).append(chunk_id)
        found = {(c, i): v for c, ids in by_collection.items()
                 for i, v in self.store.get_chunks(c, ids).items()}
        hits = []
        for (collection, chunk_id), score in ranked:
            if (collection, chunk_id) not in found:
                continue  # deleted between ranking and fetching
            text, meta = found[(collection, chunk_id)]
            hits.append(Hit(collection=collection, chunk_id=chunk_id,
                            source=str(meta.get("source", "")),
                            position=int(meta.get("position", 0)),
                            title=str(meta.get("title", "")), heading=str(meta.get("heading", "")),
                            text=text, score=round(score, 6), metadata=meta))
        return hits


__all__ = ["SEARCH_MODES", "Hit", "Retriever", "SearchFilters", "SearchMode", "index_text",
           "reciprocal_rank_fusion"]
