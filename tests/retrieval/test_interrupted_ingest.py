"""An ingest killed with SIGKILL half-way through a file: nothing partial is served, and the
next ingest stores the file in full instead of skipping it as unchanged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from orchestrator.retrieval.ingest import ingest_paths
from orchestrator.retrieval.search import Retriever
from orchestrator.retrieval.store import KnowledgeStore

REPO = Path(__file__).resolve().parents[2]
CHUNK_SIZE = 200
CHUNKS = 600


def write_doc(path: Path, word: str) -> Path:
    """A Markdown file that splits into exactly ``CHUNKS`` chunks of ``CHUNK_SIZE``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    paragraphs = (f"Paragraph {n} about the {word} topic number {n}: " + "filler " * 17
                  for n in range(CHUNKS))
    path.write_text("# Big\n\n" + "\n\n".join(paragraphs))
    return path


def ingest(store: KnowledgeStore, doc: Path) -> tuple[int, int]:
    report = ingest_paths(store, [doc], "docs", chunk_size=CHUNK_SIZE, chunk_overlap=0)
    assert report.ok, report.failed
    return report.chunks_added, report.skipped


def kill_after_batches(chroma: Path, doc: Path, batches: int) -> None:
    """Run the real ingest in another process and SIGKILL it after ``batches`` are stored."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.retrieval.paused_ingest", str(chroma), str(doc), "docs",
         str(batches), str(CHUNK_SIZE)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the ingest pauses (or ends)
        assert line == "paused\n", (line, proc.stderr.read() if proc.stderr else "")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def served(store: KnowledgeStore, query: str) -> list[str]:
    """Texts every search mode returns for ``query`` (top 20 each)."""
    retriever = Retriever(store)
    return [hit.text for mode in ("dense", "bm25", "hybrid")
            for hit in retriever.search(query, ["docs"], k=20, mode=mode)]


def test_a_file_killed_mid_ingest_is_ingested_in_full_next_time(tmp_path: Path) -> None:
    doc = write_doc(tmp_path / "kb" / "big.md", "alpha")
    chroma = tmp_path / "chroma"
    kill_after_batches(chroma, doc, batches=1)

    store = KnowledgeStore(chroma, embedder="hash")
    assert served(store, "alpha topic paragraph") == []  # the first 256 chunks are not served
    assert store.stats()[0].chunks == 0

    assert ingest(store, doc) == (CHUNKS, 0)  # not skipped as unchanged
    stored = store.all_chunks("docs")
    assert sorted(int(m["position"]) for m in stored.metadatas) == list(range(CHUNKS))
    assert store.collection("docs").count() == CHUNKS  # no leftovers of the killed ingest
    assert ingest(store, doc) == (0, 1)


def test_a_change_killed_mid_ingest_keeps_serving_the_old_version(tmp_path: Path) -> None:
    doc = write_doc(tmp_path / "kb" / "big.md", "alpha")
    chroma = tmp_path / "chroma"
    store = KnowledgeStore(chroma, embedder="hash")
    assert ingest(store, doc) == (CHUNKS, 0)

    write_doc(doc, "omega")
    kill_after_batches(chroma, doc, batches=2)

    store = KnowledgeStore(chroma, embedder="hash")
    texts = served(store, "omega alpha topic paragraph")
    assert texts and all("alpha" in t for t in texts)  # the old version whole, nothing new
    assert store.stats()[0].chunks == CHUNKS

    assert ingest(store, doc) == (CHUNKS, 0)
    texts = store.all_chunks("docs").texts
    assert len(texts) == CHUNKS and all("alpha" not in t for t in texts)
    assert store.collection("docs").count() == CHUNKS
    assert all("omega" in t for t in served(store, "omega alpha topic paragraph"))


def test_the_next_ingest_of_any_file_removes_the_leftovers(tmp_path: Path) -> None:
    chroma = tmp_path / "chroma"
    kill_after_batches(chroma, write_doc(tmp_path / "kb" / "big.md", "alpha"), batches=1)
    store = KnowledgeStore(chroma, embedder="hash")
    assert store.collection("docs").count() == 256  # staged, unread

    small = tmp_path / "other" / "small.md"
    small.parent.mkdir()
    small.write_text("# Small\n\nA short note.\n")
    assert ingest(store, small) == (1, 0)
    assert store.collection("docs").count() == 1
    assert [m["source"] for m in store.all_chunks("docs").metadatas] == ["small.md"]
