"""Hybrid fusions compared through the real Retriever: min-max score fusion and RRF."""

from __future__ import annotations

from typing import Any

from orchestrator.evals.bench.retrieval.harness import Section
from orchestrator.retrieval.search import Fusion

FUSIONS = (
    Fusion(),
    Fusion(candidates=50),
    Fusion(alpha=0.3),
    Fusion(alpha=0.7),
    Fusion("rrf", candidates=50),
    Fusion("rrf"),
)


def describe(fusion: Fusion, *, mark_default: bool = True) -> str:
    """``score a=0.5, 300 candidates (default)``, ``rrf k=60, 50 candidates``."""
    how = f"score a={fusion.alpha:g}" if fusion.method == "score" else f"rrf k={fusion.rrf_k}"
    default = " (default)" if mark_default and fusion == Fusion() else ""
    return f"{how}, {fusion.candidates} candidates{default}"


DEFAULT = describe(Fusion(), mark_default=False)
"""The Retriever's default fusion, described."""


def bench_fusions(scifact: dict[str, Any], it_ops: dict[str, Any]) -> Section:
    """The hybrid nDCG@10 of each fusion on both sets, from the sections' data."""
    section = Section("Hybrid fusion compared (same stores, Retriever.search(fusion=...))")
    section.table = [["fusion", "SciFact nDCG@10", "IT ops nDCG@10", "IT ops >= best single"]]
    best = it_ops.get("best_single_ndcg@10")
    for fusion in FUSIONS:
        label = describe(fusion)
        sci = scifact.get("fusions_ndcg@10", {}).get(label)
        ops = it_ops.get("fusions_ndcg@10", {}).get(label)
        holds = "-" if ops is None or best is None else ("yes" if ops >= best else "no")
        section.table.append([label, "-" if sci is None else f"{sci:.3f}",
                              "-" if ops is None else f"{ops:.3f}", holds])
    section.notes += [
        "score: alpha * minmax(dense) + (1 - alpha) * minmax(bm25) over each list's "
        "candidates; rrf: alpha / (60 + dense rank) + (1 - alpha) / (60 + bm25 rank)",
        "SciFact here from 30 chunk hits a query (so the candidate depth is the fusion's), "
        "deduplicated to documents; IT ops from 10 chunk hits",
        "alpha 0.5 is the untuned midpoint; 0.3 and 0.7 show how sensitive the figure is",
    ]
    if best is not None:
        section.notes.append(f"IT ops best single mode nDCG@10: {best:.3f}")
    return section
