"""End to end: the offline rules model routes by meaning with the knowledge base's embedding
model, resolves a name to an id with the agent's own look-up tool, treats questions,
negations and hypotheticals as no action, and says in one line when it cannot map a
request (issue 12, point 5). These tests load the real all-MiniLM-L6-v2 (once)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from orchestrator import Orchestrator
from orchestrator.agents.commerce import commerce_agents
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.agents.policy import read_only
from orchestrator.agents.spec import AgentSpec
from orchestrator.config import load_settings
from orchestrator.domain_db import connect
from orchestrator.evals.suite import run_suite
from orchestrator.models import FakeChatModel
from orchestrator.models.meaning import OfflineKnowledge
from orchestrator.storage import open_run_store

PARAPHRASES = Path(__file__).parent / "paraphrases" / "cases.yaml"


@pytest.fixture
def minilm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real embedding model, as users run the offline model (not the hashing one)."""
    monkeypatch.setenv("ORCHESTRATOR_EMBEDDER", "minilm")


def _tool_names(result: Any) -> list[str]:
    return [e.data["tool"] for e in result.events if e.type == "tool_called"]


def test_a_question_in_own_words_is_answered_by_the_agent_that_fits(
        minilm: None, domain_db: Path, db: sqlite3.Connection) -> None:
    result = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db).run(
        "is api-1 ok?")
    assert result.ok and result.plan is not None
    assert [(s.agent, s.kind) for s in result.plan.subtasks] == [("monitoring", "answer")]
    assert _tool_names(result) == ["check_service_health"]
    assert result.answer.startswith("api-1 is up")
    assert db.execute("SELECT count(*) FROM alerts").fetchone()[0] == 0


def test_a_request_it_cannot_map_does_nothing_and_says_so_in_one_line(
        minilm: None, domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    runs = tmp_path / "runs.sqlite"
    result = Orchestrator("fake", domain_db=domain_db, runs=str(runs)).run(
        "bake me a sourdough loaf")
    assert result.ok and result.plan is not None and result.plan.subtasks == []
    assert result.results == {} and result.usage.llm_calls == 1
    assert "\n" not in result.answer
    assert '"bake me a sourdough loaf"' in result.answer  # what it understood
    assert "--model local:" in result.answer and "openai:" in result.answer
    assert [e.type for e in result.events] == ["run_started", "plan_made", "answer"]
    assert db.execute("SELECT count(*) FROM alerts").fetchone()[0] == 0
    store = open_run_store(runs)
    try:
        assert store.run(result.run_id)["status"] == "ok"
        assert [e.type for e in store.events(result.run_id)] == [
            "run_started", "plan_made", "answer"]
    finally:
        store.close()


def test_a_negation_in_other_words_changes_nothing(
        minilm: None, domain_db: Path, db: sqlite3.Connection) -> None:
    result = Orchestrator("fake", agents=commerce_agents(), domain_db=domain_db).run(
        "leave the price of sku-1 alone")
    assert result.plan is not None and result.plan.subtasks == []
    assert result.answer.startswith("Nothing to do")
    assert db.execute("SELECT count(*) FROM price_changes").fetchone()[0] == 0


def test_an_enum_value_the_request_does_not_name_is_never_guessed(
        minilm: None, domain_db: Path, db: sqlite3.Connection) -> None:
    from orchestrator.agents.healthcare import healthcare_agents

    result = Orchestrator("fake", agents=healthcare_agents(), domain_db=domain_db).run(
        "book an orthopedics visit for p-3")
    assert [s.agent for s in result.plan.subtasks] == ["appointments"]  # type: ignore[union-attr]
    assert _tool_names(result) == []  # no cardiology (or any) booking in its place
    assert "specialty" in result.answer and "cardiology" in result.answer
    assert db.execute("SELECT count(*) FROM appointments").fetchone()[0] == 1


# --- a name resolved to an id with the agent's own look-up ----------------------------------


class _NameArgs(BaseModel):
    name: str = Field(description="The customer's name, or part of it.")


class _CustomerArgs(BaseModel):
    customer_id: str = Field(description="Customer id.", pattern=r"^c-[0-9]+$")


@tool(args_schema=_NameArgs)
def search_customers(name: str) -> str:
    """Finds customers by name: one line per match with id, name and email."""
    with connect() as conn:
        rows = conn.execute("SELECT id, name, email FROM customers WHERE name LIKE ?",
                            (f"%{name}%",)).fetchall()
    return "\n".join(f"{r['id']} {r['name']} <{r['email']}>" for r in rows) or "no match"


@tool(args_schema=_CustomerArgs)
def note_vip(customer_id: str) -> str:
    """Marks a customer as a VIP (records a support message)."""
    with connect() as conn:
        conn.execute("INSERT INTO support_messages (sku, answer) VALUES ('sku-1', ?)",
                     (f"vip {customer_id}",))
    return f"Marked {customer_id} as a VIP."


read_only(search_customers)

VIP_DESK = AgentSpec(
    name="vip_desk", description="Looks after our most valued customers.",
    skills=["vip customer", "customer care"], tools=[note_vip, search_customers],
    domain="commerce", source="test")


def test_a_person_named_in_the_request_is_looked_up_before_the_tool_that_needs_an_id(
        minilm: None, domain_db: Path, db: sqlite3.Connection) -> None:
    result = Orchestrator("fake", agents=[VIP_DESK], domain_db=domain_db).run(
        "make Chen Wei a VIP customer")
    calls = [(e.data["tool"], e.data["args"]) for e in result.events
             if e.type == "tool_called"]
    assert calls == [("search_customers", {"name": "Chen Wei"}),
                     ("note_vip", {"customer_id": "c-103"})]
    assert result.ok
    assert [tuple(r) for r in db.execute("SELECT answer FROM support_messages")] == [
        ("vip c-103",)]


def test_a_name_no_record_matches_is_not_guessed(
        minilm: None, domain_db: Path, db: sqlite3.Connection) -> None:
    result = Orchestrator("fake", agents=[VIP_DESK], domain_db=domain_db).run(
        "make Zoe Nobody a VIP customer")
    assert _tool_names(result) == ["search_customers"]
    assert not result.ok and "Zoe Nobody" in result.answer
    assert db.execute("SELECT count(*) FROM support_messages").fetchone()[0] == 0


# --- without an embedding model: word overlap, as before -----------------------------------


def test_without_the_knowledge_base_it_routes_by_word_overlap(
        monkeypatch: pytest.MonkeyPatch, domain_db: Path) -> None:
    monkeypatch.setenv("ORCHESTRATOR_KNOWLEDGE", "0")
    model = FakeChatModel()
    orchestrator = Orchestrator(model, agents=it_ops_agents(), domain_db=domain_db)
    assert orchestrator.knowledge is None
    result = orchestrator.run("is api-1 ok?")  # no word in common with any agent card
    assert result.plan is not None and result.plan.subtasks == []
    assert "--model" in result.answer and "\n" not in result.answer
    assert model._knows.meaning is None


def test_an_embedder_that_fails_falls_back_to_word_overlap(
        domain_db: Path, db: sqlite3.Connection) -> None:
    class Broken:
        name = "broken"

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            raise OSError("model files missing")

    model = FakeChatModel()
    orchestrator = Orchestrator(model, agents=it_ops_agents(), domain_db=domain_db)
    model._knows = OfflineKnowledge(lambda: Broken(), model._knows.agent_tools)
    result = orchestrator.run("check the health of api-2")
    assert result.ok and [s.agent for s in result.plan.subtasks] == ["monitoring"]  # type: ignore[union-attr]
    assert model._knows.meaning is not None and model._knows.meaning.broken


# --- the paraphrase set ---------------------------------------------------------------------


def test_the_paraphrase_set_passes_but_for_its_known_failures(
        minilm: None, tmp_path: Path) -> None:
    suite = run_suite([PARAPHRASES], out=tmp_path / "out", settings=load_settings())
    unexpected = [r.case_id for r in suite.records if not r.passed and not r.known_failure]
    assert unexpected == []
    fixed = [r.case_id for r in suite.records if r.passed and r.known_failure]
    assert fixed == []  # a case that now passes loses its known_failure mark
    assert suite.summary["pass_at_1"] >= 0.75
