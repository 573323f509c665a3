"""Honest outcomes and questions that never write (issue: trustworthy outcomes, parts 1, 2, 8).

Each test reproduces what a tester saw, with the shipped fake model (scripted where a specific
misbehaviour is needed), and checks the domain database, the run store and the events.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import StructuredTool

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.agents.it_ops import tools as it_tools
from orchestrator.agents.policy import read_only
from orchestrator.agents.spec import AgentSpec
from orchestrator.config import Settings
from orchestrator.models import FakeChatModel, tool_call
from orchestrator.runs import RunStore
from tests.test_engine import plan_reply


def orch(domain_db: Path, tmp_path: Path, model: Any = "fake", **settings: Any) -> Orchestrator:
    return Orchestrator(model, agents=it_ops_agents(), domain_db=domain_db,
                        settings=Settings(home=tmp_path / "home", **settings),
                        runs=RunStore(tmp_path / "runs.sqlite"))


def route(db: sqlite3.Connection, service: str) -> str:
    return str(db.execute("SELECT pool FROM routes WHERE service = ?", (service,)).fetchone()[0])


def counts(db: sqlite3.Connection) -> tuple[int, int, int]:
    """(alerts, incidents, routes changed)."""
    return (db.execute("SELECT count(*) FROM alerts").fetchone()[0],
            db.execute("SELECT count(*) FROM incidents").fetchone()[0],
            db.execute("SELECT count(*) FROM routes WHERE reason != 'initial'").fetchone()[0])


# --- 1. honest outcomes ------------------------------------------------------------------


def test_a_write_that_failed_after_a_successful_read_is_not_ok(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    # Seen: the subtask counted as done because a lookup succeeded, though the write failed
    # and the agent's last reply was the tool's "Invalid arguments ... Fix them" message.
    model = FakeChatModel(script=[
        plan_reply(("t1", "Reroute web-3 traffic to web-backup-a", "traffic", [])),
        tool_call("show_route", {"service": "web-3"}),
        tool_call("reroute_traffic", {"service": "web-3", "backup_pool": "Backup A!"}),
        "Invalid arguments for reroute_traffic: backup_pool: String should match pattern. "
        "Fix them and call again.",
    ])
    o = orch(domain_db, tmp_path, model, max_retries=0, max_replans=0, max_reassigns=0)
    result = o.run("reroute web-3 traffic to web-backup-a")

    (subtask,) = result.results.values()
    assert subtask.status == "failed" and subtask.failure_kind == "invalid_arguments"
    assert result.status == "failed" and not result.ok
    assert route(db, "web-3") == "web-primary"  # the database agrees: nothing moved
    stats = {s.agent: s for s in o.runs.agent_stats()}  # type: ignore[union-attr]
    assert stats["traffic"].successes == 0 and stats["traffic"].failures
    assert o.routing.success_rate("traffic") < o.routing.success_rate("monitoring")


def test_an_act_subtask_whose_agent_changed_nothing_is_not_done(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    model = FakeChatModel(script=[
        plan_reply(("t1", "Reroute web-3 traffic to a backup pool", "traffic", [])),
        tool_call("show_route", {"service": "web-3"}),
        "web-3 traffic has been rerouted.",  # it says so, the tools say otherwise
    ])
    result = orch(domain_db, tmp_path, model).run("reroute web-3 traffic")
    (subtask,) = result.results.values()
    assert subtask.status == "failed" and subtask.failure_kind == "no_action"
    assert result.status == "failed"
    assert route(db, "web-3") == "web-primary"


@pytest.mark.parametrize("reply", [
    "CANNOT: the pager is not reachable",
    "Error: alert_oncall failed with 503",
])
def test_an_error_reply_after_a_successful_read_is_a_failure(
        domain_db: Path, tmp_path: Path, reply: str) -> None:
    model = FakeChatModel(script=[
        plan_reply(("t1", "Check the health of web-2", "monitoring", [])),
        tool_call("check_service_health", {"service": "web-2"}),
        reply,
    ])
    result = orch(domain_db, tmp_path, model).run("check web-2")
    (subtask,) = result.results.values()
    assert subtask.status == "failed" and result.status == "failed"


def test_a_cannot_after_the_asked_write_happened_is_done(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    # Seen with a small real model: "CANNOT:" right after a successful page; the page was
    # reported failed and its dependents skipped. What the tools did decides.
    model = FakeChatModel(script=[
        plan_reply(("t1", "Page the on-call for web-3 about the outage", "notifications", [])),
        tool_call("alert_oncall", {"service": "web-3", "message": "web-3 is down"}),
        "CANNOT: I am not sure the page was delivered",
    ])
    result = orch(domain_db, tmp_path, model).run("page the web-3 on-call")
    (subtask,) = result.results.values()
    assert subtask.status == "done" and result.status == "ok"
    assert "the agent added: I am not sure the page was delivered" in (subtask.output or "")
    assert db.execute("SELECT count(*) FROM alerts WHERE service = 'web-3'").fetchone()[0] == 1


def test_a_wall_time_cut_after_writes_reports_the_writes_as_done(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    # Seen: a wall-time cut reported "Done (0 of 4)" while the alert and the incident were in
    # the database. Here the notifications agent pages, then waits on a hanging call.
    async def wait_for_ack(service: str) -> str:
        await asyncio.sleep(30)
        return "acknowledged"

    waiting = read_only(StructuredTool.from_function(
        coroutine=wait_for_ack, name="wait_for_ack",
        description="Wait for the page to be acknowledged."))
    original = next(s for s in it_ops_agents() if s.name == "notifications")
    agents = [s for s in it_ops_agents() if s.name != "notifications"]
    agents.append(AgentSpec(name="notifications", description=original.description,
                            skills=original.skills, tools=[it_tools.alert_oncall, waiting]))
    pager = FakeChatModel(script=[
        tool_call("alert_oncall", {"service": "web-3", "message": "web-3 is down"}),
        tool_call("wait_for_ack", {"service": "web-3"}),
    ])
    o = Orchestrator("fake", agents=agents, domain_db=domain_db,
                     agent_models={"notifications": pager},
                     settings=Settings(home=tmp_path / "home", max_wall_s=3.0, max_retries=0))
    result = o.run("web-3 is down: log the incident and page the on-call team")

    assert counts(db)[:2] == (1, 1)  # both writes happened
    by_agent = {r.agent: r for r in result.results.values()}
    assert by_agent["incident_log"].status == "done"
    assert by_agent["notifications"].status == "done"
    assert "wall time" in by_agent["notifications"].output
    assert result.status == "ok" and "Done (0" not in result.answer
    assert "wall time" in (result.budget_hit or "")


# --- 2. questions never write ---------------------------------------------------------


@pytest.mark.parametrize("question", [
    "do we have enough capacity in the backup pools to take web-1's traffic?",
    "hypothetically, if web-2 went down, what would we do? don't page anyone",
    "is web-3 still down? don't reroute anything yet",
    # found by review: negations inside the clause, requests to explain, drills
    "Do NOT, under any circumstances, page the on-call for web-3",
    "I don't want you to page the on-call for web-3",
    "We should not reroute web-3 traffic",
    "hold off on paging the on-call for web-3",
    "Tell me whether to reroute web-3 traffic to a backup",
    "Explain how to reroute web-3 traffic to a backup",
    "For a drill (pretend only), log an incident for web-3",
    "page the on-call for web-3? no wait, don't",
])
def test_a_question_or_a_hypothetical_changes_nothing(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path, question: str) -> None:
    result = orch(domain_db, tmp_path).run(question)
    assert counts(db) == (0, 0, 0)
    assert all(s.kind == "answer" for s in (result.plan.subtasks if result.plan else []))
    called = [e.data["tool"] for e in result.events if e.type == "tool_called"]
    assert not set(called) & {"reroute_traffic", "alert_oncall", "log_incident"}


def test_a_follow_up_question_in_a_chat_logs_no_incident(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    o = orch(domain_db, tmp_path)
    first = o.run("check the health of web-2")
    follow = o.run("what about its logs? anything bad in there?", thread_id=first.thread_id)
    assert counts(db) == (0, 0, 0)
    assert follow.plan is not None and [s.kind for s in follow.plan.subtasks] == ["answer"]


def test_an_answer_subtask_cannot_call_a_write_whatever_its_model_does(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    # The planner says: a question. The traffic agent's model tries to move traffic anyway.
    rogue = FakeChatModel(script=[
        tool_call("reroute_traffic", {"service": "web-1"}),
        tool_call("show_route", {"service": "web-1"}),
        "web-1 routes to web-primary.",
    ])
    model = FakeChatModel(script=[
        plan_reply(("t1", "Can web-1 fail over to a backup pool?", "traffic", [], "answer")),
    ])
    o = Orchestrator(model, agents=it_ops_agents(), domain_db=domain_db,
                     agent_models={"traffic": rogue}, settings=Settings(home=tmp_path / "h"))
    result = o.run("can web-1 fail over to a backup pool?")

    assert route(db, "web-1") == "web-primary"
    refused = [e for e in result.events if e.type == "tool_refused"]
    assert [e.data["tool"] for e in refused] == ["reroute_traffic"]
    assert "only answers a question" in refused[0].data["reason"]
    # the model was only ever offered the tools that read
    assert {n for c in rogue.calls for n in c.tool_names} == {"show_route", "retrieve"}
    assert result.results["t1"].status == "done"


def test_a_model_plan_without_kinds_goes_back_for_repair(domain_db: Path,
                                                         tmp_path: Path) -> None:
    model = FakeChatModel(script=[
        tool_call("Plan", {"subtasks": [{"id": "t1", "goal": "Check web-2",
                                         "agent": "monitoring"}]}),
        plan_reply(("t1", "Check web-2", "monitoring", [], "answer")),
        tool_call("check_service_health", {"service": "web-2"}),
        "web-2 is up.",
    ])
    result = orch(domain_db, tmp_path, model).run("check web-2")
    invalid = [e for e in result.events if e.type == "plan_invalid"]
    assert invalid and "need a kind" in invalid[0].data["error"]
    assert result.ok


def test_an_act_subtask_for_an_agent_that_cannot_change_anything_is_repaired(
        domain_db: Path, tmp_path: Path) -> None:
    model = FakeChatModel(script=[
        plan_reply(("t1", "Restart web-2", "monitoring", [], "act")),
        plan_reply(("t1", "Check web-2", "monitoring", [], "answer")),
        tool_call("check_service_health", {"service": "web-2"}),
        "web-2 is up.",
    ])
    result = orch(domain_db, tmp_path, model).run("check web-2")
    invalid = [e for e in result.events if e.type == "plan_invalid"]
    assert invalid and "has no tool that changes anything" in invalid[0].data["error"]


# --- 8. engine errors are errors -------------------------------------------------------


def _raises(exc: BaseException, calls: list[int] | None = None) -> Any:
    def reply(messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        if calls is not None:
            calls.append(1)
        raise exc
    return reply


def test_a_planner_model_failure_is_a_failed_result_not_an_exception(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    model = FakeChatModel(script=[_raises(ConnectionError("connection reset by peer"))])
    o = orch(domain_db, tmp_path, model)
    result = o.run("check web-2")
    assert result.status == "failed"
    assert "connection reset by peer" in (result.error or "")
    stored = o.runs.run(result.run_id)  # type: ignore[union-attr]
    assert stored["status"] == "failed"


def test_an_engine_bug_in_an_agent_is_logged_and_not_retried(
        domain_db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    buggy = FakeChatModel(script=[_raises(KeyError("missing_field"), calls)] * 3)
    model = FakeChatModel(script=[
        plan_reply(("t1", "Check the health of web-2", "monitoring", []))])
    o = Orchestrator(model, agents=it_ops_agents(), domain_db=domain_db,
                     agent_models={"monitoring": buggy},
                     settings=Settings(home=tmp_path / "h", max_retries=2))
    with caplog.at_level(logging.ERROR):
        result = o.run("check web-2")
    (subtask,) = result.results.values()
    assert subtask.failure_kind == "engine_error" and subtask.attempts == 1
    assert len(calls) == 1  # not retried as if the model had failed
    assert any(r.exc_info and "engine error" in r.getMessage() for r in caplog.records)


def test_a_provider_error_is_retried_as_a_model_error(domain_db: Path,
                                                      tmp_path: Path) -> None:
    flaky = FakeChatModel(script=[
        _raises(TimeoutError("read timed out")),
        tool_call("check_service_health", {"service": "web-2"}),
        "web-2 is up.",
    ])
    model = FakeChatModel(script=[
        plan_reply(("t1", "Check the health of web-2", "monitoring", []))])
    o = Orchestrator(model, agents=it_ops_agents(), domain_db=domain_db,
                     agent_models={"monitoring": flaky},
                     settings=Settings(home=tmp_path / "h", max_retries=1))
    result = o.run("check web-2")
    assert result.ok and "retried" in [e.type for e in result.events]


def test_a_write_made_by_another_agent_after_reassignment_is_done(
        domain_db: Path, tmp_path: Path) -> None:
    # The first agent's failed write is superseded by the second agent's, made with its
    # own tool: the subtask is done (found by the adaptive benchmark).
    def page(service: str, message: str) -> str:
        """Page the on-call engineer of a service with a message."""
        raise ConnectionError("pager gateway returned 503")

    def page_backup(service: str, message: str) -> str:
        """Page the on-call engineer of a service through the second gateway."""
        return f"paged the on-call for {service} (backup gateway)"

    skills = ["page", "on-call", "alert"]
    agents = [AgentSpec(name="pager", description="Pages the on-call engineer of a service.",
                        skills=skills, tools=[StructuredTool.from_function(page)]),
              AgentSpec(name="backup_pager", description="Second gateway for on-call pages.",
                        skills=skills, tools=[StructuredTool.from_function(page_backup)])]
    o = Orchestrator("fake", agents=agents, domain_db=domain_db,
                     settings=Settings(home=tmp_path / "h", max_retries=0, max_reassigns=1,
                                       max_replans=0, adaptive_routing=False))
    result = o.run("page the on-call engineer for web-3: disk full")
    (subtask,) = result.results.values()
    assert subtask.agents_tried == ["pager", "backup_pager"]
    assert subtask.status == "done" and result.ok


def test_a_run_releases_its_budget_on_every_path(domain_db: Path, tmp_path: Path) -> None:
    # Seen: a run's budget entry was released only on the happy path.
    bug = FakeChatModel(script=[_raises(KeyError("a bug in a model wrapper"))])
    o = orch(domain_db, tmp_path, bug)
    with pytest.raises(KeyError):  # a bug keeps its traceback
        o.run("check web-2")
    assert o._engine.open_runs == []
    failing = orch(domain_db, tmp_path, FakeChatModel(script=[_raises(ConnectionError("x"))]))
    assert failing.run("check web-2").status == "failed"
    assert failing._engine.open_runs == []
    paused = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db,
                          settings=Settings(home=tmp_path / "h2"))
    assert paused.run("move web-2 traffic to web-backup-b").status == "paused"
    assert paused._engine.open_runs == []


def test_a_polite_request_is_an_action_not_a_question(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    result = orch(domain_db, tmp_path).run("Can you reroute web-3 traffic to a backup?")
    assert result.ok and counts(db) == (0, 0, 1)


@pytest.mark.parametrize(("request_text", "paged"), [
    ("check the health of web-2, then page its on-call only if it is down", 0),
    ("check the health of web-3, then page its on-call if it is down", 1),
    ("page the on-call for web-2 unless it is up", 0),
])
def test_a_conditional_action_happens_only_when_its_condition_holds(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path, request_text: str,
        paged: int) -> None:
    result = orch(domain_db, tmp_path).run(request_text)
    assert counts(db)[0] == paged
    assert result.ok  # a condition that does not hold is not a failure
    skipped = [r for r in result.results.values() if r.failure_kind == "condition"]
    assert len(skipped) == 1 - paged
    if skipped:
        assert "Not needed" in result.answer and "Not done" not in result.answer


def test_mcp_tool_annotations_in_metadata_say_what_a_tool_does() -> None:
    # langchain-mcp-adapters puts an MCP tool's annotations in the tool's metadata.
    from orchestrator.agents.policy import is_read_only, tool_kind
    from orchestrator.retrieval.tool import retrieve

    def lookup(key: str) -> str:
        """Look a key up."""
        return key

    reader = StructuredTool.from_function(lookup, metadata={"readOnlyHint": True})
    remover = StructuredTool.from_function(lookup, name="remove",
                                           metadata={"readOnlyHint": False,
                                                     "destructiveHint": True})
    plain = StructuredTool.from_function(lookup, name="plain")
    assert is_read_only(reader) and is_read_only(retrieve)
    assert not is_read_only(remover) and tool_kind(remover).destructive
    assert not is_read_only(plain)  # nothing declared: a write


def test_a_request_that_only_says_what_not_to_do_does_nothing_and_says_so(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    result = orch(domain_db, tmp_path).run("do not page the on-call team for web-3")
    assert counts(db) == (0, 0, 0)
    assert result.answer.startswith("Nothing to do")


@pytest.mark.parametrize("request_text", [
    "Do not book a cardiology visit for p-1.",
    "Hypothetically, book a cardiology visit for p-1.",
    "Should we book a cardiology visit for p-1?",
    "sku-3 is sold out, but don't pause anything.",
])
def test_a_playbook_pattern_does_not_fire_on_a_negation_question_or_hypothetical(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path, request_text: str) -> None:
    # Found by review: playbook patterns matched "do not book ..." and ran the playbook.
    from orchestrator.agents.registry import builtin_agents

    before = db.execute("SELECT (SELECT count(*) FROM appointments), "
                        "(SELECT count(*) FROM promotions WHERE status = 'active')").fetchone()
    o = Orchestrator("fake", agents=builtin_agents(), domain_db=domain_db,
                     settings=Settings(home=tmp_path / "h", knowledge=False))
    result = o.run(request_text)
    assert not result.mode.startswith("playbook:")
    after = db.execute("SELECT (SELECT count(*) FROM appointments), "
                       "(SELECT count(*) FROM promotions WHERE status = 'active')").fetchone()
    assert tuple(after) == tuple(before)


def test_not_needed_is_accepted_only_for_a_goal_with_a_condition(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    # Found by review: any act subtask could be declined with "NOT NEEDED:" and count as ok.
    model = FakeChatModel(script=[
        plan_reply(("t1", "Reroute web-3 traffic to a backup pool", "traffic", [])),
        "NOT NEEDED: nothing to do",
    ])
    result = orch(domain_db, tmp_path, model, max_retries=0, max_replans=0,
                  max_reassigns=0).run("reroute web-3 traffic")
    (subtask,) = result.results.values()
    assert subtask.status == "failed" and result.status == "failed"


def test_a_condition_after_a_comma_belongs_to_the_action_before_it(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    result = orch(domain_db, tmp_path).run(
        "Page the on-call team about web-1, but only if it is down.")
    assert counts(db)[0] == 0  # web-1 is up
    assert [r.failure_kind for r in result.results.values()].count("condition") == 1


def test_a_tool_that_reports_its_own_error_has_not_done_its_write(
        domain_db: Path, tmp_path: Path) -> None:
    # Found by review: a tool with handle_tool_error=True returned its failure as text; the
    # write was recorded done and every retry was told "already done".
    from langchain_core.tools import ToolException

    sent: list[str] = []

    def send_wire(account: str) -> str:
        """Send a wire transfer."""
        if not sent:
            sent.append("fail")
            raise ToolException("gateway timeout, nothing sent; try again")
        sent.append(account)
        return f"wired {account}"

    wire = StructuredTool.from_function(send_wire, handle_tool_error=True)
    agent = AgentSpec(name="payments", description="Sends wires.", skills=["wire"],
                      tools=[wire])
    supervisor = FakeChatModel(script=[tool_call("Plan", {"subtasks": [{
        "id": "t1", "goal": "Wire acct-1", "agent": "payments", "kind": "act"}]})])
    payer = FakeChatModel(script=[tool_call("send_wire", {"account": "acct-1"}),
                                  tool_call("send_wire", {"account": "acct-1"}), "Wired."])
    o = Orchestrator(supervisor, agents=[agent], domain_db=domain_db,
                     agent_models={"payments": payer},
                     settings=Settings(home=tmp_path / "h", max_retries=1, max_replans=0))
    result = o.run("wire acct-1")
    assert sent == ["fail", "acct-1"] and result.ok


def test_tools_over_methods_of_two_clients_are_two_actions(domain_db: Path,
                                                           tmp_path: Path) -> None:
    # Found by review: bound methods of two instances shared one write key.
    class Pager:
        def __init__(self) -> None:
            self.sent: list[str] = []

        def send(self, service: str, message: str) -> str:
            """Page a team."""
            self.sent.append(message)
            return "paged"

    dba, network = Pager(), Pager()
    tools = [StructuredTool.from_function(dba.send, name="page_dba"),
             StructuredTool.from_function(network.send, name="page_network")]
    agent = AgentSpec(name="pagers", description="Pages teams.", skills=["page"], tools=tools)
    both = AIMessage(content="", tool_calls=[
        {"name": n, "args": {"service": "db-1", "message": m}, "id": n, "type": "tool_call"}
        for n, m in (("page_dba", "db-1 slow"), ("page_network", "packet loss"))])
    supervisor = FakeChatModel(script=[tool_call("Plan", {"subtasks": [{
        "id": "t1", "goal": "Page both teams about db-1", "agent": "pagers", "kind": "act"}]})])
    o = Orchestrator(supervisor, agents=[agent], domain_db=domain_db,
                     agent_models={"pagers": FakeChatModel(script=[both, "Paged both."])},
                     settings=Settings(home=tmp_path / "h"))
    assert o.run("page both teams about db-1").ok
    assert dba.sent == ["db-1 slow"] and network.sent == ["packet loss"]


@pytest.mark.parametrize("question", [
    "which backup pool may web-4 use for failover?",
    "what would happen if we rerouted web-4 to web-backup-a",
])
def test_a_plan_that_acts_on_a_question_only_reads(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path, question: str) -> None:
    # Seen with a 1.5B model: a question planned as 'reroute web-4' (act), and it rerouted.
    model = FakeChatModel(script=[
        plan_reply(("t1", "Reroute web-4 traffic to web-backup-a", "traffic", [], "act")),
        tool_call("reroute_traffic", {"service": "web-4", "backup_pool": "web-backup-a"}),
        tool_call("show_route", {"service": "web-4"}),
        "web-4 routes to web-primary; web-backup-a is its backup.",
        "web-4 may fail over to web-backup-a.",
    ])
    result = orch(domain_db, tmp_path, model).run(question)
    (subtask,) = result.results.values()
    assert subtask.kind == "answer"
    assert [(c.name, c.status) for c in subtask.tool_calls] == [
        ("reroute_traffic", "refused"), ("show_route", "ok")]
    assert route(db, "web-4") == "web-primary"
