"""What every section shares: the timed MiniLM embedder, throwaway stores, timed ingests,
and the :class:`Section` a measurement returns."""

from __future__ import annotations

import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.evals.bench.figures import Figure
from orchestrator.retrieval.embedders import Embedder, get_embedder
from orchestrator.retrieval.ingest import ingest_paths
from orchestrator.retrieval.search import SearchMode
from orchestrator.retrieval.store import KnowledgeStore

REPO = Path(__file__).resolve().parents[3]
SCIFACT_DIR = REPO.parent / "shared" / "data" / "scifact"
IT_OPS_QUERIES = REPO / "evals" / "datasets" / "it_ops_kb_queries.jsonl"
MODES: tuple[SearchMode, ...] = ("bm25", "dense", "hybrid")
SEED = 20240601


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Section:
    """A section's printed table, its JSON data and the figures it checks."""

    title: str
    table: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)


class BenchEmbedder:
    """The real embedder, timed; query vectors cached so latency can exclude embedding.

    ``embed_query`` computes a text's vector once (timed, into ``query_seconds``) and then
    returns the cached vector, so a search timed afterwards measures the search alone.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.document_seconds = 0.0
        self.document_calls: list[int] = []
        self.query_seconds: list[float] = []
        self._cache: dict[str, list[float]] = {}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        started = time.perf_counter()
        vectors = self.inner.embed_documents(texts)
        self.document_seconds += time.perf_counter() - started
        self.document_calls.append(len(texts))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        vector = self._cache.get(text)
        if vector is None:
            started = time.perf_counter()
            vector = self.inner.embed_query(text)
            self.query_seconds.append(time.perf_counter() - started)
            self._cache[text] = vector
        return vector

    def reset_counters(self) -> None:
        self.document_seconds = 0.0
        self.document_calls = []
        self.query_seconds = []


def minilm() -> BenchEmbedder:
    embedder = BenchEmbedder(get_embedder("minilm"))
    embedder.inner.embed_query("load the model")  # model load is not part of any figure
    return embedder


@contextmanager
def temp_store(embedder: Embedder, prefix: str) -> Iterator[KnowledgeStore]:
    """A fresh embedded store in a temporary folder, dropped (and uncached) afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{prefix}-") as folder:
        store = KnowledgeStore(Path(folder) / "chroma", embedder=embedder)
        try:
            yield store
        finally:
            from chromadb.api.client import SharedSystemClient

            SharedSystemClient.clear_system_cache()
            gc.collect()


@dataclass
class IngestRun:
    documents: int
    chunks: int
    seconds: float
    embed_seconds: float
    failed: int

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds else float("nan")


def timed_ingest(store: KnowledgeStore, embedder: BenchEmbedder, paths: Sequence[Path],
                 collection: str) -> IngestRun:
    embedder.reset_counters()
    report = ingest_paths(store, list(paths), collection)
    if report.failed:
        log(f"ingest of {collection}: {len(report.failed)} failed, first: {report.failed[0]}")
    return IngestRun(report.documents, report.chunks_added, report.seconds,
                     embedder.document_seconds, len(report.failed))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")
