"""Search: dense (chromadb), BM25 (bm25s), or both fused (min-max score fusion or RRF)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.retrieval.bm25 import Bm25Cache
from orchestrator.retrieval.errors import RetrievalError
from orchestrator.retrieval.fusion import (
    FUSION_METHODS,
    Fusion,
    FusionMethod,
    reciprocal_rank_fusion,
)
from orchestrator.retrieval.store import KnowledgeStore, Metadata, index_text

SearchMode = Literal["hybrid", "dense", "bm25"]
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "dense", "bm25")
Key = tuple[str, str]  # (collection, chunk id)


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


class Retriever:
    """Searches one or more collections of a :class:`KnowledgeStore`.

    Example:
        ```python
        hits = Retriever(store).search("which pool does web-3 fail over to?", ["it_ops"], k=5)
        print(hits[0].citation, hits[0].text)
        ```
    """

    def __init__(self, store: KnowledgeStore, *, fusion: Fusion | None = None) -> None:
        self.store = store
        self.fusion = fusion or Fusion()
        self._bm25 = Bm25Cache()

    def search(
        self,
        query: str,
        collections: Sequence[str],
        *,
        k: int = 5,
        mode: SearchMode = "hybrid",
        filters: SearchFilters | None = None,
        fusion: Fusion | None = None,
    ) -> list[Hit]:
        """The best ``k`` chunks for ``query`` across ``collections``.

        Dense hits of several collections are merged by cosine similarity; BM25 lists (whose
        scores do not compare across collections) and the hybrid's two sides are fused by
        ``fusion`` (default: the retriever's).
        """
        if mode not in SEARCH_MODES:
            raise RetrievalError(f"unknown search mode {mode!r}: use hybrid, dense or bm25")
        if not query.strip():
            raise RetrievalError("the search query is empty")
        if k < 1:
            raise RetrievalError("k must be at least 1")
        filters = filters or SearchFilters()
        fusion = fusion or self.fusion
        fused = mode == "hybrid" or (mode == "bm25" and len(collections) > 1)
        depth = max(fusion.candidates, k) if fused else k
        dense: list[tuple[Key, float]] = []
        lexical: list[list[tuple[Key, float]]] = []
        if mode != "bm25":
            vector = self.store.embedder.embed_query(query)
            for name in collections:
                found = self.store.dense_search(name, vector, depth, filters.chroma_where())
                dense.extend(((name, i), s) for i, s in found)
            dense = sorted(dense, key=lambda pair: -pair[1])[:depth]
        if mode != "dense":
            lexical = [[((name, i), s) for i, s in self.bm25_search(name, query, depth, filters)]
                       for name in collections]
        if mode == "dense":
            ranked = dense
        elif not fused:
            ranked = lexical[0] if lexical else []
        elif mode == "hybrid":
            ranked = fusion.fuse([dense, *lexical],
                                 [fusion.alpha, *[1.0 - fusion.alpha] * len(lexical)])
        else:
            ranked = fusion.fuse(lexical, [1.0] * len(lexical))
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

    def _hits(self, ranked: Sequence[tuple[Key, float]]) -> list[Hit]:
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


__all__ = ["FUSION_METHODS", "SEARCH_MODES", "Fusion", "FusionMethod", "Hit", "Retriever",
           "SearchFilters", "SearchMode", "index_text", "reciprocal_rank_fusion"]
