"""The store, ingest and search on a real embedded chromadb (hashing embedder for speed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.retrieval.errors import EmbedderMismatchError, RetrievalError
from orchestrator.retrieval.ingest import ingest_paths
from orchestrator.retrieval.search import Retriever, SearchFilters
from orchestrator.retrieval.store import KnowledgeStore

RUNBOOK = """# Web failover

## Which pool
web-3 and web-4 must fail over to web-backup-a; never to web-backup-b.

## Procedure
Page the on-call engineer, then reroute with the traffic tool.
"""


@pytest.fixture
def store(tmp_path: Path) -> KnowledgeStore:
    return KnowledgeStore(tmp_path / "chroma", embedder="hash")


def write_kb(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "runbook.md").write_text(RUNBOOK)
    (folder / "policy.txt").write_text("Critical incidents need an incident commander.\n")
    (folder / "faq.jsonl").write_text(
        '{"_id": "q1", "title": "Certificates", "text": "Certificates renew 30 days early.",'
        ' "tags": ["security"]}\n'
        '{"_id": "q2", "title": "Backups", "text": "Backups run nightly at 02:00 UTC."}\n')
    return folder


def test_ingest_then_reingest_unchanged_adds_nothing(store: KnowledgeStore, tmp_path: Path) -> None:
    kb = write_kb(tmp_path / "kb")
    first = ingest_paths(store, [kb], "ops")
    assert first.ok and first.files == 3 and first.documents == 4
    assert first.chunks_added >= 4
    again = ingest_paths(store, [kb], "ops")
    assert again.chunks_added == 0 and again.skipped == 4
    (stats,) = store.stats()
    assert (stats.name, stats.chunks, stats.sources) == ("ops", first.chunks_added, 4)
    assert stats.embedder == "hash-256" and stats.dimension == 256


def test_changed_file_replaces_its_chunks_without_stale_ones(store: KnowledgeStore,
                                                             tmp_path: Path) -> None:
    kb = write_kb(tmp_path / "kb")
    ingest_paths(store, [kb], "ops")
    (kb / "runbook.md").write_text(RUNBOOK.replace("web-backup-a", "web-backup-z"))
    report = ingest_paths(store, [kb], "ops")
    assert report.skipped == 3 and report.chunks_added >= 1
    texts = store.all_chunks("ops").texts
    assert any("web-backup-z" in t for t in texts)
    assert not any("web-backup-a;" in t for t in texts)
    sources = [m["source"] for m in store.all_chunks("ops").metadatas]
    assert sorted(set(sources)) == ["faq.jsonl#q1", "faq.jsonl#q2", "policy.txt", "runbook.md"]


def test_bad_files_are_reported_and_the_rest_goes_on(store: KnowledgeStore, tmp_path: Path) -> None:
    kb = write_kb(tmp_path / "kb")
    (tmp_path / "empty.md").write_text("  \n")
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    report = ingest_paths(store, [kb, tmp_path / "empty.md", tmp_path / "blob.txt",
                                  tmp_path / "missing.md"], "ops")
    assert not report.ok
    reasons = dict(report.failed)
    assert set(reasons) == {str(tmp_path / n) for n in ("empty.md", "blob.txt", "missing.md")}
    assert reasons[str(tmp_path / "missing.md")] == "does not exist"
    assert report.documents == 4 and report.chunks_added >= 4


def test_hits_carry_citations_and_modes_differ(store: KnowledgeStore, tmp_path: Path) -> None:
    ingest_paths(store, [write_kb(tmp_path / "kb")], "ops")
    retriever = Retriever(store)
    for mode in ("hybrid", "dense", "bm25"):
        hits = retriever.search("which pool must web-3 fail over to", ["ops"], k=2, mode=mode)
        assert hits, mode
        assert hits[0].citation.startswith("runbook.md#")
        assert "web-backup-a" in hits[0].text
        assert hits[0].title == "Web failover"
    bm25 = retriever.search("nightly backups", ["ops"], k=5, mode="bm25")
    assert [h.source for h in bm25][:1] == ["faq.jsonl#q2"]


def test_metadata_filters_on_source_and_tags(store: KnowledgeStore, tmp_path: Path) -> None:
    ingest_paths(store, [write_kb(tmp_path / "kb")], "ops", tags=["handbook"])
    retriever = Retriever(store)
    tagged = retriever.search("renew", ["ops"], k=5, filters=SearchFilters(tags=("security",)))
    assert [h.source for h in tagged] == ["faq.jsonl#q1"]
    by_source = retriever.search("incident", ["ops"], k=5,
                                 filters=SearchFilters(source="policy.txt"))
    assert {h.source for h in by_source} == {"policy.txt"}
    everything = retriever.search("incident", ["ops"], k=10,
                                  filters=SearchFilters(tags=("handbook",)))
    assert len({h.source for h in everything}) >= 2


def test_querying_with_another_embedder_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "chroma"
    ingest_paths(KnowledgeStore(path, embedder="hash"), [write_kb(tmp_path / "kb")], "ops")
    other = KnowledgeStore(path, embedder="hash:64")
    with pytest.raises(EmbedderMismatchError, match=r"embedded with hash-256 \(256 dims\)"):
        Retriever(other).search("pool", ["ops"])


@pytest.mark.parametrize("name", ["a", "has space", "-leading", "x" * 70, "dots..dots"])
def test_bad_collection_names_are_rejected(store: KnowledgeStore, name: str) -> None:
    with pytest.raises(RetrievalError, match="invalid collection name"):
        store.collection(name, create=True)


def test_unknown_collection_and_bad_queries(store: KnowledgeStore) -> None:
    retriever = Retriever(store)
    with pytest.raises(RetrievalError, match="no collection named 'nope'"):
        retriever.search("x", ["nope"])
    with pytest.raises(RetrievalError, match="query is empty"):
        retriever.search("  ", ["nope"])

