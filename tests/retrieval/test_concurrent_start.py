"""Many processes starting at once on a fresh data folder: all succeed, and the demo knowledge
base is built once, whole; an interrupted build is completed on the next start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orchestrator.config import load_settings
from orchestrator.demo import demo_collections, ensure_demo_knowledge, knowledge_folder
from orchestrator.retrieval.store import KnowledgeStore

PROCESSES = 8
REPO = Path(__file__).resolve().parents[2]


def demo_counts(store: KnowledgeStore) -> dict[str, tuple[int, int]]:
    return {s.name: (s.chunks, s.sources) for s in store.stats()}


def test_processes_starting_at_once_on_a_fresh_folder_all_succeed(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    env = {**os.environ, "ORCHESTRATOR_HOME": str(home), "ORCHESTRATOR_EMBEDDER": "hash"}
    procs = [subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run",
                               "web-3 is down: find the root cause"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(PROCESSES)]
    outcomes = [(proc.wait(timeout=300), *proc.communicate()) for proc in procs]
    failed = [err[-2000:] for code, _, err in outcomes if code != 0]
    assert not failed, f"{len(failed)} of {PROCESSES} failed:\n" + "\n---\n".join(failed)
    building = sum("building the demo knowledge base" in err for _, _, err in outcomes)
    assert building == 1  # one process built it; the others waited and found it done

    # Built once: the same chunks as a build on its own, no duplicates, nothing half-written.
    store = KnowledgeStore(home / "chroma", embedder="hash")
    reference = KnowledgeStore(tmp_path / "reference", embedder="hash")
    ensure_demo_knowledge(reference, tmp_path / "reference.lock")
    assert demo_counts(store) == demo_counts(reference)
    assert all(store.collection(name).count() == chunks
               for name, (chunks, _) in demo_counts(store).items())


def test_processes_released_at_the_same_moment_all_succeed(tmp_path: Path) -> None:
    """The same without the spread that imports give: each process waits for a starting
    gun, then opens the fresh store, builds or waits for the demo knowledge, and searches."""
    env = {**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "fresh-home"),
           "ORCHESTRATOR_EMBEDDER": "hash"}
    procs = [subprocess.Popen([sys.executable, "-m", "tests.retrieval.start_together"],
                              cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(PROCESSES)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outcomes = [(proc.wait(timeout=300), *proc.communicate()) for proc in procs]
    failed = [err[-2000:] for code, _, err in outcomes if code != 0]
    assert not failed, f"{len(failed)} of {PROCESSES} failed:\n" + "\n---\n".join(failed)
    assert sum("building the demo knowledge base" in err for _, _, err in outcomes) == 1


def test_an_incomplete_demo_knowledge_base_is_completed(tmp_path: Path) -> None:
    settings = load_settings()
    store = KnowledgeStore.from_settings(settings)
    lock = settings.home / "demo-knowledge.lock"
    built = ensure_demo_knowledge(store, lock)
    assert sorted(r.collection for r in built) == sorted(demo_collections())
    complete = demo_counts(store)
    assert ensure_demo_knowledge(store, lock) == []  # nothing to do

    # As if a build had been stopped after part of it: one file and one collection missing.
    first = sorted(p.name for p in knowledge_folder("it_ops").iterdir())[0]
    store.delete("it_ops", first)
    store.delete("finance")
    redone = ensure_demo_knowledge(store, lock)
    assert sorted(r.collection for r in redone) == ["finance", "it_ops"]
    assert demo_counts(store) == complete
