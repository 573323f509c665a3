"""The chromadb store: collections of chunks with their source, position and hashes.

Embedded (``PersistentClient`` under the data folder) by default; a shared Chroma server
when a URL is given (``ORCHESTRATOR_CHROMA_URL``). Each collection records the embedder
that filled it, and refuses vectors from another one.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from orchestrator.config import Settings
from retrieval.embedders import Embedder, get_embedder
from retrieval.errors import EmbedderMismatchError, RetrievalError

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]$")
_PAGE = 1000
WRITE_BATCH = 256
"""Chunks embedded and written together: bounds an ingest's memory."""
Metadata = dict[str, str | int | float | bool]


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk as stored: id, text and flat metadata (source, title, position, hashes)."""

    id: str
    text: str
    metadata: Metadata


@dataclass(frozen=True)
class CollectionStats:
    name: str
    chunks: int
    sources: int
    embedder: str
    dimension: int


@dataclass
class StoredChunks:
    """All chunks of a collection, aligned lists."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    metadatas: list[Metadata] = field(default_factory=list)


def index_text(text: str, metadata: Metadata) -> str:
    """What gets indexed and embedded: title and heading path, then the chunk's text."""
    parts = [str(metadata.get("title") or ""), str(metadata.get("heading") or ""), text]
    return "\n".join(p for p in parts if p)


def check_collection_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise RetrievalError(
            f"invalid collection name {name!r}: use 3-63 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return name


class KnowledgeStore:
    """Collections of chunks in chromadb, embedded by one embedder.

    Example:
        ```python
        store = KnowledgeStore(Path("~/.local/share/orchestrator/chroma"), embedder="minilm")
        store.stats()
        ```
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        url: str | None = None,
        embedder: Embedder | str | None = None,
    ) -> None:
        if (path is None) == (url is None):
            raise RetrievalError("give the store either a folder or a Chroma server URL")
        self.path = Path(path).expanduser() if path is not None else None
        self.url = url
        self._embedder_spec = embedder
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> KnowledgeStore:
        """The Chroma server at ``chroma_url`` if set, else the embedded store under ``home``."""
        if settings.chroma_url:
            return cls(url=settings.chroma_url, embedder=settings.embedder)
        return cls(settings.chroma_path, embedder=settings.embedder)

    @property
    def embedder(self) -> Embedder:
        return get_embedder(self._embedder_spec)

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        settings = ChromaSettings(anonymized_telemetry=False)
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(self.path), settings=settings)
        assert self.url is not None
        parsed = urlparse(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise RetrievalError(f"bad Chroma URL {self.url!r}: use http://HOST:PORT")
        try:
            client = chromadb.HttpClient(
                host=parsed.hostname, port=parsed.port or (443 if parsed.scheme == "https" else 80),
                ssl=parsed.scheme == "https", settings=settings,
            )
            client.heartbeat()
        except Exception as exc:
            raise RetrievalError(f"cannot reach the Chroma server at {self.url}: {exc}") from None
        return client

    # --- collections ----------------------------------------------------------------------

    def collection_names(self) -> list[str]:
        return sorted(c.name for c in self.client.list_collections())

    def has_collection(self, name: str) -> bool:
        return name in self.collection_names()

    def collection(self, name: str, *, create: bool = False) -> Any:
        """The chroma collection, checked against this store's embedder."""
        check_collection_name(name)
        embedder = self.embedder
        if create:
            col = self.client.get_or_create_collection(
                name, embedding_function=None,
                metadata={"embedder": embedder.name, "dimension": embedder.dimension,
                          "version": 0},
                configuration={"hnsw": {"space": "cosine"}},
            )
        else:
            from chromadb.errors import NotFoundError

            try:
                col = self.client.get_collection(name, embedding_function=None)
            except NotFoundError:
                known = ", ".join(self.collection_names()) or "none yet"
                raise RetrievalError(
                    f"no collection named {name!r} (collections: {known})") from None
        meta = col.metadata or {}
        if meta.get("embedder") != embedder.name or meta.get("dimension") != embedder.dimension:
            raise EmbedderMismatchError(
                f"collection {name!r} was embedded with {meta.get('embedder')} "
                f"({meta.get('dimension')} dims) but the store uses {embedder.name} "
                f"({embedder.dimension} dims): set ORCHESTRATOR_EMBEDDER={meta.get('embedder')} "
                "or ingest into a new collection"
            )
        return col

    def version(self, name: str) -> int:
        """A number that changes whenever the collection's chunks change."""
        return int((self.collection(name).metadata or {}).get("version", 0))

    def _bump_version(self, col: Any) -> None:
        meta = dict(col.metadata or {})
        meta["version"] = int(meta.get("version", 0)) + 1
        col.modify(metadata=meta)

    def stats(self) -> list[CollectionStats]:
        out = []
        for name in self.collection_names():
            col = self.client.get_collection(name, embedding_function=None)
            meta = col.metadata or {}
            sources = {m.get("source") for m in self._iter_metadatas(col)}
            out.append(CollectionStats(name, col.count(), len(sources),
                                       str(meta.get("embedder")), int(meta.get("dimension", 0))))
        return out

    def delete_collection(self, name: str) -> None:
        self.client.delete_collection(check_collection_name(name))

    # --- chunks ---------------------------------------------------------------------------

    def source_hashes(self, name: str) -> dict[str, str]:
        """``source -> file_hash`` of everything in the collection (empty if it is new)."""
        col = self.collection(name, create=True)
        return {str(m.get("source")): str(m.get("file_hash")) for m in self._iter_metadatas(col)}

    def write_sources(self, name: str, sources: Sequence[tuple[str, str, Sequence[ChunkRecord]]],
                      *, batch_size: int = WRITE_BATCH) -> int:
        """Store new versions of whole sources: ``(source, file_hash, chunks)`` each.

        Chunks are embedded and added ``batch_size`` at a time, so memory stays bounded
        however large a file is. The sources' old chunks (those this call did not write) are
        deleted only once every new chunk is in; if any batch fails, the chunks this call added are
        deleted again and the error is raised: each source keeps its previous version whole,
        never half a file. Returns the number of chunks written.
        """
        if batch_size < 1:
            raise RetrievalError(f"batch_size must be at least 1, got {batch_size}")
        col = self.collection(name, create=True)
        records = [c for _, _, chunks in sources for c in chunks]
        added: list[str] = []
        try:
            for start in range(0, len(records), batch_size):
                self._stage(col, records[start:start + batch_size], added)
        except BaseException as exc:
            self._roll_back(col, added, exc)
            raise
        self._delete_stale(col, sources)
        if sources:
            self._bump_version(col)
        return len(records)

    def _stage(self, col: Any, part: Sequence[ChunkRecord], added: list[str]) -> None:
        """Embed and upsert one batch, recording in ``added`` the ids not stored before."""
        ids = [c.id for c in part]
        existing = set(col.get(ids=ids, include=[])["ids"])
        vectors = self.embedder.embed_documents([index_text(c.text, c.metadata) for c in part])
        added.extend(i for i in ids if i not in existing)  # before the write: a partial one too
        col.upsert(ids=ids, documents=[c.text for c in part],
                   metadatas=[dict(c.metadata) for c in part], embeddings=vectors)

    def _roll_back(self, col: Any, added: Sequence[str], exc: BaseException) -> None:
        try:
            for start in range(0, len(added), _PAGE):
                col.delete(ids=list(added[start:start + _PAGE]))
        except Exception as cleanup:
            exc.add_note(f"rolling back {len(added)} staged chunks also failed: {cleanup}")

    def _delete_stale(self, col: Any, sources: Sequence[tuple[str, str, Sequence[ChunkRecord]]]
                      ) -> None:
        """Delete the chunks of ``sources`` that this write did not store: older versions."""
        written = {c.id for _, _, chunks in sources for c in chunks}
        names = [source for source, _, _ in sources]
        for start in range(0, len(names), _PAGE):
            # Ids only: fetching metadata for every chunk just written costs memory.
            got = col.get(where={"source": {"$in": names[start:start + _PAGE]}}, include=[])
            stale = [i for i in got["ids"] if i not in written]
            for page in range(0, len(stale), _PAGE):
                col.delete(ids=stale[page:page + _PAGE])

    def delete_source(self, name: str, source: str) -> None:
        col = self.collection(name, create=True)
        col.delete(where={"source": source})
        self._bump_version(col)

    def all_chunks(self, name: str) -> StoredChunks:
        col = self.collection(name)
        out = StoredChunks()
        for offset in range(0, col.count(), _PAGE):
            got = col.get(limit=_PAGE, offset=offset, include=["documents", "metadatas"])
            out.ids.extend(got["ids"])
            out.texts.extend(got["documents"] or [])
            out.metadatas.extend(got["metadatas"] or [])
        return out

    def dense_search(self, name: str, vector: list[float], k: int,
                     where: dict[str, Any] | None = None) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the ``k`` nearest chunks."""
        got = self.collection(name).query(query_embeddings=[vector], n_results=k,
                                          where=where or None, include=["distances"])
        ids, distances = got["ids"][0], (got["distances"] or [[]])[0]
        return [(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=True)]

    def get_chunks(self, name: str, ids: Sequence[str]) -> dict[str, tuple[str, Metadata]]:
        if not ids:
            return {}
        got = self.collection(name).get(ids=list(ids), include=["documents", "metadatas"])
        return {i: (t, m) for i, t, m in zip(got["ids"], got["documents"] or [],
                                             got["metadatas"] or [], strict=True)}

    def _iter_metadatas(self, col: Any) -> Iterator[Metadata]:
        for offset in range(0, col.count(), _PAGE):
            got = col.get(limit=_PAGE, offset=offset, include=["metadatas"])
            yield from got["metadatas"] or []
