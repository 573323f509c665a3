"""Sources are paths relative to the ingest root, so equal file names in different folders
stay apart; a single folder or file keeps its short names."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.retrieval.ingest import ingest_paths
from orchestrator.retrieval.search import Retriever
from orchestrator.retrieval.store import KnowledgeStore


@pytest.fixture
def store(tmp_path: Path) -> KnowledgeStore:
    return KnowledgeStore(tmp_path / "chroma", embedder="hash")


def two_readmes(root: Path) -> tuple[Path, Path]:
    for team, fact in (("teamA", "Team A deploys on Tuesdays."),
                       ("teamB", "Team B deploys on Fridays.")):
        (root / team).mkdir(parents=True)
        (root / team / "README.md").write_text(f"# {team}\n\n{fact}\n")
    return root / "teamA", root / "teamB"


def sources(store: KnowledgeStore) -> list[str]:
    return sorted({str(m["source"]) for m in store.all_chunks("docs").metadatas})


@pytest.mark.parametrize("as_files", [False, True], ids=["folders", "files"])
def test_two_readmes_ingested_together_do_not_replace_each_other(
        store: KnowledgeStore, tmp_path: Path, as_files: bool) -> None:
    team_a, team_b = two_readmes(tmp_path / "docs")
    paths = [team_a / "README.md", team_b / "README.md"] if as_files else [team_a, team_b]
    report = ingest_paths(store, paths, "docs")
    assert report.ok and report.chunks_added == 2
    assert sources(store) == ["teamA/README.md", "teamB/README.md"]

    hits = Retriever(store).search("when does team B deploy", ["docs"], k=1, mode="bm25")
    assert hits[0].citation == "teamB/README.md#0" and "Fridays" in hits[0].text
    again = ingest_paths(store, paths, "docs")
    assert (again.chunks_added, again.skipped) == (0, 2)


def test_the_parent_folder_gives_the_same_sources(store: KnowledgeStore, tmp_path: Path) -> None:
    team_a, team_b = two_readmes(tmp_path / "docs")
    ingest_paths(store, [team_a, team_b], "docs")
    again = ingest_paths(store, [tmp_path / "docs"], "docs")
    assert (again.chunks_added, again.skipped) == (0, 2)
    assert sources(store) == ["teamA/README.md", "teamB/README.md"]


def test_one_folder_or_one_file_keeps_short_sources(store: KnowledgeStore, tmp_path: Path) -> None:
    team_a, _ = two_readmes(tmp_path / "docs")
    (team_a / "guide").mkdir()
    (team_a / "guide" / "setup.md").write_text("# Setup\n\nInstall the CLI first.\n")
    ingest_paths(store, [team_a], "docs")
    assert sources(store) == ["README.md", "guide/setup.md"]
    # The same file given alone, or with a path that does not exist, is the same source.
    for paths in ([team_a / "README.md"], [team_a / "README.md", tmp_path / "missing.md"]):
        report = ingest_paths(store, paths, "docs")
        assert (report.chunks_added, report.skipped) == (0, 1)
