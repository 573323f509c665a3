"""The knowledge side of the service API: collections, ingest, search, delete.

The CLI's ``ingest`` and ``kb`` commands (and the HTTP server) go through this, never
through the store directly.

Example:
    ```python
    kb = KnowledgeBase.from_settings()
    kb.ingest(["docs/"], "handbook")
    for hit in kb.search("how do I fail over web-3?", k=3):
        print(hit.citation, hit.score)
    ```
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from orchestrator.config import Settings, ensure_home, load_settings
from orchestrator.errors import RequestError
from orchestrator.retrieval.fusion import FUSION_METHODS, Fusion
from orchestrator.retrieval.ingest import IngestReport, ingest_paths
from orchestrator.retrieval.search import (
    SEARCH_MODES,
    Hit,
    Retriever,
    SearchFilters,
    SearchMode,
)
from orchestrator.retrieval.store import CollectionStats, Deletion, KnowledgeStore


class KnowledgeBase:
    """A knowledge store with the settings' search defaults."""

    def __init__(self, store: KnowledgeStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> KnowledgeBase:
        """The knowledge base the settings name (embedded under ``ORCHESTRATOR_HOME`` or a
        Chroma server)."""
        settings = settings or load_settings()
        if settings.chroma_url is None:  # embedded: it lives in the data folder
            ensure_home(settings)
        return cls(KnowledgeStore.from_settings(settings), settings)

    def collections(self) -> list[CollectionStats]:
        """Every collection with its size, sources and embedder."""
        return self.store.stats()

    def ingest(self, paths: Sequence[str | Path], collection: str, *,
               tags: Sequence[str] = (),
               on_progress: Callable[[int, int, str], None] | None = None) -> IngestReport:
        """Ingest files or folders into ``collection`` (unchanged files are skipped)."""
        return ingest_paths(self.store, paths, collection, tags=list(tags),
                            on_progress=on_progress)

    def search(self, query: str, collections: Sequence[str] = (), *, k: int = 5,
               mode: str = "hybrid", source: str | None = None, tags: Sequence[str] = (),
               fusion: str | None = None) -> list[Hit]:
        """The best ``k`` chunks for ``query`` in ``collections`` (all when empty).

        ``mode``: hybrid, dense or bm25; ``fusion`` (hybrid): score or rrf, default the
        settings'. A bad mode or fusion is a :class:`RequestError` naming the choices.
        """
        if mode not in SEARCH_MODES:
            raise RequestError(f"unknown search mode {mode!r}: use {', '.join(SEARCH_MODES)}")
        method = fusion or self.settings.fusion
        if method not in FUSION_METHODS:
            raise RequestError(f"unknown fusion {method!r}: use {', '.join(FUSION_METHODS)}")
        retriever = Retriever(self.store, fusion=Fusion.named(method))
        targets = list(collections) or self.store.collection_names()
        return retriever.search(query, targets, k=k, mode=cast(SearchMode, mode),
                                filters=SearchFilters(source=source, tags=tuple(tags)))

    def deletion(self, collection: str, source: str | None = None) -> Deletion:
        """What :meth:`delete` would remove (nothing is removed)."""
        return self.store.deletion(collection, source)

    def delete(self, collection: str, source: str | None = None) -> Deletion:
        """Delete a collection, or one source from it; what was removed."""
        return self.store.delete(collection, source)
