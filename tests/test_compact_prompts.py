"""Compact prompts: small tool schemas, the stable part of each prompt first, and plans whose
goals copy a knowledge passage or a catalog line sent back for repair."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.agents.policy import non_null
from orchestrator.agents.registry import AgentRegistry
from orchestrator.config import Settings
from orchestrator.graph import engine_context
from orchestrator.models import FakeChatModel, tool_call
from orchestrator.nodes.planner import knowledge_context, planner_messages
from orchestrator.nodes.specialist import specialist_messages
from orchestrator.plan import Plan, copied_goals
from orchestrator.retrieval.ingest import ingest_paths
from orchestrator.retrieval.store import KnowledgeStore
from orchestrator.tool_schemas import model_tool_schema

RUNBOOK = """# Disk full on a web server

When the disk of a web server is full, rotate the access logs on that server, restart the
nginx workers once space is free, and page the web platform on-call through the escalation
policy so that the payment team hears about it within fifteen minutes.
"""
COPIED = ("rotate the access logs on that server, restart the nginx workers once space is "
          "free, and page the web platform on-call through the escalation policy")


def _kept(full: dict[str, Any]) -> dict[str, Any]:
    """What a model needs of a property: the non-null branch's facts and the description."""
    prop = non_null(full)
    keys = ("type", "enum", "pattern", "minimum", "maximum", "items", "description")
    kept = {k: prop[k] for k in keys if k in prop}
    if full.get("default") not in (None, "", []):
        kept["default"] = full["default"]
    return kept


def test_tool_schemas_lose_only_what_carries_no_information() -> None:
    before = after = 0
    for spec in AgentRegistry.default(None):
        for tool in spec.tool_map.values():
            full = convert_to_openai_tool(tool)["function"]
            compact = model_tool_schema(tool)["function"]
            assert compact["name"] == full["name"]
            assert compact["description"] == full["description"]
            params, small = full["parameters"], compact["parameters"]
            assert small.get("required", []) == params.get("required", [])
            assert list(small["properties"]) == list(params["properties"])
            for name, prop in params["properties"].items():
                assert _kept(small["properties"][name]) == _kept(prop), (tool.name, name)
                assert "anyOf" not in small["properties"][name]
                assert small["properties"][name].get("default", 0) is not None
            assert "title" not in str(small)
            before += len(str(full))
            after += len(str(compact))
    assert after < before


def test_the_specialist_and_the_planner_are_sent_the_compact_schemas() -> None:
    ctx = engine_context("fake", it_ops_agents(), settings=Settings(knowledge=False))
    diagnostics = ctx.agents["diagnostics"]
    bound: Any = ctx.agent_runnable(diagnostics, "answer")
    sent = {t["function"]["name"]: t for t in bound.kwargs["tools"]}
    logs = sent["read_service_logs"]["function"]["parameters"]["properties"]
    assert logs["level"] == {"enum": ["DEBUG", "INFO", "WARN", "ERROR"], "type": "string",
                             "description": "Only lines of this level; all levels when "
                             "omitted."}
    assert logs["limit"]["default"] == 20
    # The tool itself still takes what its own schema allows.
    tool = diagnostics.tool_map["read_service_logs"]
    assert tool.args_schema is not None
    assert tool.args_schema.model_validate({"service": "web-3", "level": None})  # type: ignore[union-attr]

    planner: Any = ctx.planner_runnable(Plan, "tools")
    (plan_tool,) = planner.kwargs["tools"]
    subtask = plan_tool["function"]["parameters"]["properties"]["subtasks"]["items"]
    assert subtask["properties"]["kind"]["enum"] == ["answer", "act"]
    assert "anyOf" not in str(plan_tool) and "title" not in str(plan_tool)
    assert subtask["required"] == ["id", "goal", "agent", "kind"]


def test_the_stable_part_of_each_prompt_comes_first() -> None:
    ctx = engine_context("fake", it_ops_agents(), settings=Settings(knowledge=False))
    states: list[Any] = [
        {"request": "check the health of web-2", "run_id": "run-aaaa",
         "messages": [HumanMessage("check the health of web-2")]},
        {"request": "page the on-call for web-3", "run_id": "run-bbbb",
         "messages": [HumanMessage("hi"), HumanMessage("page the on-call for web-3")]},
    ]
    first, second = (planner_messages(ctx, s, "[kb#1] a passage") for s in states)
    assert isinstance(first[0], SystemMessage) and first[0].text == second[0].text
    assert first[0].text.startswith("You are the supervisor")
    assert "- notifications:" in first[0].text
    for messages, state in ((first, states[0]), (second, states[1])):
        human = messages[-1].text
        assert human.rstrip().endswith(f"{state['request']}\n</request>")
        assert human.index("<context>") < human.index("<request>")
        assert all(state["run_id"] not in m.text for m in messages)
    spec = ctx.agents["monitoring"]
    a = specialist_messages(spec, "check the health of web-2", [])
    b = specialist_messages(spec, "check the health of web-4", [])
    assert a[0].text == b[0].text and "web-" not in a[0].text
    assert a[1].text.startswith("<goal>")


def knowledge(tmp_path: Path) -> KnowledgeStore:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "runbook-disk.md").write_text(RUNBOOK, "utf-8")
    store = KnowledgeStore(tmp_path / "chroma", embedder="hash")
    ingest_paths(store, [folder], "it_ops")
    return store


def test_no_empty_knowledge_block_reaches_the_planner(tmp_path: Path) -> None:
    ctx = engine_context("fake", it_ops_agents(), settings=Settings(),
                         knowledge=knowledge(tmp_path))
    assert knowledge_context(ctx, "zzz qqq") == ""
    assert "[runbook-disk.md#" in knowledge_context(ctx, "the disk of web-3 is full")


def test_a_goal_that_copies_a_passage_goes_back_for_repair(
        tmp_path: Path, domain_db: Path, db: sqlite3.Connection) -> None:
    request = "the disk of web-3 is full: alert the on-call for web-3"
    copied = {"subtasks": [{"id": "t1", "goal": f"For web-3: {COPIED}",
                            "agent": "notifications", "kind": "act"}]}
    fixed = {"subtasks": [{"id": "t1", "goal": "Alert the on-call for web-3: its disk is "
                           "full (page the web platform on-call) [runbook-disk.md#0]",
                           "agent": "notifications", "kind": "act"}]}
    supervisor = FakeChatModel(script=[tool_call("Plan", copied), tool_call("Plan", fixed)])
    result = Orchestrator(supervisor, agents=it_ops_agents(), domain_db=domain_db,
                          agent_models={a.name: "fake" for a in it_ops_agents()},
                          knowledge=knowledge(tmp_path),
                          settings=Settings(coordination="adaptive")).run(request)

    invalid = [e for e in result.events if e.type == "plan_invalid"]
    assert len(invalid) == 1
    error = invalid[0].data["error"]
    assert error.startswith("subtask 't1' copies the knowledge passage [runbook-disk.md#")
    assert "\n" not in error
    assert error in supervisor.calls[1].messages[-1].text  # the problem went back
    assert result.ok, result.answer
    assert result.plan is not None and result.plan.subtasks[0].goal == fixed["subtasks"][0]["goal"]
    assert [tuple(r) for r in db.execute("SELECT service FROM alerts")] == [("web-3",)]
    supervisor.assert_complete()


def test_a_goal_that_copies_a_catalog_line_goes_back_for_repair(domain_db: Path) -> None:
    copied = {"subtasks": [{"id": "t1", "goal": "Finds the root cause of an outage from "
                            "logs and metrics.", "agent": "diagnostics", "kind": "answer"}]}
    fixed = {"subtasks": [{"id": "t1", "goal": "Find the root cause of the web-3 outage",
                           "agent": "diagnostics", "kind": "answer"}]}
    supervisor = FakeChatModel(script=[tool_call("Plan", copied), tool_call("Plan", fixed)])
    result = Orchestrator(supervisor, agents=it_ops_agents(), domain_db=domain_db,
                          agent_models={a.name: "fake" for a in it_ops_agents()},
                          settings=Settings(knowledge=False, coordination="adaptive")
                          ).run("why is web-3 down?")
    (invalid,) = [e for e in result.events if e.type == "plan_invalid"]
    assert invalid.data["error"].startswith(
        "subtask 't1' copies the catalog line of diagnostics as its goal")
    assert result.ok and "disk" in result.answer.lower()


def test_facts_from_a_passage_with_their_citation_are_not_a_copy() -> None:
    passage = ("PCI payment traffic of web-3 and web-4 may only fail over to web-backup-a, "
               "never to web-backup-b, because only backup-a is in the PCI scope.")
    plan = Plan.model_validate({"subtasks": [
        {"id": "t1", "goal": "Reroute web-3's traffic to web-backup-a: PCI payment traffic "
         "may only fail over to web-backup-a [runbook-web-failover.md#2]", "agent": "traffic",
         "kind": "act"},
        {"id": "t2", "goal": "Check the health of web-3", "agent": "monitoring",
         "kind": "answer"}]})
    sources = {"p": passage}
    assert copied_goals(plan, "web-3 is down: fail it over", sources) == []
    # The request's own words are never a copy, however long.
    quoted = Plan.model_validate({"subtasks": [{"id": "t1", "goal": passage,
                                                "agent": "traffic", "kind": "act"}]})
    assert copied_goals(quoted, passage, sources) == []
    assert copied_goals(quoted, "fail over web-3", sources) == [("t1", "p")]
