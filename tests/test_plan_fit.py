"""End to end: a supervisor's plan is checked against what the agents' tools do, by meaning
(issue 12: what a 1.5B model planned). A goal given to an agent without the tool for it moves
to the agent whose tool does it; a read planned as a change only reads; a change stays a
change; goals that copy a catalog line again after a repair are dropped, not repaired for
ever; an id an agent made up is refused before anything is written; a plan written as
``{"answer": ...}`` alone is a plan. These tests load the real
all-MiniLM-L6-v2 (the knowledge base's embedding model)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Orchestrator
from orchestrator.agents.commerce import commerce_agents
from orchestrator.agents.finance import finance_agents
from orchestrator.agents.healthcare import healthcare_agents
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.models import FakeChatModel, tool_call
from orchestrator.nodes.planner import drop_copied
from orchestrator.plan import Plan
from orchestrator.results import RunResult


@pytest.fixture
def minilm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_EMBEDDER", "minilm")


def supervisor(*replies: Any) -> FakeChatModel:
    return FakeChatModel(script=list(replies))


def plan_of(*subtasks: dict[str, Any]) -> Any:
    return tool_call("Plan", {"subtasks": list(subtasks)})


def run(replies: list[Any], agents: list[Any], request: str, domain_db: Path) -> RunResult:
    orch = Orchestrator(supervisor(*replies), agents=agents, domain_db=domain_db,
                        agent_models={a.name: "fake" for a in agents})
    return orch.run(request)


def events(result: RunResult, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in result.events if e.type == kind]


def tools_called(result: RunResult) -> list[str]:
    return [e.data["tool"] for e in result.events if e.type == "tool_called"]


def test_a_goal_given_to_an_agent_without_its_tool_moves_to_the_agent_that_has_it(
        minilm: None, domain_db: Path, db: sqlite3.Connection) -> None:
    routes_before = db.execute("SELECT * FROM routes").fetchall()
    result = run([plan_of({"id": "t1", "goal": "show the route of web-2",
                           "agent": "monitoring", "kind": "answer"})],
                 it_ops_agents(), "show the route of web-2", domain_db)

    assert result.ok, result.answer
    assert result.plan is not None
    (moved,) = result.plan.subtasks
    assert (moved.agent, moved.kind, moved.alternatives) == ("traffic", "answer", ["monitoring"])
    assert [t for t in tools_called(result) if t != "retrieve"] == ["show_route"]
    assert "web-2 routes to" in result.answer
    (made,) = events(result, "plan_made")
    assert any("moved from monitoring to traffic" in n for n in made["adjusted"])
    assert db.execute("SELECT * FROM routes").fetchall() == routes_before


def test_a_read_planned_as_a_change_only_reads(
        minilm: None, domain_db: Path, db: sqlite3.Connection) -> None:
    before = db.execute("SELECT stock FROM products WHERE sku = 'sku-3'").fetchone()
    result = run([plan_of({"id": "t1", "goal": "check the stock of sku-3",
                           "agent": "inventory", "kind": "act"})],
                 commerce_agents(), "check the stock of sku-3", domain_db)

    assert result.ok, result.answer  # an act that made no change would have failed
    assert result.plan is not None and result.plan.subtasks[0].kind == "answer"
    assert tools_called(result) == ["check_stock"]
    (made,) = events(result, "plan_made")
    assert any("only reads" in n and "check_stock" in n for n in made["adjusted"])
    assert db.execute("SELECT stock FROM products WHERE sku = 'sku-3'").fetchone() == before


def test_a_change_stays_a_change_and_a_named_agent_keeps_its_subtask(
        minilm: None, domain_db: Path, db: sqlite3.Connection) -> None:
    result = run([plan_of({"id": "t1", "goal": "set the stock of sku-3 to 12 units",
                           "agent": "inventory", "kind": "act"})],
                 commerce_agents(), "set the stock of sku-3 to 12 units", domain_db)
    assert result.ok, result.answer
    assert result.plan is not None and result.plan.subtasks[0].kind == "act"
    assert db.execute("SELECT stock FROM products WHERE sku = 'sku-3'").fetchone()[0] == 12
    (made,) = events(result, "plan_made")
    assert made.get("adjusted") == []

    named = run([plan_of({"id": "t1", "goal": "show the route of web-2",
                          "agent": "monitoring", "kind": "answer"})],
                it_ops_agents(), "ask monitoring about the route of web-2", domain_db)
    assert named.plan is not None and named.plan.subtasks[0].agent == "monitoring"
    assert events(named, "plan_made")[0].get("adjusted") == []


def test_goals_that_copy_a_catalog_line_again_are_dropped_not_repaired_for_ever(
        minilm: None, domain_db: Path, db: sqlite3.Connection) -> None:
    request = "record an incident for api-2 about 502 errors seen by partner integrations"
    copied = plan_of(
        {"id": "t1", "goal": request, "agent": "incident_log", "kind": "act"},
        {"id": "t2", "goal": "find the root cause of an outage from logs and metrics",
         "agent": "diagnostics", "kind": "answer", "depends_on": ["t1"]})
    result = run([copied, copied, "Incident recorded."], it_ops_agents(), request, domain_db)

    assert result.ok, result.answer
    assert result.plan is not None and [s.id for s in result.plan.subtasks] == ["t1"]
    assert len(events(result, "plan_invalid")) == 1  # sent back once, not three times
    (made,) = events(result, "plan_made")
    assert any("'t2' dropped" in n for n in made["adjusted"])
    assert tools_called(result) == ["log_incident"]
    assert [tuple(r) for r in db.execute("SELECT service FROM incidents")] == [("api-2",)]


def test_a_copy_that_others_wait_for_stays_and_when_all_go_the_request_is_the_goal() -> None:
    line = "diagnostics: Finds the root cause of an outage from logs and metrics."
    sources = {"the catalog line of diagnostics": line}
    copy = "Finds the root cause of an outage from logs and metrics"
    chained = Plan.model_validate({"subtasks": [
        {"id": "a", "goal": f"{copy} for web-4", "agent": "diagnostics", "kind": "answer"},
        {"id": "b", "goal": "page the web-4 on-call with the findings", "agent": "notifications",
         "kind": "act", "depends_on": ["a"]}]})
    notes: list[str] = []
    assert drop_copied(chained, "diagnose web-4, then page its on-call", sources,
                       notes) == chained
    assert notes == []

    alone = Plan.model_validate({"subtasks": [
        {"id": "a", "goal": copy, "agent": "diagnostics", "kind": "answer"},
        {"id": "b", "goal": f"{copy}.", "agent": "diagnostics", "kind": "answer"}]})
    kept = drop_copied(alone, "diagnose web-4", sources, notes)
    assert [(s.id, s.goal, s.depends_on) for s in kept.subtasks] == [("a", "diagnose web-4", [])]
    assert notes and "request as its goal" in notes[0]


def test_an_id_the_agent_made_up_is_refused_and_nothing_is_written(
        domain_db: Path, db: sqlite3.Connection) -> None:
    """Seen with a 1.5B model: order o-1002 became transaction tx-1002, and a verification
    request went to a customer no one named."""
    agents = finance_agents()
    plan = plan_of({"id": "t1", "goal": "send a verification request for order o-1002",
                    "agent": "customer_verification", "kind": "act"})
    specialist = FakeChatModel(script=[tool_call("request_verification", {"tx": "tx-1002"}),
                                       "CANNOT: the goal names no transaction"])
    orch = Orchestrator(supervisor(plan, "Nothing was sent."), agents=agents,
                        domain_db=domain_db,
                        agent_models={a.name: specialist if a.name == "customer_verification"
                                      else "fake" for a in agents})
    result = orch.run("send a verification request for order o-1002")

    assert not result.ok
    (refused,) = events(result, "tool_refused")
    assert refused["tool"] == "request_verification"
    assert "'tx-1002' appears nowhere in your goal" in refused["reason"]
    assert db.execute("SELECT count(*) FROM verification_requests").fetchone()[0] == 0

    named = run([plan_of({"id": "t1", "goal": "send a verification request for tx-1002",
                          "agent": "customer_verification", "kind": "act"})],
                agents, "send a verification request for tx-1002", domain_db)
    assert named.ok, named.answer
    assert [tuple(r) for r in db.execute("SELECT tx_id FROM verification_requests")] == [
        ("tx-1002",)]


def test_a_plan_written_as_an_answer_alone_is_taken_without_a_repair(
        domain_db: Path, db: sqlite3.Connection) -> None:
    reply = '{"answer": "No agent here writes poems; I can check services and stock."}'
    result = run([reply], it_ops_agents(), "write a poem about the ocean", domain_db)
    assert result.ok
    assert result.plan is not None and result.plan.subtasks == []
    assert result.answer.startswith("No agent here writes poems")
    assert events(result, "plan_invalid") == [] and result.usage.llm_calls == 1
    assert db.execute("SELECT count(*) FROM incidents").fetchone()[0] == 0


def test_a_small_models_answer_lists_the_reports_with_no_summary_call(
        domain_db: Path, db: sqlite3.Connection) -> None:
    """A provider whose model drops facts when it summarizes (``orchestrator_summary``:
    list; the local one) gets the agents' reports listed as the answer: every fact kept,
    one model call fewer, and the answer still goes out as a chunk."""
    model = FakeChatModel(script=[plan_of(
        {"id": "a", "goal": "check the health of web-1", "agent": "monitoring", "kind": "answer"},
        {"id": "b", "goal": "check the health of web-2", "agent": "monitoring",
         "kind": "answer"})], metadata={"orchestrator_summary": "list"})
    agents = it_ops_agents()
    chunks: list[str] = []
    orch = Orchestrator(model, agents=agents, domain_db=domain_db,
                        agent_models={a.name: "fake" for a in agents})
    result = orch.run("check the health of web-1 and web-2",
                      on_answer_chunk=lambda c: chunks.append(c.text))

    assert result.ok, result.answer
    model.assert_complete()  # the plan was its only call
    reports = [r.output for r in result.results.values()]
    assert all(r in result.answer for r in reports) and "web-1 is up" in result.answer
    assert result.answer.startswith("Done (2 of 2 subtasks):")
    assert chunks == [result.answer]
    assert db.execute("SELECT count(*) FROM alerts").fetchone()[0] == 0


def test_a_catalog_line_with_the_requests_id_is_work_not_a_copy(
        minilm: None, domain_db: Path, db: sqlite3.Connection) -> None:
    request = "diagnose web-4, then page its on-call with the findings"
    plan = plan_of(
        {"id": "d", "goal": "Find the root cause of an outage from logs and metrics for web-4",
         "agent": "diagnostics", "kind": "answer"},
        {"id": "p", "goal": "page the web-4 on-call with the findings", "agent": "notifications",
         "kind": "act", "depends_on": ["d"]})
    result = run([plan, "Diagnosed and paged."], it_ops_agents(), request, domain_db)

    assert result.ok, result.answer
    assert events(result, "plan_invalid") == []  # not sent back
    assert result.plan is not None and [s.id for s in result.plan.subtasks] == ["d", "p"]
    assert [tuple(r) for r in db.execute("SELECT service FROM alerts")] == [("web-4",)]


def test_a_one_action_command_makes_only_the_change_it_names(
        minilm: None, domain_db: Path, db: sqlite3.Connection) -> None:
    """Seen with a 1.5B model: for a cost estimate it also ordered diagnostics and wrote a
    visit summary (which completes the visit)."""
    request = "estimate the cost of appointment ap-1"
    plan = plan_of(
        {"id": "order", "goal": "order the diagnostic tests for appointment ap-1",
         "agent": "diagnostics_prep", "kind": "act"},
        {"id": "cost", "goal": "estimate the cost of appointment ap-1", "agent": "billing",
         "kind": "act", "depends_on": ["order"]},
        {"id": "summary", "goal": "write the visit summary for appointment ap-1",
         "agent": "visit_documentation", "kind": "act"})
    orders = db.execute("SELECT count(*) FROM diagnostic_orders").fetchone()[0]
    result = run([plan], healthcare_agents(), request, domain_db)

    assert result.ok, result.answer
    assert result.plan is not None
    assert [(s.id, s.depends_on) for s in result.plan.subtasks] == [("cost", [])]
    (made,) = events(result, "plan_made")
    assert any("dropped order, summary" in n for n in made["adjusted"])
    assert db.execute("SELECT count(*) FROM diagnostic_orders").fetchone()[0] == orders
    assert db.execute("SELECT count(*) FROM visit_summaries").fetchone()[0] == 0
    assert [r[0] for r in db.execute("SELECT appointment_id FROM estimates")] == ["ap-1"]

    both = "order the diagnostic tests for appointment ap-1, then estimate its cost"
    kept = run([plan_of({"id": "order", "goal": "order the diagnostic tests for ap-1",
                         "agent": "diagnostics_prep", "kind": "act"},
                        {"id": "cost", "goal": "estimate the cost of appointment ap-1",
                         "agent": "billing", "kind": "act", "depends_on": ["order"]}),
                "Ordered and estimated."], healthcare_agents(), both, domain_db)
    assert kept.plan is not None and [s.id for s in kept.plan.subtasks] == ["order", "cost"]
    assert db.execute("SELECT count(*) FROM diagnostic_orders").fetchone()[0] > orders
