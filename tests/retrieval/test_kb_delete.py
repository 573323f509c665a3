"""``orchestrator kb delete`` and ``KnowledgeStore.delete``: a collection or one source goes,
unknown names are one-line errors (exit 2), and nothing goes without a yes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.retrieval.errors import RetrievalError
from orchestrator.retrieval.ingest import ingest_paths
from orchestrator.retrieval.search import Retriever
from orchestrator.retrieval.store import KnowledgeStore


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], input=stdin,
                          text=True, capture_output=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


def write_docs(root: Path) -> Path:
    for team, fact in (("teamA", "Team A deploys on Tuesdays."),
                       ("teamB", "Team B deploys on Fridays.")):
        (root / team).mkdir(parents=True)
        (root / team / "README.md").write_text(f"# {team}\n\n{fact}\n")
    (root / "faq.jsonl").write_text('{"id": "q1", "text": "Deploys need a change ticket."}\n'
                                    '{"id": "q2", "text": "Rollbacks need no ticket."}\n')
    return root


def listed() -> dict[str, tuple[int, int]]:
    return {c["name"]: (c["chunks"], c["sources"])
            for c in json.loads(cli("kb", "list", "--json").stdout)}


def test_kb_delete_a_source_then_the_collection(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    assert cli("ingest", str(docs), "-c", "handbook").returncode == 0
    assert cli("ingest", str(docs / "teamA"), "-c", "other").returncode == 0
    assert listed() == {"handbook": (4, 4), "other": (1, 1)}

    proc = cli("kb", "delete", "handbook", "--source", "teamA/README.md", "--yes", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"collection": "handbook", "source": "teamA/README.md",
                                       "sources": ["teamA/README.md"], "chunks": 1}
    # A JSONL file's documents go together.
    proc = cli("kb", "delete", "handbook", "--source", "faq.jsonl", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "2 chunks" in proc.stdout and "faq.jsonl" in proc.stdout
    assert listed() == {"handbook": (1, 1), "other": (1, 1)}
    hits = json.loads(cli("kb", "search", "deploys", "-c", "handbook", "--json").stdout)
    assert [h["source"] for h in hits] == ["teamB/README.md"]

    proc = cli("kb", "delete", "handbook", "--yes", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"collection": "handbook", "source": None,
                                       "sources": ["teamB/README.md"], "chunks": 1}
    assert listed() == {"other": (1, 1)}


def test_kb_delete_asks_first(tmp_path: Path) -> None:
    assert cli("ingest", str(write_docs(tmp_path / "docs")), "-c", "handbook").returncode == 0
    proc = cli("kb", "delete", "handbook", stdin="n\n")
    assert proc.returncode == 1 and "Nothing deleted" in proc.stderr
    assert "Delete collection 'handbook' (4 chunks from 4 sources)?" in proc.stderr
    assert listed() == {"handbook": (4, 4)}
    proc = cli("kb", "delete", "handbook", "--source", "teamB/README.md", stdin="y\n")
    assert proc.returncode == 0, proc.stderr
    assert listed() == {"handbook": (3, 3)}


@pytest.mark.parametrize(("args", "message"), [
    (("nope",), "error: no collection named 'nope' (collections: handbook)"),
    (("handbook", "--source", "README.md"),
     "error: no source 'README.md' in collection 'handbook' "
     "(did you mean teamA/README.md, teamB/README.md?)"),
    (("handbook", "--source", "missing.md"), "error: no source 'missing.md' in collection "
     "'handbook' (its sources: faq.jsonl#q1, faq.jsonl#q2, teamA/README.md, teamB/README.md)"),
])
def test_kb_delete_unknown_names_are_one_line_errors(tmp_path: Path, args: tuple[str, ...],
                                                     message: str) -> None:
    assert cli("ingest", str(write_docs(tmp_path / "docs")), "-c", "handbook").returncode == 0
    proc = cli("kb", "delete", *args, "--yes")
    assert proc.returncode == 2
    assert proc.stderr.strip() == message and proc.stdout == ""
    assert listed() == {"handbook": (4, 4)}


def test_store_delete_api(tmp_path: Path) -> None:
    store = KnowledgeStore(tmp_path / "chroma", embedder="hash")
    ingest_paths(store, [write_docs(tmp_path / "docs")], "handbook")
    version = store.version("handbook")
    gone = store.delete("handbook", "teamA/README.md")
    assert (gone.sources, gone.chunks) == (("teamA/README.md",), 1)
    assert store.version("handbook") == version + 1  # searches rebuild their BM25 index
    hits = Retriever(store).search("team deploys", ["handbook"], k=5, mode="bm25")
    assert "teamA/README.md" not in {h.source for h in hits}
    with pytest.raises(RetrievalError, match=r"no source 'teamA/README\.md'"):
        store.delete("handbook", "teamA/README.md")
    # Deleting works whatever the store's embedder: it reads no vectors.
    gone = KnowledgeStore(tmp_path / "chroma", embedder="hash:64").delete("handbook")
    assert gone.chunks == 3 and store.collection_names() == []
