"""Retrieval benchmark: the issue's quality and speed figures against their targets.

1. BEIR SciFact (``../shared/data/scifact``; skipped when absent): the corpus ingested
   through ``ingest_paths`` with MiniLM; nDCG@10 and recall@100 at document level over the
   300 test queries for BM25, dense and hybrid. Target: hybrid nDCG@10 >= 0.72.
2. The labelled IT ops queries over the demo knowledge base: recall@5, MRR@10, nDCG@10.
   Target: hybrid nDCG@10 >= the better of dense and BM25.
   Then the hybrid nDCG@10 of both sets under other fusions (RRF, depth, alpha), through
   the real ``Retriever``.
3. Scale, generated text at 1k / 10k / 100k chunks: ingest throughput, BM25 build time,
   query embedding time, and search latency p50/p95 per mode excluding the query's own
   embedding. Target: hybrid p95 < 50 ms at 10k chunks.
4. RSS while ingesting 10k chunks in a fresh subprocess. Target: flat, measured from the
   second batch on (rise < 150 MB, second-half growth < 50 MB); see ``memory``.

Run ``python -m orchestrator.evals.bench.retrieval [--json] [--skip-scale]
[--sizes 1000,10000,100000]``; the exit code is 1 when a target is missed.
"""
