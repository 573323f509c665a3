"""A compiled LangGraph graph as a specialist (orchestrator.integrations.langgraph_agent):
the orchestrator plans to it, the graph's own model and ToolNode do the work, and each of
its tool calls is on our record (events, tool-call records, the database it wrote)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from orchestrator import Orchestrator
from orchestrator.agents.external import ExternalAgent
from orchestrator.agents.policy import READ_ONLY, read_only
from orchestrator.agents.spec import AgentSpec
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.integrations.langgraph_agent import LangGraphAgent, langgraph_agent_spec
from orchestrator.models.fake import FakeChatModel, tool_call


def service_desk(db: Path) -> tuple[Callable[[str], str], Callable[[str, str], str]]:
    """A service desk in a sqlite file: a read-only status check and a write that opens a
    ticket."""
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS tickets (id INTEGER PRIMARY KEY, service TEXT,"
                     " title TEXT)")

    def service_status(service: str) -> str:
        """Say whether a service is up."""
        return f"{service}: down since 09:12"

    def open_ticket(service: str, title: str) -> str:
        """Open a ticket for a service in the service desk."""
        with sqlite3.connect(db) as conn:
            cursor = conn.execute("INSERT INTO tickets (service, title) VALUES (?, ?)",
                                  (service, title))
        return f"ticket T-{cursor.lastrowid} opened for {service}"

    read_only(service_status)
    return service_status, open_ticket


def react_graph(model: FakeChatModel, tools: list[Callable[..., str]]) -> Any:
    """The usual hand-made tool-calling graph: a model node and a ToolNode in a loop."""
    bound = model.bind_tools(tools)

    async def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile()


def desk_spec(graph: Any, **kind: Any) -> AgentSpec:
    return langgraph_agent_spec(
        "service_desk", graph, description="Opens tickets in the service desk.",
        skills=["open a ticket", "file an incident ticket", "check a service status"], **kind)


def run(tmp_path: Path, spec: AgentSpec, request: str, **settings: Any) -> Any:
    orch = Orchestrator("fake", agents=[spec], settings=Settings(
        home=tmp_path, knowledge=False, retry_backoff_s=0, **settings))
    try:
        return orch.run(request)
    finally:
        orch.close()


def test_a_graphs_tool_calls_are_on_record_and_its_write_is_done(tmp_path: Path) -> None:
    db = tmp_path / "desk.sqlite"
    status, open_ticket = service_desk(db)
    model = FakeChatModel(script=[
        tool_call("service_status", {"service": "checkout"}),
        tool_call("open_ticket", {"service": "checkout", "title": "checkout outage"}),
        "Opened ticket T-1 for the checkout outage (checkout is down since 09:12).",
    ])
    agent = LangGraphAgent(react_graph(model, [status, open_ticket]))
    assert isinstance(agent, ExternalAgent) and not agent.kind.read_only
    assert set(agent.tools or {}) == {"service_status", "open_ticket"}

    result = run(tmp_path, desk_spec(agent.graph), "open a ticket for the checkout outage")

    assert result.ok, result.error
    model.assert_complete()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT service, title FROM tickets").fetchall() == [
            ("checkout", "checkout outage")]
    (sub,) = result.results.values()
    assert sub.agent == "service_desk" and sub.status == "done" and "T-1" in sub.output
    assert [(c.name, c.args, c.write, c.status) for c in sub.tool_calls] == [
        ("service_status", {"service": "checkout"}, False, "ok"),
        ("open_ticket", {"service": "checkout", "title": "checkout outage"}, True, "ok")]
    called = [(e.data["tool"], e.data["args"]) for e in result.events
              if e.type == "tool_called" and e.agent == "service_desk"]
    assert called == [("service_status", {"service": "checkout"}),
                      ("open_ticket", {"service": "checkout", "title": "checkout outage"})]
    kinds = [e.type for e in result.events if e.agent == "service_desk"]
    assert kinds == ["subtask_started", "tool_called", "tool_called", "attempt_finished",
                     "subtask_finished"]
    # The graph's three model calls, with the tokens its model reported.
    graph_calls = model.calls
    assert sub.usage.llm_calls == 3
    assert sub.usage.input_tokens == sum(
        c.reply.usage_metadata["input_tokens"] for c in graph_calls if c.reply.usage_metadata)
    assert result.usage.llm_calls >= 3 + 1  # and the plan's


def test_a_graph_whose_tools_only_read_answers_questions(tmp_path: Path) -> None:
    status, _ = service_desk(tmp_path / "desk.sqlite")
    model = FakeChatModel(script=[tool_call("service_status", {"service": "checkout"}),
                                  "checkout is down since 09:12."])
    spec = desk_spec(react_graph(model, [status]))
    assert spec.external is not None and spec.external.kind == READ_ONLY

    result = run(tmp_path, spec, "what is the status of the checkout service?")

    assert result.ok, result.error
    (sub,) = result.results.values()
    assert sub.kind == "answer" and sub.status == "done" and "09:12" in sub.output
    assert [(c.name, c.write) for c in sub.tool_calls] == [("service_status", False)]


def test_a_lost_connection_inside_the_graph_is_retried(tmp_path: Path) -> None:
    db = tmp_path / "desk.sqlite"
    _, open_ticket = service_desk(db)

    def drops(_messages: list[BaseMessage], _tools: list[dict[str, Any]]) -> AIMessage:
        raise ConnectionError("the model server closed the connection")

    model = FakeChatModel(script=[
        drops, tool_call("open_ticket", {"service": "checkout", "title": "outage"}),
        "Opened ticket T-1."])
    result = run(tmp_path, desk_spec(react_graph(model, [open_ticket])),
                 "open a ticket for the checkout outage", max_retries=2)

    assert result.ok, result.error
    retried = [e for e in result.events if e.type == "retried"]
    assert len(retried) == 1 and "closed the connection" in retried[0].data["after"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM tickets").fetchone() == (1,)


def test_what_a_graph_may_do_is_declared_when_its_tools_are_not_known() -> None:
    async def answer(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [AIMessage("done")]}

    builder = StateGraph(MessagesState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    with pytest.raises(ConfigError, match="kind="):
        LangGraphAgent(builder.compile())
    assert LangGraphAgent(builder, kind=READ_ONLY).kind == READ_ONLY  # compiled for us


def test_a_graph_with_a_writing_tool_cannot_be_declared_read_only(tmp_path: Path) -> None:
    status, open_ticket = service_desk(tmp_path / "desk.sqlite")
    graph = react_graph(FakeChatModel(script=[]), [status, open_ticket])
    with pytest.raises(ConfigError, match="open_ticket write"):
        LangGraphAgent(graph, kind=READ_ONLY)
