"""Agents with tools from MCP servers, named in their cards: an allowlist, MCP annotations as
tool kinds, approvals by configuration, sessions started on first use, shared, started
again after a crash, and failures that fail the subtask clearly instead of hanging.

Against a ticket-desk MCP server of the tests (tests/support/mcp_ticket_server.py) over
stdio and over streamable HTTP on 127.0.0.1, and against the reference servers for time
and SQLite from PyPI, installed in an environment of their own (they pin a newer ``mcp``
than langchain-mcp-adapters accepts)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import venv
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator import Orchestrator
from orchestrator.agents.cards import load_agent_card
from orchestrator.agents.policy import is_read_only, policy_of
from orchestrator.agents.spec import AgentSpec
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.integrations.mcp_tools import McpServer, McpToolset, McpUnavailable
from orchestrator.models import FakeChatModel, tool_call
from tests.test_engine import plan_reply

ROOT = Path(__file__).resolve().parents[1]
GUARD_S = 120.0
"""How long a test waits for a run that must end (a hang, not a timing)."""


def desk_command(db: Path) -> dict[str, Any]:
    return {"command": sys.executable, "args": ["-m", "tests.support.mcp_ticket_server",
                                                str(db)], "cwd": str(ROOT)}


def write_card(folder: Path, mcp: list[dict[str, Any]], name: str = "desk") -> Path:
    card = folder / f"{name}.yaml"
    card.write_text(yaml.safe_dump({
        "name": name, "description": "Opens, lists and closes service desk tickets.",
        "skills": ["open a ticket", "list tickets", "close a ticket"], "mcp": mcp}))
    return card


def tickets(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, title FROM tickets ORDER BY id").fetchall()


def run_guarded(orch: Orchestrator, request: str, on_event: Any = None) -> Any:
    """``orch.run(request)``, failing the test instead of hanging it."""
    box: list[Any] = []
    worker = threading.Thread(target=lambda: box.append(orch.run(request, on_event=on_event)),
                              daemon=True)
    worker.start()
    worker.join(GUARD_S)
    assert box, f"the run did not end within {GUARD_S:g} s"
    return box[0]


class Listener:
    """An ``on_event`` listener."""

    def __call__(self, event: Any) -> None:
        pass


def orchestrator(tmp_path: Path, spec: AgentSpec, script: list[Any], **settings: Any
                 ) -> Orchestrator:
    return Orchestrator(FakeChatModel(script=script), agents=[spec], settings=Settings(
        home=tmp_path / "home", knowledge=False, retry_backoff_s=0, **settings))


# --- over stdio ---------------------------------------------------------------------------


def test_a_card_gives_an_agent_the_allowed_tools_of_an_mcp_server(tmp_path: Path) -> None:
    db = tmp_path / "tickets.sqlite"
    spec = load_agent_card(write_card(tmp_path, [{
        "server": "desk", **desk_command(db), "tools": ["list_tickets", "open_ticket"]}]))
    orch = orchestrator(tmp_path, spec, [
        plan_reply(("t1", "Open a ticket for the checkout outage", "desk", [], "act")),
        tool_call("open_ticket", {"title": "checkout outage"}),
        "Opened T-1 for the checkout outage.",
    ])
    listener = Listener()
    heard = weakref.ref(listener)
    result = run_guarded(orch, "open a ticket for the checkout outage", listener)
    del listener

    assert result.ok, result.error
    assert tickets(db) == [(1, "checkout outage")]  # the write happened, once
    called = [e.data for e in result.events if e.type == "tool_called"]
    assert [(c["tool"], c["args"], c["status"]) for c in called] == [
        ("open_ticket", {"title": "checkout outage"}, "ok")]
    assert "key" in called[0]  # a write: journaled with its idempotency key
    # Only the allowlist, with the kinds the server's annotations give.
    tools = orch._engine.agent_tools(spec)
    assert sorted(tools) == ["list_tickets", "open_ticket"]
    assert is_read_only(tools["list_tickets"]) and not is_read_only(tools["open_ticket"])
    assert not policy_of(tools["open_ticket"]).effective_kind.destructive
    line = orch._engine.catalog_line(spec)
    assert "reads: list_tickets" in line and "changes: open_ticket" in line
    # The session outlives the run that started it: it keeps nothing of that run (the
    # run's context holds its event writer, and so its listener and events).
    gc.collect()
    assert heard() is None
    orch.close()


def test_a_server_that_dies_is_started_again_on_the_next_call(tmp_path: Path) -> None:
    server = McpServer(name="desk", command=sys.executable,
                       args=("-m", "tests.support.mcp_ticket_server", str(tmp_path / "t.db")),
                       cwd=str(ROOT), tools=("pid", "stop_server", "list_tickets"))
    toolset = McpToolset(server)

    async def scenario() -> tuple[str, str, str]:
        tools = {t.name: t for t in await toolset.aload()}
        first = await tools["pid"].ainvoke({})
        with pytest.raises(McpUnavailable, match="went away"):
            await tools["stop_server"].ainvoke({})
        second = await tools["pid"].ainvoke({})
        return first, second, await tools["list_tickets"].ainvoke({})

    first, second, listed = asyncio.run(scenario())
    assert first != second  # a new process
    assert listed == "no open tickets"
    # A session of the same server is shared: another toolset reuses the running process.
    again = McpToolset(server)
    tools = {t.name: t for t in asyncio.run(again.aload())}
    assert asyncio.run(tools["pid"].ainvoke({})) == second


def test_a_server_that_does_not_start_fails_the_subtask_with_the_reason(tmp_path: Path
                                                                        ) -> None:
    spec = load_agent_card(write_card(tmp_path, [{
        "server": "desk", "command": str(tmp_path / "no-such-server"), "args": [],
        "tools": ["open_ticket"]}]))
    # A planner that insists on the agent (three tries): the run fails, saying why.
    orch = orchestrator(tmp_path, spec, [plan_reply(
        ("t1", "Open a ticket for the checkout outage", "desk", [], "act"))] * 3)
    result = run_guarded(orch, "open a ticket for the checkout outage")
    assert not result.ok and result.results == {}
    assert "MCP server 'desk'" in (result.error or "") and "did not start" in (
        result.error or "")
    assert "unavailable: MCP server 'desk'" in orch._engine.catalog_line(spec)
    orch.close()


def test_a_call_longer_than_its_timeout_fails_instead_of_hanging(tmp_path: Path) -> None:
    server = McpServer(name="desk", command=sys.executable,
                       args=("-m", "tests.support.mcp_ticket_server", str(tmp_path / "t.db")),
                       cwd=str(ROOT), tools=("slow_report",), timeout_s=0.5)
    (slow,) = asyncio.run(McpToolset(server).aload())
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(slow.ainvoke({"seconds": 30}))
    assert time.monotonic() - started < GUARD_S


def test_a_card_must_name_its_tools_or_say_all_and_may_name_only_real_ones(tmp_path: Path
                                                                           ) -> None:
    db = tmp_path / "tickets.sqlite"
    with pytest.raises(ConfigError, match="list the tools"):
        load_agent_card(write_card(tmp_path, [{"server": "desk", **desk_command(db)}]))
    with pytest.raises(ConfigError, match="either a command"):
        load_agent_card(write_card(tmp_path, [{"server": "desk", "tools": ["x"]}]))
    spec = load_agent_card(write_card(tmp_path, [{
        "server": "desk", **desk_command(db), "tools": ["open_ticket", "reopen_ticket"]}]))
    with pytest.raises(ConfigError, match=r"no tool reopen_ticket .*list_tickets"):
        asyncio.run(spec.toolsets[0].aload())
    everything = load_agent_card(write_card(tmp_path, [{
        "server": "desk", **desk_command(db), "all_tools": True}]))
    names = {t.name for t in asyncio.run(everything.toolsets[0].aload())}
    assert {"list_tickets", "open_ticket", "close_ticket", "stop_server"} <= names


# --- over streamable HTTP -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def http_desk(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    db = tmp_path / "http-tickets.sqlite"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.mcp_ticket_server", str(db), "http", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + GUARD_S
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert process.poll() is None, "the MCP server exited"
        time.sleep(0.05)  # waiting for the port, not timing the server
    try:
        yield f"http://127.0.0.1:{port}/mcp", db
    finally:
        process.terminate()
        process.wait(30)


def test_over_http_a_question_uses_a_read_only_tool_and_a_destructive_call_waits_for_approval(
        tmp_path: Path, http_desk: tuple[str, Path]) -> None:
    url, db = http_desk
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS tickets (id INTEGER PRIMARY KEY, title TEXT)")
        conn.execute("INSERT INTO tickets (title) VALUES ('printer on fire')")
    spec = load_agent_card(write_card(tmp_path, [{
        "server": "desk", "url": url, "tools": ["list_tickets", "close_ticket"],
        "approval": "destructive"}]))
    orch = orchestrator(tmp_path, spec, [
        plan_reply(("t1", "List the open tickets", "desk", [], "answer")),
        tool_call("list_tickets", {}),
        "Open: T-1 printer on fire.",
        plan_reply(("t1", "Close ticket 1", "desk", [], "act")),
        tool_call("close_ticket", {"ticket": 1}),
        "Closed T-1.",
    ])
    asked = run_guarded(orch, "which tickets are open?")
    assert asked.ok, asked.error
    assert "printer on fire" in json.dumps([r.tool_calls[0].output
                                            for r in asked.results.values()])

    paused = run_guarded(orch, "close ticket 1")
    assert paused.status == "paused"
    (request,) = paused.pending_approvals
    assert request.tool == "close_ticket" and request.args == {"ticket": 1}
    assert tickets(db) == [(1, "printer on fire")]  # nothing closed before a person said so
    done = orch.resume(paused.thread_id, True)
    assert done.ok, done.error
    assert tickets(db) == []
    orch.close()


# --- the reference servers from PyPI, in an environment of their own -----------------------

REFERENCE = {"mcp-server-time": ("mcp-server-time",),
             # its last release calls the mcp SDK's 1.x server API (list_resources)
             "mcp-server-sqlite": ("mcp-server-sqlite", "mcp<2")}
"""Each reference server, with what its environment needs."""


@pytest.fixture(scope="module")
def reference_servers() -> dict[str, Path]:
    """The reference MCP servers' commands, each in a virtual environment of its own
    (installed from PyPI once per machine, kept in the user's cache)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    found = {}
    for name, needs in REFERENCE.items():
        env = cache / "orchestrator-tests" / "mcp-reference" / name
        command = env / "bin" / name
        if not command.exists():
            venv.create(env, with_pip=True, clear=True)
            subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q",
                            *needs], check=True, timeout=900)
        found[name] = command
    return found


def test_the_reference_time_and_sqlite_servers_serve_an_agent(
        tmp_path: Path, reference_servers: dict[str, Path]) -> None:
    db = tmp_path / "notes.sqlite"
    spec = load_agent_card(write_card(tmp_path, [
        {"server": "time", "command": str(reference_servers["mcp-server-time"]), "args": [],
         "tools": ["get_current_time"]},
        {"server": "notes", "command": str(reference_servers["mcp-server-sqlite"]),
         "args": ["--db-path", str(db)], "tools": ["write_query", "read_query"],
         "approval": ["write_query"]},
    ], name="clerk"))
    orch = orchestrator(tmp_path, spec, [
        plan_reply(("t1", "Tell the current time in UTC", "clerk", [], "answer")),
        tool_call("get_current_time", {"timezone": "UTC"}),
        "It is the time the tool said.",
        plan_reply(("t1", "Record a note that the outage ended", "clerk", [], "act")),
        tool_call("write_query", {"query": "CREATE TABLE notes (text TEXT)"}),
        tool_call("write_query", {"query": "INSERT INTO notes VALUES ('outage ended')"}),
        "Recorded.",
    ])
    told = run_guarded(orch, "what time is it in UTC?")
    assert told.ok, told.error
    (sub,) = told.results.values()
    reply = json.loads(sub.tool_calls[0].output)
    assert reply["timezone"] == "UTC" and reply["datetime"].startswith(
        time.strftime("%Y-", time.gmtime()))

    paused = run_guarded(orch, "note that the outage ended")
    assert paused.status == "paused"  # write_query needs an approval, by the card
    assert paused.pending_approvals[0].tool == "write_query"
    result = orch.resume(paused.thread_id, True)
    while result.status == "paused":  # each write is approved on its own
        result = orch.resume(result.thread_id, True)
    assert result.ok, result.error
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT text FROM notes").fetchall() == [("outage ended",)]
    orch.close()


def test_header_secrets_come_from_the_environment(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESK_TOKEN", "s3cret")
    spec = load_agent_card(write_card(tmp_path, [{
        "server": "desk", "url": "http://127.0.0.1:9/mcp", "tools": ["list_tickets"],
        "headers": {"Authorization": "Bearer ${DESK_TOKEN}"}}]))
    server = spec.toolsets[0].server  # type: ignore[attr-defined]
    assert server.connection()["headers"] == {"Authorization": "Bearer s3cret"}
    monkeypatch.delenv("DESK_TOKEN")
    with pytest.raises(ConfigError, match="DESK_TOKEN is not set"):
        load_agent_card(write_card(tmp_path, [{
            "server": "desk", "url": "http://127.0.0.1:9/mcp", "tools": ["list_tickets"],
            "headers": {"Authorization": "Bearer ${DESK_TOKEN}"}}]))


def test_a_card_may_distrust_the_servers_annotations(tmp_path: Path) -> None:
    """MCP annotations are hints from the server: a card can decline them, so every tool is
    a destructive write (approval: destructive then covers all) except those it vouches
    for as read-only."""
    db = tmp_path / "tickets.sqlite"
    spec = load_agent_card(write_card(tmp_path, [{
        "server": "desk", **desk_command(db), "all_tools": True, "trust_annotations": False,
        "read_only": ["pid"], "approval": "destructive"}]))
    tools = {t.name: t for t in asyncio.run(spec.toolsets[0].aload())}
    assert is_read_only(tools["pid"])  # the card's word (the server declares nothing)
    assert not is_read_only(tools["list_tickets"])  # the server's readOnlyHint not taken
    assert policy_of(tools["open_ticket"]).effective_kind.destructive
    assert policy_of(tools["open_ticket"]).approval is not None
    assert policy_of(tools["pid"]).approval is None
