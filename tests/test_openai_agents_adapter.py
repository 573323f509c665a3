"""An OpenAI Agents SDK ``Agent`` as a specialist (orchestrator.integrations.openai_agents),
with the real ``openai-agents`` package: its model is the SDK's chat-completions model
over HTTP to the test server (the offline rules model's replies), so the SDK's own model,
tool and usage code runs. The orchestrator plans to it; its tool calls, output and usage
are on our record."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

from orchestrator import Orchestrator
from orchestrator.agents.policy import READ_ONLY, ToolKind, read_only, writes
from orchestrator.agents.spec import AgentSpec
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.integrations.openai_agents import (
    OpenAIAgentsAgent,
    openai_agent_spec,
    openai_agents_sdk,
)
from tests.support.openai_server import OpenAICompatServer

sdk = openai_agents_sdk()
NO_TRACES = sdk.RunConfig(tracing_disabled=True)
ACTS = ToolKind(read_only=False, destructive=False)


@pytest.fixture
def server() -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer() as srv:
        yield srv


def desk_tools(db: Path) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """A service desk in a sqlite file: a read-only status check and a ticket write."""
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS tickets (id INTEGER PRIMARY KEY, title TEXT)")

    def service_status(service: str) -> str:
        """Say whether a service is up and since when."""
        return f"{service}: down since 09:12"

    def open_ticket(title: str) -> str:
        """Open a ticket in the service desk with the given title."""
        with sqlite3.connect(db) as conn:
            cursor = conn.execute("INSERT INTO tickets (title) VALUES (?)", (title,))
        return f"ticket T-{cursor.lastrowid} opened: {title}"

    read_only(service_status)
    return service_status, open_ticket


def chat_model(base_url: str) -> Any:
    client = AsyncOpenAI(base_url=base_url, api_key="sk-test-local", max_retries=0)
    return sdk.OpenAIChatCompletionsModel(model="fake-rules", openai_client=client)


def desk_agent(base_url: str, tools: list[Callable[..., str]]) -> Any:
    return sdk.Agent(name="desk", instructions="You open tickets in the service desk.\n\n"
                     "Use the tools; answer in one line.",
                     tools=[sdk.function_tool(t) for t in tools], model=chat_model(base_url))


def run(tmp_path: Path, spec: AgentSpec, request: str, **settings: Any) -> Any:
    orch = Orchestrator("fake", agents=[spec], settings=Settings(
        home=tmp_path, knowledge=False, retry_backoff_s=0, **settings))
    try:
        return orch.run(request)
    finally:
        orch.close()


def test_an_sdk_agents_tool_call_output_and_usage_are_on_record(
        tmp_path: Path, server: OpenAICompatServer) -> None:
    db = tmp_path / "desk.sqlite"
    status, open_ticket = desk_tools(db)
    spec = openai_agent_spec("service_desk", desk_agent(server.base_url, [status, open_ticket]),
                             ACTS, skills=["open a ticket", "file an incident ticket"],
                             run_config=NO_TRACES)
    assert spec.description == "You open tickets in the service desk."

    result = run(tmp_path, spec, "open a ticket for the checkout outage")

    assert result.ok, result.error
    with sqlite3.connect(db) as conn:
        (title,) = conn.execute("SELECT title FROM tickets").fetchone()
    assert "checkout outage" in title
    (sub,) = result.results.values()
    assert sub.agent == "service_desk" and sub.status == "done"
    assert "T-1 opened" in sub.output
    assert [(c.name, c.args, c.write, c.status) for c in sub.tool_calls] == [
        ("open_ticket", {"title": title}, True, "ok")]
    called = [(e.data["tool"], e.data["args"]) for e in result.events
              if e.type == "tool_called" and e.agent == "service_desk"]
    assert called == [("open_ticket", {"title": title})]
    # Two model requests over HTTP (the call, then the answer), with the usage it reported.
    requests = server.requests
    assert len(requests) == 2 and all(r["stream"] for r in requests)
    assert all(r["stream_options"] == {"include_usage": True} for r in requests)
    assert sub.usage.llm_calls == 2
    assert sub.usage.input_tokens > 0 and sub.usage.output_tokens > 0
    assert result.usage.llm_calls >= 3  # and the plan's


def test_a_read_only_sdk_agent_answers_questions(tmp_path: Path,
                                                 server: OpenAICompatServer) -> None:
    status, _ = desk_tools(tmp_path / "desk.sqlite")
    spec = openai_agent_spec("service_desk", desk_agent(server.base_url, [status]), READ_ONLY,
                             description="Checks the status of services.",
                             skills=["check a service status"], run_config=NO_TRACES)

    result = run(tmp_path, spec, "what is the status of the checkout service?")

    assert result.ok, result.error
    (sub,) = result.results.values()
    assert sub.kind == "answer" and sub.status == "done" and "09:12" in sub.output
    (call,) = sub.tool_calls
    assert (call.name, call.write) == ("service_status", False)
    assert "checkout" in call.args["service"]


def test_a_model_it_cannot_reach_is_a_lost_connection_the_engine_retries(
        tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = openai_agent_spec("service_desk", desk_agent(f"http://127.0.0.1:{port}/v1", []),
                             ACTS, skills=["open a ticket"], run_config=NO_TRACES)

    result = run(tmp_path, spec, "open a ticket for the checkout outage", max_retries=1)

    (sub,) = result.results.values()
    assert sub.status == "failed" and sub.attempts == 2
    retried = [e for e in result.events if e.type == "retried"]
    assert len(retried) == 1
    assert retried[0].data["after"].startswith("ConnectionError: APIConnectionError")


def test_what_its_tools_declare_bounds_what_it_may_be_declared(tmp_path: Path) -> None:
    status, open_ticket = desk_tools(tmp_path / "desk.sqlite")
    writes(open_ticket, destructive=False)
    agent = desk_agent("http://127.0.0.1:9/v1", [status, open_ticket])
    assert OpenAIAgentsAgent(agent, kind=ACTS).tool_kinds == {
        "service_status": READ_ONLY,
        "open_ticket": ToolKind(destructive=False, open_world=False)}
    with pytest.raises(ConfigError, match="open_ticket are declared as writes"):
        OpenAIAgentsAgent(agent, kind=READ_ONLY)
