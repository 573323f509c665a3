"""The orchestrator under LangGraph's API server: the graph ``langgraph.json`` names takes
the Agent Chat UI's ``{"messages": [...]}`` and answers with an AI message, in process and
through ``langgraph dev`` on 127.0.0.1 (the offline model, a demo business database)."""

from __future__ import annotations

import importlib
import json
import os
import queue
import shutil
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel

from orchestrator.domain_db import use_domain_db
from tests.conftest import INCIDENT_REQUEST

ROOT = Path(__file__).resolve().parents[1]
HEALTH = "check the health of web-1"


def named_graph() -> tuple[str, Pregel]:
    """The graph id and the graph ``langgraph.json`` names (``module:variable``)."""
    config = json.loads((ROOT / "langgraph.json").read_text("utf-8"))
    assert config["dependencies"] == ["."]
    [(graph_id, target)] = config["graphs"].items()
    module, variable = target.split(":")
    graph = getattr(importlib.import_module(module), variable)
    assert isinstance(graph, Pregel)
    return graph_id, graph


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def web_3_changes(db: Path) -> tuple[Any, ...]:
    """What the incident request changes: web-3's route, its alerts and incidents."""
    with sqlite3.connect(db) as conn:
        return (conn.execute("SELECT pool FROM routes WHERE service = 'web-3'").fetchone(),
                conn.execute("SELECT count(*) FROM alerts WHERE service = 'web-3'").fetchone(),
                conn.execute("SELECT count(*) FROM incidents WHERE service = 'web-3'"
                             ).fetchone())


async def test_the_named_graph_takes_chat_messages_and_answers_with_an_ai_message(
        domain_db: Path) -> None:
    _, graph = named_graph()
    assert graph.checkpointer is None  # the server brings its own
    assert "messages" in graph.get_input_jsonschema()["properties"]
    before = web_3_changes(domain_db)
    with use_domain_db(domain_db):
        state = await graph.ainvoke(user(HEALTH))
    human, answer = state["messages"]
    assert isinstance(human, HumanMessage) and human.text == HEALTH
    assert isinstance(answer, AIMessage) and answer.text == state["answer"]
    assert "web-1 is up" in answer.text
    assert web_3_changes(domain_db) == before  # a health check changes nothing


async def test_a_second_turn_on_the_thread_sees_the_first(domain_db: Path) -> None:
    _, graph = named_graph()
    # the server's checkpointer, as `langgraph dev` puts it in: a copy of the named graph
    chat = graph.copy(update={"checkpointer": InMemorySaver()})
    config = {"configurable": {"thread_id": "ops"}}
    before = web_3_changes(domain_db)
    with use_domain_db(domain_db):
        first = await chat.ainvoke(user(HEALTH), config)
        second = await chat.ainvoke(user(INCIDENT_REQUEST), config)
    assert [type(m) for m in second["messages"]] == [HumanMessage, AIMessage] * 2
    assert [m.text for m in second["messages"][:2]] == [m.text for m in first["messages"]]
    assert second["messages"][2].text == INCIDENT_REQUEST
    assert second["messages"][3].text == second["answer"] != first["answer"]
    assert second["run_id"] != first["run_id"]
    assert web_3_changes(domain_db) != before  # rerouted, alerted and logged


async def test_a_turn_paused_for_approval_resumes_on_the_thread(domain_db: Path) -> None:
    from langgraph.types import Command

    from orchestrator.approvals import resume_payload

    _, graph = named_graph()
    chat = graph.copy(update={"checkpointer": InMemorySaver()})
    config = {"configurable": {"thread_id": "ops"}}

    def pool() -> str:
        with sqlite3.connect(domain_db) as conn:
            return str(conn.execute("SELECT pool FROM routes WHERE service = 'web-1'"
                                    ).fetchone()[0])

    with use_domain_db(domain_db):
        paused = await chat.ainvoke(user("reroute web-1 traffic to a backup"), config)
        [asked] = paused["__interrupt__"][0].value["approvals"]
        assert asked["tool"] == "reroute_traffic" and pool() == "web-primary"
        done = await chat.ainvoke(Command(resume=resume_payload(True, approver="ana")), config)
    assert [type(m) for m in done["messages"]] == [HumanMessage, AIMessage]
    assert pool() == asked["args"]["backup_pool"] and "Rerouted web-1" in done["answer"]


async def test_an_empty_message_is_refused_before_anything_runs() -> None:
    from orchestrator.errors import RequestError

    _, graph = named_graph()
    with pytest.raises(RequestError, match="empty"):
        await graph.ainvoke(user("   "))


# --- under `langgraph dev` ------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def langgraph_dev(tmp_path: Path, domain_db: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    """``langgraph dev`` on 127.0.0.1 over ``langgraph.json``, run from a temporary folder
    (the in-memory server keeps its files in its working folder), its data folder the one
    that holds the demo database; a client for it. The server is always killed."""
    if shutil.which("langgraph") is None:
        pytest.fail('langgraph-cli is not installed: pip install -e ".[dev]"')
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(domain_db.parent))  # its domain.sqlite
    work = tmp_path / "server"
    work.mkdir()
    shutil.copy(ROOT / "langgraph.json", work / "langgraph.json")
    port = free_port()
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false",
           "LANGCHAIN_TRACING_V2": "false", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        # No --allow-blocking: the dev server's blocking-call guard is on, and a write turn
        # passes it (the engine's journal and ledger calls run in threads)
        ["langgraph", "dev", "--no-browser", "--no-reload",
         "--host", "127.0.0.1", "--port", str(port), "--config", str(work / "langgraph.json")],
        cwd=work, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def read() -> None:  # drains the output the whole time (a full pipe would block it)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        while (line := lines.get(timeout=120)) is not None:
            if "Application started up" in line:
                break
        else:
            pytest.fail(f"langgraph dev exited with {proc.wait()}:\n{''.join(log)[-3000:]}")
        transport = httpx.HTTPTransport(retries=5)  # the port opens just after the log line
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", transport=transport,
                          trust_env=False, timeout=120) as client:
            assert client.get("/ok").status_code == 200
            yield client
    finally:
        proc.kill()
        proc.wait()


def test_langgraph_dev_serves_the_graph_to_a_chat_client(
        langgraph_dev: httpx.Client, domain_db: Path) -> None:
    client = langgraph_dev
    graph_id, _ = named_graph()
    [assistant] = client.post("/assistants/search", json={"graph_id": graph_id}).json()
    schemas = client.get(f"/assistants/{assistant['assistant_id']}/schemas").json()
    assert list(schemas["input_schema"]["properties"]) == ["messages"]
    assert "messages" in schemas["state_schema"]["properties"]

    thread = client.post("/threads", json={}).json()["thread_id"]
    before = web_3_changes(domain_db)

    def turn(text: str) -> dict[str, Any]:
        response = client.post(f"/threads/{thread}/runs/wait",
                               json={"assistant_id": graph_id, "input": user(text)})
        assert response.status_code == 200, response.text
        return dict(response.json())

    first = turn(HEALTH)
    assert [m["type"] for m in first["messages"]] == ["human", "ai"]
    assert "web-1 is up" in first["messages"][-1]["content"]
    assert web_3_changes(domain_db) == before  # a health check changes nothing

    second = turn(INCIDENT_REQUEST)
    assert web_3_changes(domain_db) != before  # rerouted, alerted and logged
    history = client.get(f"/threads/{thread}/state").json()["values"]["messages"]
    assert [(m["type"], m["content"]) for m in history] == [
        ("human", HEALTH), ("ai", first["messages"][-1]["content"]),
        ("human", INCIDENT_REQUEST), ("ai", second["messages"][-1]["content"])]
