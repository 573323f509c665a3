"""Retrieval benchmark: the issue's quality and speed figures against their targets.

1. BEIR SciFact (``../shared/data/scifact``; skipped when absent): the corpus ingested
   through ``ingest_paths`` with MiniLM; nDCG@10 and recall@100 at document level over the
   300 test queries for BM25, dense and hybrid. Target: hybrid nDCG@10 >= 0.72.
2. The labelled IT ops queries over the demo knowledge base: recall@5, MRR@10, nDCG@10.
   Target: hybrid nDCG@10 >= the better of dense and BM25.
3. Scale, generated text at 1k / 10k / 100k chunks: ingest throughput, BM25 build time,
   query embedding time, and search latency p50/p95 per mode excluding the query's own
   embedding. Target: hybrid p95 < 50 ms at 10k chunks.
4. RSS while ingesting 10k chunks, sampled every 0.2 s in a fresh subprocess. Target: flat
   (rise over the start < 150 MB, growth over the second half < 50 MB).

Fusion alternatives (RRF constant, candidate depth, weights, score fusion, per-document
fusion) are measured offline from the same dense and BM25 rankings, without changing the
retrieval code, so a missed quality target comes with the change that would meet it.

Run ``python -m evals.bench.retrieval [--json] [--skip-scale] [--sizes 1000,10000,100000]``;
the exit code is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import itertools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from evals.bench.metrics import mrr_at_k, ndcg_at_k, percentile, recall_at_k, unique
from retrieval.embedders import Embedder, get_embedder
from retrieval.ingest import ingest_paths
from retrieval.search import Retriever, SearchMode
from retrieval.store import ChunkRecord, KnowledgeStore

REPO = Path(__file__).resolve().parents[2]
SCIFACT_DIR = REPO.parent / "shared" / "data" / "scifact"
IT_OPS_QUERIES = REPO / "evals" / "datasets" / "it_ops_kb_queries.jsonl"
MODES: tuple[SearchMode, ...] = ("bm25", "dense", "hybrid")

SCIFACT_TARGET = 0.72
SCIFACT_HITS = 300  # chunk hits per query, deduplicated to documents
PUBLISHED = (("BM25, BEIR paper (Anserini)", 0.665), ("bm25s with stemming, this copy", 0.686))
IT_OPS_HITS = 10
LATENCY_TARGET_MS = 50.0
LATENCY_SIZE = 10_000
LATENCY_QUERIES, LATENCY_WARMUP, LATENCY_K = 200, 10, 10
DEFAULT_SIZES = (1_000, 10_000, 100_000)
MEMORY_CHUNKS = 10_000
MEMORY_INTERVAL = 0.2
MEMORY_RISE_MB, MEMORY_GROWTH_MB = 150.0, 50.0
SEED = 20240601


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Figure:
    """One measured figure and its target."""

    name: str
    value: float
    unit: str
    target: str
    ok: bool
    detail: str = ""


@dataclass
class Section:
    """A section's printed table, its JSON data and the figures it checks."""

    title: str
    table: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)


# --- the embedder and store used by every section -------------------------------------------


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
            _forget_chroma_clients()


def _forget_chroma_clients() -> None:
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


# --- fusion, as the retriever does it and the alternatives ----------------------------------

Ranking = list[tuple[str, float]]  # (chunk id, score), best first


@dataclass(frozen=True)
class Fusion:
    """A way to combine a dense and a BM25 ranking (``weights`` = dense, bm25)."""

    label: str
    depth: int
    rrf_k: int = 60
    weights: tuple[float, float] = (1.0, 1.0)
    alpha: float | None = None
    """Score fusion instead of RRF: alpha * minmax(dense) + (1 - alpha) * minmax(bm25)."""
    per_document: bool = False
    """Deduplicate each ranking to documents before fusing (SciFact only)."""


CURRENT_DEPTH_NOTE = "Retriever.search uses depth max(candidates=50, k)"
FUSIONS = (
    Fusion("RRF k=60, depth 300 (current code at k=300)", 300),
    Fusion("RRF k=60, depth 50 (current code at k<=50)", 50),
    Fusion("RRF k=60, depth 100", 100),
    Fusion("RRF k=20, depth 300", 300, rrf_k=20),
    Fusion("RRF k=20, depth 50", 50, rrf_k=20),
    Fusion("RRF k=10, depth 50", 50, rrf_k=10),
    Fusion("RRF k=60, dense x2, depth 300", 300, weights=(2.0, 1.0)),
    Fusion("RRF k=60, bm25 x2, depth 300", 300, weights=(1.0, 2.0)),
    Fusion("RRF k=60, bm25 x1.5, depth 50", 50, weights=(1.0, 1.5)),
    Fusion("min-max score fusion a=0.3, depth 300", 300, alpha=0.3),
    Fusion("min-max score fusion a=0.5, depth 300", 300, alpha=0.5),
    Fusion("min-max score fusion a=0.5, depth 50", 50, alpha=0.5),
    Fusion("min-max score fusion a=0.7, depth 300", 300, alpha=0.7),
    Fusion("RRF k=60 per document, depth 300", 300, per_document=True),
)


def _by_document(ranking: Ranking, doc_of: Mapping[str, str]) -> Ranking:
    seen: set[str] = set()
    out: Ranking = []
    for chunk_id, score in ranking:
        doc = doc_of[chunk_id]
        if doc not in seen:
            seen.add(doc)
            out.append((doc, score))
    return out


def _minmax(ranking: Ranking) -> dict[str, float]:
    if not ranking:
        return {}
    scores = [s for _, s in ranking]
    low, high = min(scores), max(scores)
    span = high - low
    return {i: (s - low) / span if span else 1.0 for i, s in ranking}


def fuse(dense: Ranking, bm25: Ranking, fusion: Fusion,
         doc_of: Mapping[str, str] | None = None) -> list[str]:
    """Fused ids, best first; ties broken by id as ``reciprocal_rank_fusion`` does."""
    if fusion.per_document:
        if doc_of is None:
            raise ValueError("per-document fusion needs the chunk -> document map")
        dense, bm25 = _by_document(dense, doc_of), _by_document(bm25, doc_of)
    dense, bm25 = dense[:fusion.depth], bm25[:fusion.depth]
    scores: dict[str, float] = {}
    if fusion.alpha is not None:
        for ranking, weight in ((dense, fusion.alpha), (bm25, 1 - fusion.alpha)):
            for item, score in _minmax(ranking).items():
                scores[item] = scores.get(item, 0.0) + weight * score
    else:
        for ranking, weight in zip((dense, bm25), fusion.weights, strict=True):
            for rank, (item, _) in enumerate(ranking, start=1):
                scores[item] = scores.get(item, 0.0) + weight / (fusion.rrf_k + rank)
    return [item for item, _ in sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))]


@dataclass
class QueryRankings:
    """One query's dense and BM25 rankings, from the retriever's lower-level pieces."""

    dense: Ranking
    bm25: Ranking


def lower_level_rankings(store: KnowledgeStore, retriever: Retriever, collection: str,
                         query: str, depth: int) -> QueryRankings:
    vector = store.embedder.embed_query(query)
    return QueryRankings(store.dense_search(collection, vector, depth),
                         retriever.bm25_search(collection, query, depth))


# --- 1. SciFact ------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _read_qrels(path: Path) -> dict[str, dict[str, float]]:
    qrels: dict[str, dict[str, float]] = {}
    with path.open(encoding="utf-8") as handle:
        next(handle)  # header
        for line in handle:
            if line.strip():
                query_id, doc_id, grade = line.split("\t")
                qrels.setdefault(query_id, {})[doc_id] = float(grade)
    return qrels


def _doc_id(source: str) -> str:
    return source.split("#", 1)[1]


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def scifact_metrics(doc_rankings: Sequence[Sequence[str]],
                    qrels: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return {
        "ndcg@10": _mean([ndcg_at_k(r, q, 10) for r, q in zip(doc_rankings, qrels, strict=True)]),
        "recall@100": _mean([recall_at_k(r, {d for d, g in q.items() if g > 0}, 100)
                             for r, q in zip(doc_rankings, qrels, strict=True)]),
    }


def bench_scifact(embedder: BenchEmbedder, folder: Path) -> tuple[Section, dict[str, Any]]:
    """Section 1, and the rankings the fusion sweep reuses."""
    section = Section("1. BEIR SciFact (test split), document level")
    corpus = folder / "corpus.jsonl"
    needed = [corpus, folder / "queries.jsonl", folder / "qrels" / "test.tsv"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        section.notes.append(f"SKIPPED: SciFact not found ({', '.join(missing)} missing); "
                             "the other sections still run")
        section.data = {"skipped": True, "missing": missing}
        return section, {}
    qrels_all = _read_qrels(folder / "qrels" / "test.tsv")
    texts = {str(q["_id"]): str(q["text"]) for q in _read_jsonl(folder / "queries.jsonl")}
    query_ids = [q for q in qrels_all if q in texts]
    qrels = [qrels_all[q] for q in query_ids]
    with temp_store(embedder, "scifact") as store:
        log(f"scifact: ingesting {corpus} through ingest_paths (MiniLM)")
        run = timed_ingest(store, embedder, [corpus], "scifact")
        log(f"scifact: {run.documents} documents, {run.chunks} chunks in {run.seconds:.1f} s")
        stored = store.all_chunks("scifact")
        doc_of = {i: _doc_id(str(m["source"])) for i, m in
                  zip(stored.ids, stored.metadatas, strict=True)}
        retriever = Retriever(store)
        started = time.perf_counter()
        retriever.bm25_search("scifact", "warm up", 1)
        bm25_build = time.perf_counter() - started
        rankings: dict[str, list[list[str]]] = {m: [] for m in MODES}
        lower: list[QueryRankings] = []
        for n, query_id in enumerate(query_ids, start=1):
            text = texts[query_id]
            lower.append(lower_level_rankings(store, retriever, "scifact", text, SCIFACT_HITS))
            for mode in MODES:
                hits = retriever.search(text, ["scifact"], k=SCIFACT_HITS, mode=mode)
                rankings[mode].append(unique(_doc_id(h.source) for h in hits))
            if n % 100 == 0:
                log(f"scifact: {n}/{len(query_ids)} queries")
    results = {mode: scifact_metrics(rankings[mode], qrels) for mode in MODES}
    current = FUSIONS[0]
    reproduced = sum(
        unique(doc_of[c] for c in fuse(r.dense, r.bm25, current)[:SCIFACT_HITS]) == official
        for r, official in zip(lower, rankings["hybrid"], strict=True))
    section.table = [["mode", "nDCG@10", "recall@100"]]
    section.table += [[m, f"{results[m]['ndcg@10']:.3f}", f"{results[m]['recall@100']:.3f}"]
                      for m in MODES]
    section.table += [[f"published: {name}", f"{value:.3f}", ""] for name, value in PUBLISHED]
    section.notes += [
        f"ingest: {run.documents} documents -> {run.chunks} chunks in {run.seconds:.1f} s "
        f"({run.documents / run.seconds:.0f} docs/s, {run.chunks_per_s:.0f} chunks/s; "
        f"embedding {run.embed_seconds:.1f} s of it); failed files: {run.failed}",
        f"BM25 index build {bm25_build:.2f} s; {len(query_ids)} test queries, "
        f"{SCIFACT_HITS} chunk hits each, deduplicated to documents (best chunk's rank)",
        f"offline RRF (k=60, depth {SCIFACT_HITS}) reproduces Retriever.search hybrid on "
        f"{reproduced}/{len(query_ids)} queries",
    ]
    hybrid = results["hybrid"]["ndcg@10"]
    section.figures.append(Figure(
        "SciFact hybrid nDCG@10", hybrid, "", f">= {SCIFACT_TARGET:.3f}", hybrid >= SCIFACT_TARGET,
        f"bm25 {results['bm25']['ndcg@10']:.3f}, dense {results['dense']['ndcg@10']:.3f}"))
    section.data = {"ingest": asdict(run), "bm25_build_s": round(bm25_build, 3),
                    "queries": len(query_ids), "metrics": results,
                    "published": dict(PUBLISHED), "offline_rrf_reproduces": reproduced}
    return section, {"lower": lower, "qrels": qrels, "doc_of": doc_of}


# --- 2. the labelled IT ops set --------------------------------------------------------------


def _normal(text: str) -> str:
    return " ".join(text.split())


def it_ops_relevant(query: Mapping[str, Any], ids: Sequence[str], texts: Sequence[str],
                    sources: Sequence[str]) -> tuple[set[str], int]:
    """Chunks matching any label (source equal, text containing the phrase), and how many
    labels matched no chunk at all."""
    relevant: set[str] = set()
    unmatched = 0
    for label in query["relevant"]:
        phrase = _normal(str(label["contains"]))
        found = {i for i, t, s in zip(ids, texts, sources, strict=True)
                 if s == label["source"] and phrase in _normal(t)}
        unmatched += not found
        relevant |= found
    return relevant, unmatched


def it_ops_metrics(rankings: Sequence[Sequence[str]], relevant: Sequence[set[str]]
                   ) -> dict[str, float]:
    pairs = list(zip(rankings, relevant, strict=True))
    return {"recall@5": _mean([recall_at_k(r, rel, 5) for r, rel in pairs]),
            "mrr@10": _mean([mrr_at_k(r, rel, 10) for r, rel in pairs]),
            "ndcg@10": _mean([ndcg_at_k(r, rel, 10) for r, rel in pairs])}


def bench_it_ops(embedder: BenchEmbedder) -> tuple[Section, dict[str, Any]]:
    from orchestrator.demo import ingest_demo_knowledge

    section = Section(f"2. Labelled IT ops queries ({IT_OPS_QUERIES.name}), chunk level")
    queries = _read_jsonl(IT_OPS_QUERIES)
    with temp_store(embedder, "itops") as store:
        log("it_ops: ingesting the demo knowledge base")
        reports = ingest_demo_knowledge(store)
        stored = store.all_chunks("it_ops")
        sources = [str(m.get("source")) for m in stored.metadatas]
        labelled = [it_ops_relevant(q, stored.ids, stored.texts, sources) for q in queries]
        relevant = [rel for rel, _ in labelled]
        retriever = Retriever(store)
        rankings: dict[str, list[list[str]]] = {m: [] for m in MODES}
        lower: list[QueryRankings] = []
        for query in queries:
            text = str(query["query"])
            lower.append(lower_level_rankings(store, retriever, "it_ops", text, SCIFACT_HITS))
            for mode in MODES:
                hits = retriever.search(text, ["it_ops"], k=IT_OPS_HITS, mode=mode)
                rankings[mode].append([h.chunk_id for h in hits])
    results = {mode: it_ops_metrics(rankings[mode], relevant) for mode in MODES}
    unmatched = sum(n for _, n in labelled)
    no_relevant = sum(not rel for rel in relevant)
    section.table = [["mode", "recall@5", "MRR@10", "nDCG@10"]]
    section.table += [[m, *(f"{results[m][k]:.3f}" for k in ("recall@5", "mrr@10", "ndcg@10"))]
                      for m in MODES]
    holds = {metric: results["hybrid"][metric] >= max(results["dense"][metric],
                                                      results["bm25"][metric])
             for metric in ("recall@5", "mrr@10", "ndcg@10")}
    section.notes += [
        f"{len(queries)} queries over {len(stored.ids)} chunks from "
        f"{sum(r.files for r in reports)} files; relevant chunks per query: "
        f"mean {_mean([len(r) for r in relevant]):.2f}; labels matching no chunk: {unmatched}; "
        f"queries with no relevant chunk: {no_relevant}",
        "hybrid >= max(dense, bm25): " + ", ".join(
            f"{metric} {'yes' if ok else 'NO'}" for metric, ok in holds.items()),
        f"search k={IT_OPS_HITS} (Retriever default candidates=50)",
    ]
    best = max(results["dense"]["ndcg@10"], results["bm25"]["ndcg@10"])
    hybrid = results["hybrid"]["ndcg@10"]
    section.figures.append(Figure(
        "IT ops hybrid nDCG@10 >= max(dense, bm25)", hybrid, "", f">= {best:.3f}",
        hybrid >= best,
        f"dense {results['dense']['ndcg@10']:.3f}, bm25 {results['bm25']['ndcg@10']:.3f}; "
        + ", ".join(f"{m} {'holds' if ok else 'does NOT hold'}" for m, ok in holds.items()
                    if m != "ndcg@10")))
    section.data = {"queries": len(queries), "chunks": len(stored.ids), "metrics": results,
                    "hybrid_at_least_best": holds, "labels_unmatched": unmatched,
                    "queries_without_relevant": no_relevant}
    return section, {"lower": lower, "relevant": relevant, "results": results}


# --- fusion sweep over both datasets ---------------------------------------------------------


def bench_fusions(scifact: Mapping[str, Any], it_ops: Mapping[str, Any]) -> Section:
    section = Section("Fusion alternatives (offline, same dense and BM25 rankings; "
                      "retrieval code unchanged)")
    section.table = [["fusion", "SciFact nDCG@10", "SciFact R@100", "IT ops nDCG@10",
                      "IT ops >= best"]]
    rows: list[dict[str, Any]] = []
    best_single = None
    if it_ops:
        res = it_ops["results"]
        best_single = max(res["dense"]["ndcg@10"], res["bm25"]["ndcg@10"])
    for fusion in FUSIONS:
        row: dict[str, Any] = {"fusion": fusion.label}
        cells = [fusion.label]
        if scifact:
            doc_of = scifact["doc_of"]
            fused = [fuse(r.dense, r.bm25, fusion, doc_of)[:SCIFACT_HITS]
                     for r in scifact["lower"]]
            docs = [ids if fusion.per_document else unique(doc_of[i] for i in ids)
                    for ids in fused]
            metrics = scifact_metrics(docs, scifact["qrels"])
            row["scifact"] = metrics
            recall = f"{metrics['recall@100']:.3f}" + ("*" if fusion.depth < 100 else "")
            cells += [f"{metrics['ndcg@10']:.3f}", recall]
        else:
            cells += ["-", "-"]
        if it_ops and not fusion.per_document:
            fused = [fuse(r.dense, r.bm25, fusion)[:IT_OPS_HITS] for r in it_ops["lower"]]
            metrics = it_ops_metrics(fused, it_ops["relevant"])
            row["it_ops"] = metrics
            assert best_single is not None
            cells += [f"{metrics['ndcg@10']:.3f}",
                      "yes" if metrics["ndcg@10"] >= best_single else "no"]
        else:
            cells += ["n/a", ""]
        section.table.append(cells)
        rows.append(row)
    section.notes += [
        "depth = candidates taken from each ranking before fusing; " + CURRENT_DEPTH_NOTE,
        "* fewer than 100 chunks per list, so recall@100 is capped",
        "per document: each ranking deduplicated to documents (source) before RRF; "
        "not applicable to the chunk-level IT ops labels",
    ]
    if best_single is not None:
        section.notes.append(f"IT ops best single mode nDCG@10: {best_single:.3f}")
    section.data = {"rows": rows}
    return section


# --- 3. scale --------------------------------------------------------------------------------

_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "ber", "dan", "fel", "gor",
              "hin", "jas", "kel", "mor", "nix", "pol", "quin", "sar", "tev", "ul", "wen",
              "yor", "zed", "ap", "en", "is", "od", "um")


class TextGenerator:
    """Random sentences from a fixed, Zipf-weighted vocabulary; deterministic per seed."""

    def __init__(self, seed: int = SEED, vocabulary: int = 5000) -> None:
        self.rng = random.Random(seed)
        words: set[str] = set()
        while len(words) < vocabulary:
            words.add("".join(self.rng.choices(_SYLLABLES, k=self.rng.randint(2, 3))))
        self.words = sorted(words)
        self.rng.shuffle(self.words)
        self._cum = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(vocabulary)))

    def _word(self) -> str:
        pick = self.rng.random() * self._cum[-1]
        return self.words[bisect.bisect_left(self._cum, pick)]

    def sentence(self, low: int = 6, high: int = 12) -> str:
        words = [self._word() for _ in range(self.rng.randint(low, high))]
        return " ".join(words).capitalize() + "."

    def document(self) -> tuple[str, str]:
        title = " ".join(self._word() for _ in range(3)).title()
        return title, " ".join(self.sentence() for _ in range(self.rng.randint(2, 3)))

    def write_jsonl(self, path: Path, count: int) -> list[str]:
        """``count`` one-chunk documents; returns their texts (to draw queries from)."""
        texts = []
        with path.open("w", encoding="utf-8") as handle:
            for n in range(count):
                title, text = self.document()
                texts.append(text)
                handle.write(json.dumps({"_id": f"g{n}", "title": title, "text": text}) + "\n")
        return texts

    def queries(self, texts: Sequence[str], count: int) -> list[str]:
        """Short queries: 2-5 words of a random document, plus a random word."""
        out = []
        for _ in range(count):
            words = self.rng.choice(texts).rstrip(".").lower().split()
            picked = self.rng.sample(words, k=min(len(words), self.rng.randint(2, 5)))
            out.append(" ".join([*picked, self._word()]))
        return out


def _ms(values: Sequence[float]) -> tuple[float, float]:
    return percentile(values, 50) * 1000, percentile(values, 95) * 1000


def bench_size(embedder: BenchEmbedder, size: int) -> dict[str, Any]:
    generator = TextGenerator(SEED + size)
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as folder:
        corpus = Path(folder) / f"generated-{size}.jsonl"
        texts = generator.write_jsonl(corpus, size)
        queries = generator.queries(texts, LATENCY_QUERIES + LATENCY_WARMUP)
        with temp_store(embedder, f"scale{size}") as store:
            log(f"scale {size}: ingesting")
            run = timed_ingest(store, embedder, [corpus], "scale")
            log(f"scale {size}: {run.chunks} chunks in {run.seconds:.1f} s; timing queries")
            retriever = Retriever(store)
            started = time.perf_counter()
            retriever.bm25_search("scale", queries[0], 1)
            bm25_build = time.perf_counter() - started
            embedder.reset_counters()
            for query in queries:
                embedder.embed_query(query)  # timed once each, cached for the searches
            embed = list(embedder.query_seconds)
            latency: dict[str, list[float]] = {}
            for mode in MODES:
                for query in queries[:LATENCY_WARMUP]:
                    retriever.search(query, ["scale"], k=LATENCY_K, mode=mode)
                samples = []
                for query in queries[LATENCY_WARMUP:]:
                    started = time.perf_counter()
                    retriever.search(query, ["scale"], k=LATENCY_K, mode=mode)
                    samples.append(time.perf_counter() - started)
                latency[mode] = samples
    return {"size": size, "ingest": asdict(run), "chunks_per_s": round(run.chunks_per_s, 1),
            "bm25_build_s": round(bm25_build, 3),
            "embed_query_ms": dict(zip(("p50", "p95"), _ms(embed), strict=True)),
            "latency_ms": {m: dict(zip(("p50", "p95"), _ms(v), strict=True))
                           for m, v in latency.items()}}


def bench_scale(embedder: BenchEmbedder, sizes: Sequence[int]) -> Section:
    section = Section("3. Scale: generated one-chunk documents, JSONL through ingest_paths")
    section.table = [["chunks", "ingest s", "chunks/s", "embed s", "bm25 build s",
                      "embed query p50/p95", *(f"{m} p50/p95" for m in MODES)]]
    rows = []
    for size in sizes:
        row = bench_size(embedder, size)
        rows.append(row)
        ingest, lat, emb = row["ingest"], row["latency_ms"], row["embed_query_ms"]
        section.table.append([
            f"{ingest['chunks']:,}", f"{ingest['seconds']:.1f}", f"{row['chunks_per_s']:.0f}",
            f"{ingest['embed_seconds']:.1f}", f"{row['bm25_build_s']:.2f}",
            f"{emb['p50']:.1f}/{emb['p95']:.1f} ms",
            *(f"{lat[m]['p50']:.1f}/{lat[m]['p95']:.1f} ms" for m in MODES)])
        if size == LATENCY_SIZE:
            p95 = lat["hybrid"]["p95"]
            section.figures.append(Figure(
                f"hybrid p95 at {size:,} chunks, excl. embedding", p95, "ms",
                f"< {LATENCY_TARGET_MS:.0f}", p95 < LATENCY_TARGET_MS,
                f"p50 {lat['hybrid']['p50']:.1f} ms; query embedding p50 {emb['p50']:.1f} ms, "
                f"p95 {emb['p95']:.1f} ms, reported separately"))
    section.notes += [
        f"latency: {LATENCY_QUERIES} queries per mode after {LATENCY_WARMUP} warm-up, "
        f"k={LATENCY_K}, Retriever.search with the query vector precomputed (cached); "
        "the query's embedding time is the 'embed query' column",
        "embed s = time inside embed_documents during the ingest; the rest is loading, "
        "chunking, hashing and chromadb writes",
        "BM25 build = the first BM25 query after the ingest (reads all chunks, indexes them)",
    ]
    if LATENCY_SIZE not in sizes:
        section.notes.append(f"no {LATENCY_SIZE:,}-chunk run in --sizes: the p95 target "
                             "is not checked")
    section.data = {"sizes": rows}
    return section


# --- 4. memory while ingesting (in a fresh subprocess) -------------------------------------


def rss_mb() -> float:
    """This process's resident set size in MB (psutil if installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no psutil and no VmRSS in /proc/self/status") from None
    return float(psutil.Process().memory_info().rss) / 2**20


class RssSampler:
    """Samples RSS every ``interval`` seconds in a thread while the block runs."""

    def __init__(self, interval: float = MEMORY_INTERVAL) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0

    def _sample(self) -> None:
        self.samples.append((time.perf_counter() - self._started, rss_mb()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._started = time.perf_counter()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def batched_writes(store: KnowledgeStore, batch: int) -> None:
    """Make ``store.write_sources`` take at most ``batch`` chunks a call (whole sources),
    as if ingest flushed every ``batch`` chunks instead of once per file."""
    original = store.write_sources

    def write_sources(name: str, sources: Sequence[tuple[str, str, Sequence[ChunkRecord]]]
                      ) -> int:
        written, group, size = 0, [], 0
        for item in sources:
            group.append(item)
            size += len(item[2])
            if size >= batch:
                written += original(name, group)
                group, size = [], 0
        return written + (original(name, group) if group else 0)

    store.write_sources = write_sources  # type: ignore[method-assign]


MEMORY_VARIANTS = {
    "as-is": "ingest_paths as is",
    "no-mkldnn": "torch.backends.mkldnn off",
    "no-mkldnn,batched-256": "mkldnn off + writes by 256 chunks",
    "batched-256": "writes batched by 256 chunks",
}


def memory_child(variant: str) -> dict[str, Any]:
    """Ingest ``MEMORY_CHUNKS`` generated chunks while sampling RSS (run in a subprocess).

    ``variant`` is ``as-is`` or a comma-separated list of changes measured without editing
    the retrieval code: ``no-mkldnn`` (torch's oneDNN CPU kernels off, whose per-shape
    caches grow with every new padded batch shape) and ``batched-N`` (store writes of at most
    N chunks, whole sources).
    """
    options = set() if variant == "as-is" else set(variant.split(","))
    embedder = minilm()
    if "no-mkldnn" in options:
        import torch

        torch.backends.mkldnn.set_flags(False)
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as folder:
        corpus = Path(folder) / "generated.jsonl"
        TextGenerator(SEED).write_jsonl(corpus, MEMORY_CHUNKS)
        store = KnowledgeStore(Path(folder) / "chroma", embedder=embedder)
        store.collection_names()  # chromadb loaded before the baseline
        for option in options:
            if option.startswith("batched-"):
                batched_writes(store, int(option.removeprefix("batched-")))
        gc.collect()
        with RssSampler() as sampler:
            run = timed_ingest(store, embedder, [corpus], "memory")
    return {"variant": variant, "ingest": asdict(run), "samples": sampler.samples,
            "embed_calls": len(embedder.document_calls),
            "largest_embed_call": max(embedder.document_calls, default=0)}


def memory_verdict(samples: Sequence[tuple[float, float]]) -> dict[str, float | bool]:
    start, end = samples[0][1], samples[-1][1]
    peak = max(mb for _, mb in samples)
    half = samples[-1][0] / 2
    first = [mb for t, mb in samples if t <= half]
    second = [mb for t, mb in samples if t > half] or [end]
    growth = max(second) - max(first)
    rise = peak - start
    return {"start_mb": round(start, 1), "peak_mb": round(peak, 1), "end_mb": round(end, 1),
            "rise_mb": round(rise, 1), "second_half_growth_mb": round(growth, 1),
            "flat": rise < MEMORY_RISE_MB and growth < MEMORY_GROWTH_MB}


def run_memory_child(variant: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "evals.bench.retrieval", "--memory-child", variant]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=REPO)
    if out.returncode:
        raise RuntimeError(f"memory subprocess failed: {out.stderr.strip()[-800:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(memory_verdict(result["samples"]))
    return result


def bench_memory() -> Section:
    section = Section(f"4. RSS while ingesting {MEMORY_CHUNKS:,} chunks "
                      "(fresh subprocess, MiniLM loaded before the start)")
    log(f"memory: ingesting {MEMORY_CHUNKS} chunks in a subprocess, sampling RSS")
    runs = [run_memory_child("as-is")]
    if not runs[0]["flat"]:
        for variant in ("no-mkldnn", "no-mkldnn,batched-256"):
            log(f"memory: not flat; measuring the same ingest with {variant}")
            runs.append(run_memory_child(variant))
    section.table = [["ingest", "start MB", "peak MB", "end MB", "rise MB",
                      "2nd-half growth MB", "embed calls", "seconds", "flat"]]
    for run in runs:
        label = MEMORY_VARIANTS.get(run["variant"], run["variant"])
        section.table.append([
            label, f"{run['start_mb']:.0f}", f"{run['peak_mb']:.0f}", f"{run['end_mb']:.0f}",
            f"{run['rise_mb']:.0f}", f"{run['second_half_growth_mb']:.0f}",
            f"{run['embed_calls']} (max {run['largest_embed_call']})",
            f"{run['ingest']['seconds']:.1f}", "yes" if run["flat"] else "NO"])
    primary = runs[0]
    curve = _thin(primary["samples"], 12)
    section.notes += [
        f"flat = rise over the start < {MEMORY_RISE_MB:.0f} MB and the second half's peak "
        f"< the first half's + {MEMORY_GROWTH_MB:.0f} MB; sampled every {MEMORY_INTERVAL} s "
        f"({len(primary['samples'])} samples)",
        "RSS over the ingest (s: MB): " + ", ".join(f"{t:.0f}: {mb:.0f}" for t, mb in curve),
    ]
    if len(runs) > 1:
        section.notes += [
            "variants, measured without changing the code: 'mkldnn off' sets "
            "torch.backends.mkldnn.enabled = False before the ingest (oneDNN caches kernels "
            "per padded batch shape); 'writes by 256' wraps store.write_sources to write whole "
            "sources in groups of <= 256 chunks (what ingest's BATCH_CHUNKS does across files; "
            "a single JSONL file is now one write)",
        ]
    section.figures.append(Figure(
        f"RSS rise while ingesting {MEMORY_CHUNKS:,} chunks", primary["rise_mb"], "MB",
        f"< {MEMORY_RISE_MB:.0f} (and 2nd-half growth < {MEMORY_GROWTH_MB:.0f})",
        bool(primary["flat"]),
        f"start {primary['start_mb']:.0f}, peak {primary['peak_mb']:.0f}, end "
        f"{primary['end_mb']:.0f} MB, second-half growth "
        f"{primary['second_half_growth_mb']:.0f} MB"))
    section.data = {"runs": [{k: v for k, v in r.items() if k != "samples"} | {
        "samples": [(round(t, 2), round(mb, 1)) for t, mb in r["samples"]]} for r in runs]}
    return section


def _thin(samples: Sequence[tuple[float, float]], count: int) -> list[tuple[float, float]]:
    if len(samples) <= count:
        return list(samples)
    step = (len(samples) - 1) / (count - 1)
    return [samples[round(i * step)] for i in range(count)]


# --- the report ------------------------------------------------------------------------------


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3f}"


def render_table(rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def render(sections: Sequence[Section], figures: Sequence[Figure]) -> str:
    lines: list[str] = []
    for section in sections:
        lines += [section.title, *render_table(section.table)]
        lines += [f"  {note}" for note in section.notes]
        lines.append("")
    rows = [["figure", "measured", "target", "result"]]
    rows += [[f.name, f"{_number(f.value)} {f.unit}".strip(), f"{f.target} {f.unit}".strip(),
              "ok" if f.ok else "MISSED"] for f in figures]
    lines += ["Targets", *render_table(rows), ""]
    lines += [f"{f.name}: {f.detail}" for f in figures if f.detail]
    missed = sum(not f.ok for f in figures)
    load = os.getloadavg()
    lines.append(f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min) on "
                 f"{os.cpu_count()} CPUs; timings include any other load on the machine")
    lines.append(f"\n{len(figures) - missed} of {len(figures)} targets met")
    return "\n".join(lines)


def _guard(name: str, measure: Callable[[], Section]) -> Section:
    try:
        return measure()
    except Exception as exc:
        log(f"{name}: ERROR {type(exc).__name__}: {exc}")
        return Section(name, notes=[f"ERROR {type(exc).__name__}: {exc}"],
                       figures=[Figure(name, float("nan"), "", "runs", False,
                                       f"ERROR {type(exc).__name__}: {exc}")])


def run_all(args: argparse.Namespace) -> list[Section]:
    embedder = minilm()
    sections: list[Section] = []
    scifact: dict[str, Any] = {}
    it_ops: dict[str, Any] = {}

    def do_scifact() -> Section:
        section, extra = bench_scifact(embedder, args.scifact)
        scifact.update(extra)
        return section

    def do_it_ops() -> Section:
        section, extra = bench_it_ops(embedder)
        it_ops.update(extra)
        return section

    if not args.skip_scifact:
        sections.append(_guard("SciFact", do_scifact))
    sections.append(_guard("IT ops labelled set", do_it_ops))
    if scifact or it_ops:
        sections.append(_guard("fusion alternatives", lambda: bench_fusions(scifact, it_ops)))
    if not args.skip_scale:
        sections.append(_guard("scale", lambda: bench_scale(embedder, args.sizes)))
    if not args.skip_memory:
        sections.append(_guard("memory", bench_memory))
    return sections


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --sizes {text!r}: use e.g. 1000,10000") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("--sizes needs positive chunk counts")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.bench.retrieval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")
    parser.add_argument("--sizes", type=_sizes, default=list(DEFAULT_SIZES),
                        help="chunk counts for the scale section (default 1000,10000,100000)")
    parser.add_argument("--skip-scale", action="store_true", help="skip section 3")
    parser.add_argument("--skip-memory", action="store_true", help="skip section 4")
    parser.add_argument("--skip-scifact", action="store_true", help="skip section 1")
    parser.add_argument("--scifact", type=Path, default=SCIFACT_DIR,
                        help=f"the BEIR SciFact folder (default {SCIFACT_DIR})")
    parser.add_argument("--memory-child", metavar="VARIANT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return 0
    sections = run_all(args)
    figures = [f for s in sections for f in s.figures]
    ok = all(f.ok for f in figures)
    if args.json:
        out = [{**asdict(f), "value": None if math.isnan(f.value) else round(f.value, 4)}
               for f in figures]
        print(json.dumps({"ok": ok, "figures": out,
                          "sections": {s.title: {"data": s.data, "notes": s.notes}
                                       for s in sections}}, indent=2, default=str))
    else:
        print(render(sections, figures))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
