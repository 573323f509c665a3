"""The chromadb store: collections of chunks with their source, position and hashes.

Embedded (``PersistentClient`` under the data folder) by default; a shared Chroma server
when a URL is given (``ORCHESTRATOR_CHROMA_URL``). Each collection records the embedder
that filled it, and refuses vectors from another one.

A source is written *staged* (its chunks carry ``staged: True``, which every read leaves
out) and published only once its last chunk is in, so a reader never sees half a file,
even after the writer was killed. Each chunk records its version's ``chunk_count``, so a
version is known to be whole. In the embedded store, processes take file locks to create
the database and to write a collection, and a writer deletes the staged chunks that a
killed one left behind.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from orchestrator.config import Settings
from orchestrator.retrieval import _staging
from orchestrator.retrieval._staging import NOT_STAGED, PAGE, is_staged, staged_metadata
from orchestrator.retrieval.embedders import Embedder, get_embedder
from orchestrator.retrieval.errors import EmbedderMismatchError, RetrievalError
from orchestrator.retrieval.locking import file_lock

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]$")
WRITE_BATCH = 256
"""Chunks embedded and written together: bounds an ingest's memory."""
Metadata = dict[str, str | int | float | bool]
_LOCKS = ".locks"


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


@dataclass(frozen=True)
class Deletion:
    """What a delete removed (or would remove)."""

    collection: str
    source: str | None
    """The source asked for; ``None`` when the whole collection goes."""
    sources: tuple[str, ...]
    """The sources removed: a JSONL file's documents are ``file#id`` each."""
    chunks: int

    def to_dict(self) -> dict[str, object]:
        return {"collection": self.collection, "source": self.source,
                "sources": list(self.sources), "chunks": self.chunks}


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
            # Opening a new folder creates the database's tables; processes doing that at
            # once fail ("table collections already exists", "database is locked").
            with file_lock(self.path / _LOCKS / "open.lock"):
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
            col = self._existing(name)
        meta = col.metadata or {}
        if meta.get("embedder") != embedder.name or meta.get("dimension") != embedder.dimension:
            raise EmbedderMismatchError(
                f"collection {name!r} was embedded with {meta.get('embedder')} "
                f"({meta.get('dimension')} dims) but the store uses {embedder.name} "
                f"({embedder.dimension} dims): set ORCHESTRATOR_EMBEDDER={meta.get('embedder')} "
                "or ingest into a new collection"
            )
        return col

    def _existing(self, name: str) -> Any:
        """The chroma collection ``name``, whichever embedder filled it."""
        from chromadb.errors import NotFoundError

        try:
            return self.client.get_collection(check_collection_name(name),
                                              embedding_function=None)
        except NotFoundError:
            known = ", ".join(self.collection_names()) or "none yet"
            raise RetrievalError(f"no collection named {name!r} (collections: {known})") from None

    def version(self, name: str) -> int:
        """A number that changes whenever the collection's chunks change."""
        return int((self.collection(name).metadata or {}).get("version", 0))

    def _bump_version(self, col: Any) -> None:
        meta = dict(col.metadata or {})
        meta["version"] = int(meta.get("version", 0)) + 1
        col.modify(metadata=meta)

    def stats(self) -> list[CollectionStats]:
        """Published chunks and sources of every collection."""
        out = []
        for name in self.collection_names():
            col = self._existing(name)
            meta = col.metadata or {}
            metadatas = list(self._iter_metadatas(col))
            out.append(CollectionStats(name, len(metadatas),
                                       len({m.get("source") for m in metadatas}),
                                       str(meta.get("embedder")), int(meta.get("dimension", 0))))
        return out

    @contextmanager
    def _writing(self, name: str) -> Iterator[bool]:
        """Hold ``name``'s write lock in the embedded store; yields whether a lock is held.

        A Chroma server is shared between machines, which a file lock cannot cover.
        """
        if self.path is None:
            yield False
            return
        with file_lock(self.path / _LOCKS / f"collection-{check_collection_name(name)}.lock"):
            yield True

    # --- deleting -------------------------------------------------------------------------

    def deletion(self, name: str, source: str | None = None) -> Deletion:
        """What :meth:`delete` would remove, without removing anything.

        ``source`` is a stored source (``teamA/README.md``); a JSONL file's name stands for
        all its documents (``faq.jsonl`` for ``faq.jsonl#q1``, ...).

        Raises:
            RetrievalError: no such collection, or no such source in it.
        """
        col = self._existing(name)
        counts = Counter(str(m.get("source")) for m in self._iter_metadatas(col, staged=True))
        if source is None:
            return Deletion(name, None, tuple(sorted(counts)), col.count())
        matched = sorted(s for s in counts if s == source or s.startswith(f"{source}#"))
        if not matched:
            raise RetrievalError(f"no source {source!r} in collection {name!r} "
                                 f"({_source_hint(source, sorted(counts))})")
        return Deletion(name, source, tuple(matched), sum(counts[s] for s in matched))

    def delete(self, name: str, source: str | None = None) -> Deletion:
        """Delete the collection ``name``, or only ``source``'s chunks in it.

        Deleting reads no vectors, so it works whichever embedder filled the collection.

        Raises:
            RetrievalError: no such collection, or no such source in it.
        """
        with self._writing(name):
            gone = self.deletion(name, source)
            if source is None:
                self.client.delete_collection(name)
                return gone
            col = self._existing(name)
            for page in _staging.pages(gone.sources):
                col.delete(where={"source": {"$in": page}})
            self._bump_version(col)
        return gone

    def delete_collection(self, name: str) -> Deletion:
        return self.delete(name)

    # --- writing --------------------------------------------------------------------------

    def source_hashes(self, name: str) -> dict[str, str]:
        """``source -> file_hash`` of the sources stored whole (empty if there is no collection).

        A source counts only when its published chunks are one version with as many chunks
        as that version has, so one an interrupted ingest left half-written is ingested again.
        """
        if not self.has_collection(name):
            return {}
        chunks: Counter[tuple[str, str]] = Counter()
        expected: dict[tuple[str, str], set[object]] = {}
        for meta in self._iter_metadatas(self.collection(name)):
            key = (str(meta.get("source")), str(meta.get("file_hash")))
            chunks[key] += 1
            expected.setdefault(key, set()).add(meta.get("chunk_count"))
        versions = Counter(source for source, _ in chunks)
        return {source: file_hash for (source, file_hash), count in chunks.items()
                if versions[source] == 1 and expected[(source, file_hash)] == {count}}

    def write_sources(self, name: str, sources: Sequence[tuple[str, str, Sequence[ChunkRecord]]],
                      *, batch_size: int = WRITE_BATCH) -> int:
        """Store new versions of whole sources: ``(source, file_hash, chunks)`` each.

        Chunks are embedded and added ``batch_size`` at a time, staged, so memory stays
        bounded however large a file is and no reader sees them yet. Once every new chunk is
        in, the sources' old chunks are deleted and the new ones published. If a batch fails,
        the chunks this call added are deleted again and the error is raised: each source
        keeps its previous version whole, never half a file. If the process is killed
        instead, the staged chunks stay unread and the next write deletes them. Returns the
        number of chunks written.
        """
        if batch_size < 1:
            raise RetrievalError(f"batch_size must be at least 1, got {batch_size}")
        records = [ChunkRecord(c.id, c.text, staged_metadata(c.metadata, source, file_hash,
                                                             len(chunks)))
                   for source, file_hash, chunks in sources for c in chunks]
        with self._writing(name) as exclusive:
            col = self.collection(name, create=True)
            if exclusive:  # no other writer: staged chunks are a killed writer's leftovers
                _staging.delete_leftovers(col)
            added: list[str] = []
            hidden: list[str] = []
            try:
                for start in range(0, len(records), batch_size):
                    part = records[start:start + batch_size]
                    vectors = self.embedder.embed_documents(
                        [index_text(c.text, c.metadata) for c in part])
                    _staging.stage(col, [c.id for c in part], [c.text for c in part],
                                   [c.metadata for c in part], vectors, added, hidden)
            except BaseException as exc:
                _staging.roll_back(col, added, hidden, exc)
                raise
            _staging.publish(col, [source for source, _, _ in sources], [r.id for r in records])
            if sources:
                self._bump_version(col)
        return len(records)

    # --- reading --------------------------------------------------------------------------

    def all_chunks(self, name: str) -> StoredChunks:
        """Every published chunk of the collection."""
        col = self.collection(name)
        out = StoredChunks()
        for got in self._pages_of(col, ["documents", "metadatas"]):
            for i, text, meta in zip(got["ids"], got["documents"] or [], got["metadatas"] or [],
                                     strict=True):
                if not is_staged(meta):
                    out.ids.append(i)
                    out.texts.append(text)
                    out.metadatas.append(meta)
        return out

    def dense_search(self, name: str, vector: list[float], k: int,
                     where: dict[str, Any] | None = None) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the ``k`` nearest published chunks."""
        col = self.collection(name)
        got = col.query(query_embeddings=[vector], n_results=k, where=where or None,
                        include=["distances", "metadatas"])
        if any(is_staged(m) for m in (got["metadatas"] or [[]])[0]):
            # An ingest is under way (or was killed): ask again without its chunks. Only
            # then, as the filter makes a query over a large collection far slower.
            where = {"$and": [where, NOT_STAGED]} if where else NOT_STAGED
            got = col.query(query_embeddings=[vector], n_results=k, where=where,
                            include=["distances"])
        ids, distances = got["ids"][0], (got["distances"] or [[]])[0]
        return [(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=True)]

    def get_chunks(self, name: str, ids: Sequence[str]) -> dict[str, tuple[str, Metadata]]:
        """Text and metadata of the published chunks among ``ids``."""
        if not ids:
            return {}
        got = self.collection(name).get(ids=list(ids), include=["documents", "metadatas"])
        return {i: (t, m) for i, t, m in zip(got["ids"], got["documents"] or [],
                                             got["metadatas"] or [], strict=True)
                if not is_staged(m)}

    def _iter_metadatas(self, col: Any, *, staged: bool = False) -> Iterator[Metadata]:
        """Metadata of the published chunks (and the staged ones too if ``staged``)."""
        for got in self._pages_of(col, ["metadatas"]):
            yield from (m for m in got["metadatas"] or [] if staged or not is_staged(m))

    @staticmethod
    def _pages_of(col: Any, include: list[str]) -> Iterator[dict[str, Any]]:
        for offset in range(0, col.count(), PAGE):
            yield col.get(limit=PAGE, offset=offset, include=include)


def _source_hint(source: str, known: Sequence[str]) -> str:
    """Sources in another folder with the same name, else the collection's sources."""
    files = sorted({k.split("#", 1)[0] for k in known})
    similar = [f for f in files if f.endswith(f"/{source}")]
    if similar:
        return f"did you mean {', '.join(similar)}?"
    if not known:
        return "it has no sources"
    shown = ", ".join(known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
    return f"its sources: {shown}"
