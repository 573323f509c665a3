"""The store against a real Chroma server that the test starts (`chroma run`) on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.retrieval.errors import RetrievalError
from orchestrator.retrieval.ingest import ingest_paths
from orchestrator.retrieval.search import Retriever
from orchestrator.retrieval.store import KnowledgeStore


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("chroma")
    if binary is None:
        pytest.skip("the `chroma` command (from the chromadb package) is not on PATH")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = (data / "server.log").open("w")
    proc = subprocess.Popen([binary, "run", "--path", str(data / "db"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                KnowledgeStore(url=url, embedder="hash").collection_names()
                break
            except RetrievalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    reason = (data / "server.log").read_text()[-300:]
                    pytest.skip(f"the Chroma server did not start: {reason}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_ingest_and_search_through_a_chroma_server(chroma_url: str, tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "failover.md").write_text("# Failover\n\nweb-3 fails over to web-backup-a only.\n")
    (kb / "oncall.md").write_text("# On-call\n\nDana Okafor is on call for web-platform.\n")
    store = KnowledgeStore(url=chroma_url, embedder="hash")
    report = ingest_paths(store, [kb], "shared")
    assert report.ok and report.chunks_added == 2

    # A second client (another team member) sees the same collection.
    other = KnowledgeStore(url=chroma_url, embedder="hash")
    assert "shared" in other.collection_names()
    hits = Retriever(other).search("who is on call for web-platform", ["shared"], k=1)
    assert hits[0].citation == "oncall.md#0"
    assert ingest_paths(other, [kb], "shared").skipped == 2


def test_unreachable_server_is_a_clear_error() -> None:
    store = KnowledgeStore(url=f"http://127.0.0.1:{_free_port()}", embedder="hash")
    with pytest.raises(RetrievalError, match="cannot reach the Chroma server"):
        store.collection_names()
