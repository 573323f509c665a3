"""BM25 over a collection's chunks (bm25s, English stopwords, Snowball stemming).

The index is built from the chunks stored in chromadb and cached per collection version,
so it is rebuilt only after an ingest changed the collection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from orchestrator.retrieval.store import Metadata, index_text

_TOKEN_PATTERN = r"(?u)\b\w[\w-]*\w\b|\b\w\b"


class Bm25Index:
    """A BM25 index over chunk ids."""

    def __init__(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        import bm25s
        import Stemmer

        self.ids = list(ids)
        self._tokenizer = bm25s.tokenization.Tokenizer(
            stopwords="en", stemmer=Stemmer.Stemmer("english"), splitter=_TOKEN_PATTERN)
        self._bm25 = bm25s.BM25()
        if self.ids:
            tokens = self._tokenizer.tokenize(list(texts), show_progress=False, return_as="ids")
            self._bm25.index(tokens, show_progress=False)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: str, k: int, mask: Sequence[bool] | None = None
               ) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) of the best ``k`` chunks with a positive score."""
        if not self.ids or k <= 0:
            return []
        tokens = self._tokenizer.tokenize([query], update_vocab=False, show_progress=False,
                                          return_as="ids")
        if not tokens or not any(tokens[0]):
            return []
        weight: Any = None
        if mask is not None:
            import numpy as np  # only here: bm25s needs it anyway, the CLI's start does not

            weight = np.asarray(mask, dtype=np.float32)
            if not weight.any():
                return []
        docs, scores = self._bm25.retrieve(tokens, k=min(k, len(self.ids)), show_progress=False,
                                           weight_mask=weight, n_threads=1)
        return [(self.ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0], strict=True)
                if s > 0]


class Bm25Cache:
    """One index per (collection, version); building is locked so it happens once."""

    def __init__(self) -> None:
        self._indexes: dict[str, tuple[int, Bm25Index, list[Metadata]]] = {}
        self._lock = threading.Lock()

    def get(self, collection: str, version: int,
            load: Callable[[], tuple[list[str], list[str], list[Metadata]]]
            ) -> tuple[Bm25Index, list[Metadata]]:
        with self._lock:
            cached = self._indexes.get(collection)
            if cached is None or cached[0] != version:
                ids, texts, metadatas = load()
                index = Bm25Index(ids, [index_text(t, m) for t, m in
                                        zip(texts, metadatas, strict=True)])
                cached = (version, index, metadatas)
                self._indexes[collection] = cached
            return cached[1], cached[2]
