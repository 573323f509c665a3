"""Fusion of ranked lists (hand-computed cases) and the retriever's fusion options."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.retrieval.errors import RetrievalError
from orchestrator.retrieval.fusion import Fusion, min_max, min_max_fusion, reciprocal_rank_fusion
from orchestrator.retrieval.ingest import ingest_paths
from orchestrator.retrieval.search import Retriever
from orchestrator.retrieval.store import KnowledgeStore


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "a"]])
    assert [item for item, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


def test_reciprocal_rank_fusion_weights_and_constant() -> None:
    fused = reciprocal_rank_fusion([["a", "b"], ["b", "a"]], k=0, weights=[0.8, 0.2])
    assert fused == [("a", pytest.approx(0.8 + 0.1)), ("b", pytest.approx(0.4 + 0.2))]
    with pytest.raises(ValueError, match="2 rankings but 1 weights"):
        reciprocal_rank_fusion([["a"], ["b"]], weights=[1.0])


def test_min_max_scales_each_list_to_unit_range() -> None:
    assert min_max([("a", 12.0), ("b", 7.0), ("c", 2.0)]) == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert min_max([("a", 0.3), ("b", 0.3)]) == {"a": 1.0, "b": 1.0}
    assert min_max([]) == {}


def test_min_max_fusion_is_a_convex_combination() -> None:
    dense = [("a", 0.9), ("b", 0.7), ("c", 0.5)]  # scaled 1, 0.5, 0
    bm25 = [("c", 30.0), ("d", 20.0), ("a", 10.0)]  # scaled 1, 0.5, 0
    fused = dict(min_max_fusion([dense, bm25], [0.7, 0.3]))
    assert fused == pytest.approx({"a": 0.7, "b": 0.35, "c": 0.3, "d": 0.15})
    # Score magnitudes do not matter, only positions on each list's own scale.
    scaled = dict(min_max_fusion([dense, [(i, s * 1000) for i, s in bm25]], [0.7, 0.3]))
    assert scaled == pytest.approx(fused)


def test_ties_keep_first_seen_order() -> None:
    fused = min_max_fusion([[("x", 1.0), ("y", 0.0)], [("y", 1.0), ("x", 0.0)]])
    assert [item for item, _ in fused] == ["x", "y"]
    assert [item for item, _ in reciprocal_rank_fusion([["x"], ["y"]])] == ["x", "y"]


def test_fusion_dispatches_on_method() -> None:
    dense = [("a", 0.9), ("b", 0.1)]
    bm25 = [("b", 9.0), ("c", 8.9), ("a", 0.1)]
    # Score fusion: b is close to the top of BM25's scale, a at its bottom.
    assert [i for i, _ in Fusion("score", alpha=0.4).fuse([dense, bm25], [0.4, 0.6])][:1] == ["b"]
    # RRF only sees ranks: a is 1st and 3rd, b 2nd and 1st.
    rrf = Fusion("rrf", rrf_k=0).fuse([dense, bm25], [0.5, 0.5])
    assert rrf[0] == ("b", pytest.approx(0.5 / 2 + 0.5 / 1))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"method": "max"}, "unknown fusion 'max'"),
    ({"alpha": 1.5}, "alpha must be within 0..1"),
    ({"candidates": 0}, "candidates must be at least 1"),
    ({"rrf_k": -1}, "must not be negative"),
])
def test_bad_fusion_settings_are_clear_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RetrievalError, match=message):
        Fusion(**kwargs)  # type: ignore[arg-type]


def _kb(tmp_path: Path) -> KnowledgeStore:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "pools.md").write_text(
        "# Pools\n\nweb-3 fails over to web-backup-a. Never use web-backup-b for web-3.\n")
    (folder / "oncall.md").write_text(
        "# On call\n\nThe web-platform on-call rota is owned by the SRE team.\n")
    (folder / "backups.md").write_text("# Backups\n\nBackups run nightly at 02:00 UTC.\n")
    store = KnowledgeStore(tmp_path / "chroma", embedder="hash")
    assert ingest_paths(store, [folder], "ops").ok
    assert ingest_paths(store, [folder / "backups.md"], "extra").ok
    return store


@pytest.mark.parametrize("fusion", [Fusion(), Fusion("rrf", candidates=50),
                                    Fusion("score", alpha=0.3, candidates=10)])
def test_retriever_fusions_find_the_runbook(tmp_path: Path, fusion: Fusion) -> None:
    retriever = Retriever(_kb(tmp_path), fusion=fusion)
    hits = retriever.search("which pool does web-3 fail over to", ["ops"], k=3)
    assert hits[0].source == "pools.md"
    assert hits == retriever.search("which pool does web-3 fail over to", ["ops"], k=3,
                                    fusion=fusion)


def test_search_across_collections_in_every_mode(tmp_path: Path) -> None:
    retriever = Retriever(_kb(tmp_path))
    for mode in ("hybrid", "dense", "bm25"):
        hits = retriever.search("nightly backups", ["ops", "extra"], k=4, mode=mode)
        assert {h.collection for h in hits if h.source == "backups.md"} == {"ops", "extra"}, mode
    dense = retriever.search("nightly backups", ["ops", "extra"], k=4, mode="dense")
    assert [h.score for h in dense] == sorted((h.score for h in dense), reverse=True)


def test_the_fusion_setting_reaches_the_engine_and_the_cli(tmp_path: Path) -> None:
    from orchestrator.agents.it_ops import it_ops_agents
    from orchestrator.config import Settings
    from orchestrator.graph import engine_context, fusion_from

    assert fusion_from(Settings()).method == "score"
    rrf = fusion_from(Settings(fusion="rrf"))
    assert rrf.method == "rrf" and rrf.candidates == 50
    store = KnowledgeStore(tmp_path / "chroma", embedder="hash")
    ctx = engine_context("fake", it_ops_agents(), settings=Settings(fusion="rrf"),
                         knowledge=store)
    assert ctx.retriever is not None and ctx.retriever.fusion.method == "rrf"
