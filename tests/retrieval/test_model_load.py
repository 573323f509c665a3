"""The embedding model loads only when something embeds, and its load is reported apart:
never as an agent's latency."""

from __future__ import annotations

import contextvars
import threading
import time
from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator.agents.spec import AgentSpec
from orchestrator.models import FakeChatModel
from orchestrator.retrieval.embedders import HashEmbedder, loading_model, model_load_clock
from orchestrator.retrieval.ingest import ingest_paths
from orchestrator.retrieval.store import KnowledgeStore
from orchestrator.retrieval.tool import retrieve

LOAD_S = 1.5


class SlowLoadingEmbedder(HashEmbedder):
    """The hashing embedder behind a one-off model load of ``delay`` seconds, the way
    MiniLM's first use reads the model."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.loaded = False
        self.queries: list[str] = []
        self._lock = threading.Lock()

    def _load(self) -> None:
        if self.loaded:
            return
        with loading_model(self.name), self._lock:
            if not self.loaded:
                time.sleep(self.delay)  # stands for the model load, not a synchronisation
                self.loaded = True

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self._load()
        return super().embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        self._load()
        self.queries.append(text)
        return super().embed_query(text)


@pytest.fixture
def office_kb(tmp_path: Path) -> Path:
    """A store with one collection, ingested with the (fast) hashing embedder."""
    folder = tmp_path / "office"
    folder.mkdir()
    (folder / "hours.md").write_text("# Office\n\nOffice hours are 9 to 5 on weekdays.\n")
    ingest_paths(KnowledgeStore(tmp_path / "chroma", embedder="hash"), [folder], "office")
    return tmp_path / "chroma"


def office_agent() -> AgentSpec:
    return AgentSpec(name="office", description="Answers questions about office hours.",
                     skills=["office hours"], tools=[retrieve], collections=["office"])


def test_model_load_is_reported_apart_from_the_agents_latency(office_kb: Path,
                                                             domain_db: Path) -> None:
    embedder = SlowLoadingEmbedder(LOAD_S)
    orch = Orchestrator("fake", agents=[office_agent()], domain_db=domain_db,
                        knowledge=KnowledgeStore(office_kb, embedder=embedder))
    result = orch.run("what are the office hours?")
    assert "Office hours are 9 to 5" in result.answer and "[hours.md#0]" in result.answer
    assert embedder.loaded  # the agent's retrieve call embedded its query

    (attempt,) = [e for e in result.events if e.type == "attempt_finished"]
    assert attempt.data["embedder_load_s"] >= LOAD_S
    assert attempt.data["elapsed_s"] < LOAD_S
    assert orch.routing.mean_latency("office") == pytest.approx(attempt.data["elapsed_s"],
                                                            abs=1e-3)
    assert orch.runs is not None
    (stats,) = orch.runs.agent_stats()
    assert stats.agent == "office" and stats.mean_latency_s < LOAD_S


def test_planner_context_does_not_embed(office_kb: Path, domain_db: Path) -> None:
    """The planner's context comes from BM25: a run whose agent does not search the
    knowledge base never loads the embedding model."""
    embedder = SlowLoadingEmbedder(LOAD_S)
    clerk = AgentSpec(name="clerk", description="Greets visitors at the office.",
                      skills=["greet"], tools=[], collections=["office"])
    model = FakeChatModel()
    Orchestrator(model, agents=[clerk], domain_db=domain_db,
                 knowledge=KnowledgeStore(office_kb, embedder=embedder)
                 ).run("greet the visitor and tell them the office hours")
    planner_prompt = model.calls[0].messages[1].text
    assert "<context>" in planner_prompt and "[hours.md#0]" in planner_prompt
    assert not embedder.loaded and embedder.queries == []


def test_load_clock_counts_loads_in_threads_and_waits_for_them() -> None:
    embedder = SlowLoadingEmbedder(0.2)
    with model_load_clock() as loads:
        # Started the way tool calls are: in a copy of the caller's context.
        workers = [threading.Thread(target=contextvars.copy_context().run,
                                    args=(embedder.embed_query, q)) for q in ("a", "b")]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        embedder.embed_query("c")  # loaded: costs nothing more
    # One thread loaded, the other waited for that load: both count.
    assert loads.seconds >= 0.2
    assert set(loads.by_embedder) == {"hash-256"}
    with model_load_clock() as later:
        embedder.embed_query("d")
    assert later.seconds == 0.0
