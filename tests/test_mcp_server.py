"""``orchestrator mcp``: the orchestrator as an MCP server, started as a real process over the
test's data folder and driven by the ``mcp`` client, over stdio and over streamable HTTP on
127.0.0.1. Checked end to end: the tools and their annotations, a request that pages the
on-call engineer (the business database shows the page), a playbook, a run paused for
approval, the run records, and bad input answered as tool errors by a server that goes on."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.test_layers import ENGINE_INTERNALS, edges, modules
from tests.test_startup_imports import loaded_after

ROOT = Path(__file__).resolve().parents[1]
IT_REQUEST = "web-3 is down: find the root cause and alert the on-call team"
NEEDS_APPROVAL = "planned failover for web-2"  # web-2 is up: moving its traffic needs a yes
READ_ONLY = {"list_runs", "get_run", "get_trace"}
LISTENING = "MCP server (streamable HTTP) at "


def server_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "ORCHESTRATOR_HOME": str(home), "ORCHESTRATOR_MODEL": "fake",
           "ORCHESTRATOR_KNOWLEDGE": "0", "NO_PROXY": "127.0.0.1,localhost"}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        env.pop(name, None)
    return env


@asynccontextmanager
async def over_stdio(home: Path, *options: str) -> AsyncIterator[ClientSession]:
    """A client session with ``orchestrator mcp`` started by the client, as MCP hosts do."""
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "orchestrator.cli", "mcp", *options],
                                   env=server_env(home), cwd=str(ROOT))
    with open(home.parent / "mcp-stdio.log", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            yield session


@contextmanager
def http_server(home: Path, *options: str) -> Iterator[str]:
    """``orchestrator mcp --transport http`` on a free port of 127.0.0.1; its endpoint URL."""
    home.mkdir(parents=True, exist_ok=True)
    log = home.parent / "mcp-http.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "mcp", "--transport",
                                 "http", "--port", "0", *options], stdout=out,
                                stderr=subprocess.STDOUT, env=server_env(home), cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while LISTENING not in (text := log.read_text(errors="replace")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the MCP server did not start:\n{text[-3000:]}")
            time.sleep(0.05)  # polling the server's log for its URL, not timing it
        yield text.split(LISTENING)[1].split()[0]
        assert proc.poll() is None, "the server stopped while in use:\n" + log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@asynccontextmanager
async def over_http(url: str) -> AsyncIterator[ClientSession]:
    async with streamable_http_client(url) as (read, write, _), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> types.CallToolResult:
    return await session.call_tool(tool, arguments)


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def ok(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.isError, text_of(result)
    assert result.structuredContent is not None
    return result.structuredContent


def error_line(result: types.CallToolResult) -> str:
    assert result.isError, text_of(result)
    text = text_of(result)
    assert "\n" not in text and "Traceback" not in text, text
    return text


def pages(home: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "domain.sqlite") as db:
        return db.execute("SELECT service, person FROM alerts ORDER BY id").fetchall()


def route(home: Path, service: str) -> str:
    with sqlite3.connect(home / "domain.sqlite") as db:
        return str(db.execute("SELECT pool FROM routes WHERE service = ?",
                              (service,)).fetchone()[0])


async def test_over_stdio_the_tools_run_requests_and_playbooks_and_read_the_runs(
        orchestrator_home: Path) -> None:
    home = orchestrator_home
    async with over_stdio(home) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert {"run_request", "playbook_service_down", "playbook_planned_failover",
                *READ_ONLY} <= set(tools)
        assert "decide_approval" not in tools  # a person approves unless the flag says so
        for name in READ_ONLY:
            hints = tools[name].annotations
            assert hints is not None and hints.readOnlyHint is True
            assert hints.destructiveHint is False and hints.openWorldHint is False
        for name in ("run_request", "playbook_service_down"):
            hints = tools[name].annotations
            assert hints is not None and hints.readOnlyHint is False
            assert hints.destructiveHint is True and hints.openWorldHint is True
        run_schema = tools["run_request"].inputSchema
        assert run_schema["required"] == ["request"]
        assert {"request", "thread_id", "request_id"} == set(run_schema["properties"])
        playbook = tools["playbook_service_down"]
        assert playbook.inputSchema["required"] == ["service"]
        assert playbook.inputSchema["properties"]["severity"]["default"] == "high"
        assert "service_down" in (playbook.description or "")
        assert tools["list_runs"].inputSchema["properties"]["limit"]["minimum"] == 1

        done = await call(session, "run_request", request=IT_REQUEST, request_id="inc-1")
        outcome = ok(done)
        assert outcome["status"] == "ok" and outcome["mode"] == "supervisor"
        assert [(s["agent"], s["status"]) for s in outcome["subtasks"]] == [
            ("diagnostics", "done"), ("notifications", "done")]
        assert "disk full on web-3" in outcome["answer"]
        assert "Paged Dana Okafor" in text_of(done)
        assert pages(home) == [("web-3", "Dana Okafor")]
        again = ok(await call(session, "run_request", request=IT_REQUEST, request_id="inc-1"))
        assert again["run_id"] == outcome["run_id"]  # the same id: its result, not a rerun
        assert pages(home) == [("web-3", "Dana Okafor")]

        fired = ok(await call(session, "playbook_service_down", service="web-4"))
        assert fired["mode"] == "playbook:service_down" and fired["status"] == "ok"
        assert {s["id"] for s in fired["subtasks"]} == {"diagnose", "reroute", "alert", "log"}
        assert pages(home)[-1] == ("web-4", "Dana Okafor")
        assert route(home, "web-4") != "web-primary"

        runs = ok(await call(session, "list_runs", limit=5))["runs"]
        assert [r["run_id"] for r in runs] == [fired["run_id"], outcome["run_id"]]
        stored = ok(await call(session, "get_run", run_id=outcome["run_id"][:10]))
        assert stored["answer"] == outcome["answer"] and stored["subtasks"] == outcome[
            "subtasks"]
        trace = ok(await call(session, "get_trace", run_id=outcome["run_id"]))
        assert trace["run"]["run_id"] == outcome["run_id"]
        assert [s["agent"] for s in trace["subtasks"]] == ["diagnostics", "notifications"]
        assert trace["events"][-1]["type"] == "answer"
        assert any(e["type"] == "tool_called" and e["data"]["tool"] == "alert_oncall"
                   for e in trace["events"]), [e["type"] for e in trace["events"]]


async def test_bad_input_is_a_one_line_tool_error_and_the_server_goes_on(
        orchestrator_home: Path) -> None:
    async with over_stdio(orchestrator_home) as session:
        assert "the request is empty" in error_line(await call(session, "run_request",
                                                               request="  "))
        assert "no run 'nope'" in error_line(await call(session, "get_run", run_id="nope"))
        assert "no run 'nope'" in error_line(await call(session, "get_trace", run_id="nope"))
        assert "minimum of 1" in error_line(await call(session, "list_runs", limit=0))
        assert "'service' is a required property" in error_line(
            await call(session, "playbook_service_down"))
        assert "was unexpected" in error_line(
            await call(session, "playbook_service_down", service="web-3", who="me"))
        assert "unknown tool 'decide_approval'" in error_line(
            await call(session, "decide_approval", thread_id="t", approve=True))
        assert "is a required property" in error_line(await call(session, "run_request"))
        # still serving, and nothing ran
        assert ok(await call(session, "list_runs"))["runs"] == []


async def test_over_http_a_paused_run_names_the_waiting_call_and_is_decided(
        orchestrator_home: Path) -> None:
    home = orchestrator_home
    with http_server(home, "--allow-approvals") as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
        async with over_http(url) as session:
            tools = {t.name: t for t in (await session.list_tools()).tools}
            decide = tools["decide_approval"]
            assert decide.annotations is not None and decide.annotations.destructiveHint
            paused = await call(session, "run_request", request=NEEDS_APPROVAL,
                                thread_id="ops-1")
            outcome = ok(paused)  # not an error: the run waits for a person
            assert outcome["status"] == "paused" and outcome["thread_id"] == "ops-1"
            (waiting,) = outcome["waiting_for_approval"]
            assert waiting["tool"] == "reroute_traffic" and waiting["args"] == {
                "service": "web-2"}
            assert waiting["preview"] == "web-2 traffic: web-primary -> web-backup-b"
            shown = text_of(paused)
            assert shown.startswith(f"Run {outcome['run_id']} (thread ops-1) is paused: 1 "
                                    "action waits for a person's approval and has not run.")
            assert 'reroute_traffic({"service": "web-2"}) -> web-2 traffic: web-primary -> ' \
                   "web-backup-b" in shown
            assert "`orchestrator approve ops-1`" in shown and "decide_approval" in shown
            assert route(home, "web-2") == "web-primary"

            stored = ok(await call(session, "get_run", run_id=outcome["run_id"]))
            assert stored["status"] == "paused"
            assert stored["waiting_for_approval"] == outcome["waiting_for_approval"]
            assert "no run 'x'" in error_line(await call(session, "decide_approval",
                                                         run_id="x", approve=True))
            assert "no waiting call has key wrong" in error_line(await call(
                session, "decide_approval", run_id=outcome["run_id"], approve=True,
                keys=["wrong"]))
            done = ok(await call(session, "decide_approval", run_id=outcome["run_id"],
                                 approve=True, reason="CR-7", keys=[waiting["key"]]))
            assert done["status"] == "ok" and done["run_id"] == outcome["run_id"]
            assert route(home, "web-2") == "web-backup-b"
            trace = ok(await call(session, "get_trace", run_id=outcome["run_id"]))
            decided = [e["data"] for e in trace["events"] if e["type"] == "approval_decided"]
            assert [(d["approved"], d["reason"], d["approver"]) for d in decided] == [
                (True, "CR-7", "mcp:mcp")]
            assert "has no paused run" in error_line(await call(
                session, "decide_approval", thread_id="ops-1", approve=True))
            assert "is ok, not paused" in error_line(await call(
                session, "decide_approval", run_id=outcome["run_id"], approve=True))


async def test_over_stdio_a_paused_run_says_how_a_person_approves_it(
        orchestrator_home: Path) -> None:
    home = orchestrator_home
    async with over_stdio(home, "--model", "fake") as session:
        outcome = ok(await call(session, "playbook_planned_failover", service="web-2"))
    assert outcome["status"] == "paused" and outcome["mode"] == "playbook:planned_failover"
    assert outcome["waiting_for_approval"][0]["tool"] == "reroute_traffic"
    thread = outcome["thread_id"]
    assert outcome["how_to_approve"].startswith(
        "A person approves or denies on the machine serving this (same ORCHESTRATOR_HOME): "
        f"`orchestrator approve {thread} --model fake`")
    assert "decide_approval" not in outcome["how_to_approve"]
    # the command it names is the real one, and it works
    approved = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "approve", thread, "--model", "fake",
         "--as", "erin", "--json"], capture_output=True, text=True, env=server_env(home),
        timeout=120)
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["status"] == "ok"
    assert route(home, "web-2") == "web-backup-b"


def test_the_http_endpoint_listens_only_on_loopback(orchestrator_home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "mcp", "--transport", "http", "--host",
         "0.0.0.0", "--port", "0"], capture_output=True, text=True,
        env=server_env(orchestrator_home), timeout=120)
    assert proc.returncode == 2
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert "not a loopback address" in line


def test_the_mcp_front_door_loads_only_when_used_and_uses_only_the_service_api() -> None:
    assert loaded_after("import orchestrator.cli.app", ("mcp", "orchestrator.mcp_server",
                                                        "starlette", "uvicorn")) == []
    ours = {m for m in modules() if m == "mcp_server" or m.startswith("mcp_server.")}
    assert ours and edges(ours, ENGINE_INTERNALS) == []
    assert edges({m for m in modules() if m not in ours and not m.startswith("cli")},
                 {"mcp_server"}) == []
