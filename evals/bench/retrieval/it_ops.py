"""Section 2: the labelled IT ops queries over the demo knowledge base, chunk level."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.evals.bench.figures import Figure
from orchestrator.evals.bench.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from orchestrator.evals.bench.retrieval.fusions import DEFAULT, FUSIONS, describe
from orchestrator.evals.bench.retrieval.harness import (
    IT_OPS_QUERIES,
    MODES,
    BenchEmbedder,
    Section,
    log,
    mean,
    read_jsonl,
    temp_store,
)
from orchestrator.retrieval.ingest import ingest_paths
from orchestrator.retrieval.search import Fusion, Retriever, SearchMode

HITS = 10
METRICS = ("recall@5", "mrr@10", "ndcg@10")


def _normal(text: str) -> str:
    return " ".join(text.split())


def relevant_chunks(query: Mapping[str, Any], ids: Sequence[str], texts: Sequence[str],
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


def metrics(rankings: Sequence[Sequence[str]], relevant: Sequence[set[str]]) -> dict[str, float]:
    pairs = list(zip(rankings, relevant, strict=True))
    return {"recall@5": mean([recall_at_k(r, rel, 5) for r, rel in pairs]),
            "mrr@10": mean([mrr_at_k(r, rel, 10) for r, rel in pairs]),
            "ndcg@10": mean([ndcg_at_k(r, rel, 10) for r, rel in pairs])}


def bench_it_ops(embedder: BenchEmbedder) -> Section:
    from orchestrator.demo import knowledge_folder

    section = Section(f"2. Labelled IT ops queries ({IT_OPS_QUERIES.name}), chunk level")
    labels = read_jsonl(IT_OPS_QUERIES)
    queries = [str(q["query"]) for q in labels]
    with temp_store(embedder, "itops") as store:
        log("it_ops: ingesting the IT ops demo knowledge base")
        report = ingest_paths(store, [knowledge_folder("it_ops")], "it_ops")
        stored = store.all_chunks("it_ops")
        sources = [str(m.get("source")) for m in stored.metadatas]
        labelled = [relevant_chunks(q, stored.ids, stored.texts, sources) for q in labels]
        relevant = [rel for rel, _ in labelled]
        retriever = Retriever(store)

        def ranked(mode: SearchMode = "hybrid", fusion: Fusion | None = None
                   ) -> list[list[str]]:
            return [[h.chunk_id for h in retriever.search(q, ["it_ops"], k=HITS, mode=mode,
                                                          fusion=fusion)] for q in queries]

        results = {mode: metrics(ranked(mode), relevant) for mode in MODES}
        fusions = {describe(f): metrics(ranked(fusion=f), relevant)["ndcg@10"] for f in FUSIONS}
    unmatched = sum(n for _, n in labelled)
    section.table = [["mode", "recall@5", "MRR@10", "nDCG@10"]]
    section.table += [[m, *(f"{results[m][k]:.3f}" for k in METRICS)] for m in MODES]
    holds = {k: results["hybrid"][k] >= max(results["dense"][k], results["bm25"][k])
             for k in METRICS}
    section.notes += [
        f"{len(queries)} queries over {len(stored.ids)} chunks from "
        f"{report.files} files; relevant chunks per query: "
        f"mean {mean([len(r) for r in relevant]):.2f}; labels matching no chunk: {unmatched}; "
        f"queries with no relevant chunk: {sum(not rel for rel in relevant)}",
        "hybrid >= max(dense, bm25): " + ", ".join(
            f"{k} {'yes' if ok else 'NO'}" for k, ok in holds.items()),
        f"search k={HITS}; hybrid = the Retriever's default fusion: {DEFAULT}",
    ]
    best = max(results["dense"]["ndcg@10"], results["bm25"]["ndcg@10"])
    hybrid = results["hybrid"]["ndcg@10"]
    section.figures.append(Figure(
        "IT ops hybrid nDCG@10 >= max(dense, bm25)", hybrid, "", f">= {best:.3f}",
        hybrid >= best,
        f"dense {results['dense']['ndcg@10']:.3f}, bm25 {results['bm25']['ndcg@10']:.3f}; "
        + ", ".join(f"{k} {'holds' if ok else 'does NOT hold'}" for k, ok in holds.items()
                    if k != "ndcg@10")))
    section.data = {"queries": len(queries), "chunks": len(stored.ids), "metrics": results,
                    "hybrid_at_least_best": holds, "labels_unmatched": unmatched,
                    "best_single_ndcg@10": best, "fusions_ndcg@10": fusions}
    return section
