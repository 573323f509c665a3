"""Section 1: BEIR SciFact through the project's own ingest, nDCG@10 and recall@100."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from orchestrator.evals.bench.figures import Figure
from orchestrator.evals.bench.metrics import ndcg_at_k, recall_at_k, unique
from orchestrator.evals.bench.retrieval.fusions import DEFAULT, FUSIONS, describe
from orchestrator.evals.bench.retrieval.harness import (
    MODES,
    BenchEmbedder,
    Section,
    log,
    mean,
    read_jsonl,
    temp_store,
    timed_ingest,
)
from orchestrator.retrieval.search import Retriever

TARGET = 0.72
HITS = 300  # chunk hits per query, deduplicated to documents
FUSION_HITS = 30  # chunk hits for the fusion comparison: depth = the fusion's candidates
PUBLISHED = (("BM25, BEIR paper (Anserini)", 0.665), ("bm25s with stemming, this copy", 0.686))


def read_qrels(path: Path) -> dict[str, dict[str, float]]:
    qrels: dict[str, dict[str, float]] = {}
    with path.open(encoding="utf-8") as handle:
        next(handle)  # header
        for line in handle:
            if line.strip():
                query_id, doc_id, grade = line.split("\t")
                qrels.setdefault(query_id, {})[doc_id] = float(grade)
    return qrels


def doc_id(source: str) -> str:
    return source.split("#", 1)[1]


def metrics(doc_rankings: Sequence[Sequence[str]], qrels: Sequence[Mapping[str, float]]
            ) -> dict[str, float]:
    pairs = list(zip(doc_rankings, qrels, strict=True))
    return {"ndcg@10": mean([ndcg_at_k(r, q, 10) for r, q in pairs]),
            "recall@100": mean([recall_at_k(r, {d for d, g in q.items() if g > 0}, 100)
                                for r, q in pairs])}


def bench_scifact(embedder: BenchEmbedder, folder: Path) -> Section:
    section = Section("1. BEIR SciFact (test split), document level")
    corpus = folder / "corpus.jsonl"
    needed = [corpus, folder / "queries.jsonl", folder / "qrels" / "test.tsv"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        section.notes.append(f"SKIPPED: SciFact not found ({', '.join(missing)} missing); "
                             "the other sections still run")
        section.data = {"skipped": True, "missing": missing}
        return section
    qrels_all = read_qrels(folder / "qrels" / "test.tsv")
    texts = {str(q["_id"]): str(q["text"]) for q in read_jsonl(folder / "queries.jsonl")}
    query_ids = [q for q in qrels_all if q in texts]
    qrels = [qrels_all[q] for q in query_ids]
    queries = [texts[q] for q in query_ids]
    with temp_store(embedder, "scifact") as store:
        log(f"scifact: ingesting {corpus} through ingest_paths (MiniLM)")
        run = timed_ingest(store, embedder, [corpus], "scifact")
        log(f"scifact: {run.documents} documents, {run.chunks} chunks in {run.seconds:.1f} s")
        retriever = Retriever(store)
        started = time.perf_counter()
        retriever.bm25_search("scifact", "warm up", 1)
        bm25_build = time.perf_counter() - started
        results = {}
        for mode in MODES:
            docs = [unique(doc_id(h.source) for h in
                           retriever.search(q, ["scifact"], k=HITS, mode=mode)) for q in queries]
            results[mode] = metrics(docs, qrels)
            log(f"scifact: {mode} nDCG@10 {results[mode]['ndcg@10']:.3f}")
        fusions = {}
        for fusion in FUSIONS:
            docs = [unique(doc_id(h.source) for h in retriever.search(
                q, ["scifact"], k=FUSION_HITS, fusion=fusion)) for q in queries]
            fusions[describe(fusion)] = metrics(docs, qrels)["ndcg@10"]
    section.table = [["mode", "nDCG@10", "recall@100"]]
    section.table += [[m, f"{results[m]['ndcg@10']:.3f}", f"{results[m]['recall@100']:.3f}"]
                      for m in MODES]
    section.table += [[f"published: {name}", f"{value:.3f}", ""] for name, value in PUBLISHED]
    section.notes += [
        f"ingest: {run.documents:,} documents -> {run.chunks:,} chunks in {run.seconds:.1f} s "
        f"({run.documents / run.seconds:.1f} docs/s, {run.chunks_per_s:.1f} chunks/s; "
        f"embedding {run.embed_seconds:.1f} s of it); failed files: {run.failed}",
        f"BM25 index build {bm25_build:.2f} s; {len(query_ids)} test queries, {HITS} chunk "
        "hits each, deduplicated to documents (a document ranks at its best chunk)",
        f"hybrid = the Retriever's default fusion: {DEFAULT}",
    ]
    hybrid = results["hybrid"]["ndcg@10"]
    section.figures.append(Figure(
        "SciFact hybrid nDCG@10", hybrid, "", f">= {TARGET:.3f}", hybrid >= TARGET,
        f"bm25 {results['bm25']['ndcg@10']:.3f}, dense {results['dense']['ndcg@10']:.3f}"))
    section.data = {"ingest": asdict(run), "bm25_build_s": round(bm25_build, 3),
                    "queries": len(query_ids), "metrics": results,
                    "published": dict(PUBLISHED), "fusions_ndcg@10": fusions}
    return section
