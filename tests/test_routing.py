"""Adaptive agent choice and the run store it learns from."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langchain_core.tools import StructuredTool

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.agents.it_ops import tools as it_tools
from orchestrator.agents.spec import AgentSpec
from orchestrator.config import Settings
from orchestrator.routing import AgentStatsBook, capable_agents
from orchestrator.runs import RunStore


def test_a_failing_agent_loses_work_and_wins_it_back_when_it_recovers() -> None:
    book = AgentStatsBook(window=10, probe_every=5)
    assert book.choose(["flaky", "steady"], "flaky").agent == "flaky"  # no data: planner wins
    for _ in range(4):
        book.record("flaky", False, 0.1)
        book.record("steady", True, 0.1)
    choice = book.choose(["flaky", "steady"], "flaky")
    assert choice.agent == "steady"
    assert "steady (100% recent success) over flaky (" in choice.reason
    picks = [book.choose(["flaky", "steady"], "flaky") for _ in range(5)]
    probes = [c for c in picks if c.agent == "flaky"]
    assert len(probes) == 1 and probes[0].reason.startswith("probe:")
    book.record("flaky", False, 0.1)  # the probe failed: no new probe for another round
    assert [book.choose(["flaky", "steady"], "flaky").agent for _ in range(5)] == [
        "steady"] * 5
    picks = []
    for _ in range(8):  # flaky is fixed: each successful probe is followed by another
        pick = book.choose(["flaky", "steady"], "flaky")
        picks.append(pick.agent)
        book.record(pick.agent, True, 0.1)
    assert picks[:2] == ["flaky", "flaky"] and picks[-3:] == ["flaky"] * 3


def test_latency_counts_against_an_agent_only_a_little() -> None:
    book = AgentStatsBook()
    for _ in range(5):
        book.record("slow", True, 8.0)
        book.record("fast", True, 0.5)
    choice = book.choose(["slow", "fast"], "slow")
    assert choice.agent == "fast"  # equal success; 16x slower loses 0.2 > the preference
    assert choice.scores["slow"] < choice.scores["fast"]


def test_capable_agents_share_a_skill_the_goal_asks_for() -> None:
    specs = {s.name: s for s in it_ops_agents()}
    specs["backup_pager"] = AgentSpec(name="backup_pager", description="Pages people.",
                                      skills=["page", "on-call"], tools=[it_tools.alert_oncall])
    assert capable_agents("notifications", "page the on-call for web-3", [], specs) == [
        "notifications", "backup_pager"]
    # shared skills the goal does not ask for do not make an agent capable
    assert capable_agents("notifications", "write a haiku", [], specs) == ["notifications"]
    assert capable_agents("traffic", "reroute web-3", ["monitoring"], specs) == [
        "traffic", "monitoring"]


def flaky_pager(fail: list[bool]) -> AgentSpec:
    def alert_oncall(service: str, message: str, severity: str = "high") -> str:
        """Page the on-call engineer of a service."""
        if fail[0]:
            raise ConnectionError("pager down")
        return str(it_tools.alert_oncall.invoke({"service": service, "message": message,
                                                 "severity": severity}))

    original = next(s for s in it_ops_agents() if s.name == "notifications")
    return AgentSpec(name="notifications", description=original.description,
                     skills=original.skills, domain="it_ops",
                     tools=[StructuredTool.from_function(alert_oncall,
                                                         args_schema=it_tools.AlertArgs)])


def test_routing_learns_across_runs_and_processes(domain_db: Path, tmp_path: Path) -> None:
    fail = [True]
    backup = AgentSpec(name="backup_pager", description="Second paging channel.",
                       skills=["alert", "page", "on-call"], tools=[it_tools.alert_oncall])
    agents = [*(s for s in it_ops_agents() if s.name != "notifications"), flaky_pager(fail),
              backup]
    settings = Settings(max_retries=0, probe_every=3)
    runs = RunStore(tmp_path / "runs.sqlite")

    def run_once(orch: Orchestrator) -> tuple[str, list[str]]:
        result = orch.run("page the on-call engineer for web-3: disk full")
        (sub,) = result.results.values()
        chosen = [e.data["reason"] for e in result.events if e.type == "agent_chosen"]
        return sub.agents_tried[0], chosen

    orch = Orchestrator("fake", agents=agents, domain_db=domain_db, settings=settings, runs=runs)
    first, _ = run_once(orch)
    assert first == "notifications"  # no history yet: the planner's choice, which fails
    second, reasons = run_once(orch)
    assert second == "backup_pager" and "over notifications" in reasons[0]

    # a new orchestrator (a new process) starts from the stored outcomes
    fresh = Orchestrator("fake", agents=agents, domain_db=domain_db, settings=settings,
                         runs=runs)
    assert run_once(fresh)[0] == "backup_pager"
    fail[0] = False  # the pager recovers; probes find out and it wins its work back
    firsts = [run_once(fresh)[0] for _ in range(12)]
    assert "notifications" in firsts[:4]
    assert firsts[-3:] == ["notifications"] * 3

    stats = {s.agent: s for s in runs.agent_stats()}
    assert stats["notifications"].failures == {"tool_error": 1}
    assert stats["backup_pager"].success_rate == 1.0


def test_the_run_store_keeps_runs_events_and_agent_stats(domain_db: Path,
                                                         tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, runs=store)
    result = orch.run("check the health of web-2 and show the route of web-3")

    (listed,) = store.list_runs()
    assert listed.run_id == result.run_id and listed.status == "ok"
    assert listed.llm_calls == result.usage.llm_calls
    assert store.resolve(result.run_id[:8]) == result.run_id
    stored = store.events(result.run_id)
    assert [e.type for e in stored] == [e.type for e in result.events]
    record = store.run(result.run_id)
    assert record["plan"]["subtasks"][0]["agent"] in {"monitoring", "traffic"}
    stats = {s.agent: s for s in store.agent_stats()}
    assert set(stats) == {"monitoring", "traffic"}
    assert stats["monitoring"].attempts == 1 and stats["monitoring"].success_rate == 1.0
    assert stats["monitoring"].tokens > 0 and stats["monitoring"].mean_latency_s > 0
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT count(*) FROM attempts").fetchone()[0] == 2


def test_runs_export_as_opentelemetry_spans_when_configured(domain_db: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db,
                        tracer_provider=provider)
    result = orch.run("check the health of web-2 and show the route of web-3")

    spans = {s.name: s for s in exporter.get_finished_spans()}
    root = spans["orchestrator.run"]
    assert root.attributes is not None
    assert root.attributes["orchestrator.run_id"] == result.run_id
    assert root.attributes["orchestrator.llm_calls"] == result.usage.llm_calls
    subtask = spans["orchestrator.subtask t1"]
    assert subtask.parent is not None and subtask.parent.span_id == root.context.span_id
    assert subtask.attributes is not None and subtask.attributes["orchestrator.status"] == "done"
    assert [e.name for e in subtask.events] == ["tool_called"]
    attempt = spans["orchestrator.attempt t1"]
    assert attempt.parent is not None and attempt.parent.span_id == subtask.context.span_id
    assert "orchestrator.plan" in spans and "orchestrator.subtask t2" in spans
    # and without a provider nothing is exported
    assert Orchestrator("fake", agents=it_ops_agents()).tracer_provider is None
