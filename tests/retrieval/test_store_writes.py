"""Writes in bounded batches, and a failed write leaves every source's previous version whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.retrieval.embedders import HashEmbedder
from orchestrator.retrieval.store import ChunkRecord, KnowledgeStore


class CountingEmbedder(HashEmbedder):
    """The hashing embedder, recording call sizes and failing on call ``fail_on`` (from 1)."""

    def __init__(self, fail_on: int | None = None) -> None:
        super().__init__()
        self.calls: list[int] = []
        self.fail_on = fail_on

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        if len(self.calls) == self.fail_on:
            raise RuntimeError("embedding service went away")
        return super().embed_documents(texts)


def chunks(source: str, file_hash: str, count: int) -> tuple[str, str, list[ChunkRecord]]:
    return source, file_hash, [
        ChunkRecord(f"{source}-{file_hash}-{n}", f"{source} version {file_hash} part {n}",
                    {"source": source, "file_hash": file_hash, "position": n})
        for n in range(count)]


def stored(store: KnowledgeStore) -> dict[str, set[str]]:
    """source -> the file hashes its stored chunks carry."""
    out: dict[str, set[str]] = {}
    for meta in store.all_chunks("docs").metadatas:
        out.setdefault(str(meta["source"]), set()).add(str(meta["file_hash"]))
    return out


def test_chunks_are_embedded_and_written_in_bounded_batches(tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    store = KnowledgeStore(tmp_path / "chroma", embedder=embedder)
    written = store.write_sources("docs", [chunks("a.md", "h1", 3), chunks("b.md", "h1", 4)],
                                  batch_size=3)
    assert written == 7 and embedder.calls == [3, 3, 1]
    assert stored(store) == {"a.md": {"h1"}, "b.md": {"h1"}}


def test_new_version_replaces_the_old_once_all_batches_are_in(tmp_path: Path) -> None:
    store = KnowledgeStore(tmp_path / "chroma", embedder=CountingEmbedder())
    store.write_sources("docs", [chunks("a.md", "h1", 5), chunks("b.md", "h1", 2)])
    version = store.version("docs")
    store.write_sources("docs", [chunks("a.md", "h2", 3)], batch_size=2)
    assert stored(store) == {"a.md": {"h2"}, "b.md": {"h1"}}
    assert store.collection("docs").count() == 5
    assert store.version("docs") == version + 1


def test_a_failed_batch_rolls_back_and_keeps_previous_versions(tmp_path: Path) -> None:
    path = tmp_path / "chroma"
    KnowledgeStore(path, embedder=CountingEmbedder()).write_sources(
        "docs", [chunks("a.md", "h1", 3), chunks("b.md", "h1", 3)])
    failing = KnowledgeStore(path, embedder=CountingEmbedder(fail_on=3))
    version = failing.version("docs")
    with pytest.raises(RuntimeError, match="went away"):
        failing.write_sources("docs", [chunks("a.md", "h2", 3), chunks("b.md", "h2", 3),
                                       chunks("c.md", "h1", 2)], batch_size=2)
    # Two batches were written before the third failed: all of them are gone again.
    assert stored(failing) == {"a.md": {"h1"}, "b.md": {"h1"}}
    assert failing.collection("docs").count() == 6
    assert failing.version("docs") == version


def test_rewriting_stored_ids_then_failing_keeps_them(tmp_path: Path) -> None:
    path = tmp_path / "chroma"
    KnowledgeStore(path, embedder=CountingEmbedder()).write_sources(
        "docs", [chunks("a.md", "h1", 2)])
    failing = KnowledgeStore(path, embedder=CountingEmbedder(fail_on=2))
    with pytest.raises(RuntimeError):
        failing.write_sources("docs", [chunks("a.md", "h1", 2), chunks("b.md", "h1", 2)],
                              batch_size=2)
    assert stored(failing) == {"a.md": {"h1"}}
    assert failing.collection("docs").count() == 2


def test_content_moved_to_another_source_leaves_no_stale_chunks(tmp_path: Path) -> None:
    store = KnowledgeStore(tmp_path / "chroma", embedder=CountingEmbedder())
    store.write_sources("docs", [chunks("a.md", "h1", 3)])
    # a.md's old content (hash h1) is now b.md's, and a.md got shorter new content.
    store.write_sources("docs", [chunks("a.md", "h2", 1), chunks("b.md", "h1", 3)])
    assert stored(store) == {"a.md": {"h2"}, "b.md": {"h1"}}
    assert store.collection("docs").count() == 4
