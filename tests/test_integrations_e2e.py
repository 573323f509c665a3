"""The IT ops pack with agents from elsewhere, end to end: one request whose plan gives work
at once to built-in agents (diagnostics, notifications), an agent whose tools come from an
MCP server (a service desk over stdio), and a remote agent over A2A (a status page, an
a2a-sdk server on 127.0.0.1). Both outside agents are named in YAML cards; the business
database, the service desk's and the status page's records, and the run's events show each.

The status page posts only once the service desk's ticket exists, so the run can only end
well if the two ran at the same time."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Part,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from starlette.applications import Starlette

from orchestrator import Orchestrator
from orchestrator.agents.cards import load_agent_cards
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.config import Settings
from orchestrator.models.fake import FakeChatModel

ROOT = Path(__file__).resolve().parents[1]
REQUEST = ("web-3 is down: find the root cause, open a service desk ticket about it, post a "
           "status page update and alert the on-call team")
WAIT_S = 60.0
"""How long the status page waits for the ticket (a test that would hang, not a timing)."""


class StatusPage(AgentExecutor):
    """A remote status page: posts an update to its own SQLite file once the outage has a
    ticket in the service desk's file."""

    def __init__(self, posts: Path, tickets: Path) -> None:
        self.posts, self.tickets = posts, tickets
        self.received: list[str] = []

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.received.append(context.get_user_input())
        task_id, context_id = str(context.task_id), str(context.context_id)
        await event_queue.enqueue_event(Task(id=task_id, context_id=context_id, status=TaskStatus(
            state=TaskState.TASK_STATE_SUBMITTED)))
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.start_work(updater.new_agent_message(
            [Part(text="waiting for the service desk ticket")]))
        ticket = await self._ticket()
        if ticket is None:
            await updater.failed(updater.new_agent_message(
                [Part(text="no service desk ticket appeared for the outage")]))
            return
        with sqlite3.connect(self.posts) as db:
            db.execute("CREATE TABLE IF NOT EXISTS posts (text TEXT)")
            db.execute("INSERT INTO posts VALUES (?)", (f"Investigating (ticket T-{ticket})",))
        await updater.add_artifact([Part(text=f"Posted: investigating, ticket T-{ticket}.")],
                                   name="post")
        await updater.complete()

    async def _ticket(self) -> int | None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                with sqlite3.connect(self.tickets) as db:
                    row = db.execute("SELECT max(id) FROM tickets").fetchone()
                if row and row[0] is not None:
                    return int(row[0])
            except sqlite3.OperationalError:
                pass  # the desk has not made its table yet
            await asyncio.sleep(0.05)  # polling another process's file
        return None

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(event_queue, str(context.task_id), str(context.context_id)).cancel()


@pytest.fixture
def status_page(tmp_path: Path) -> Iterator[tuple[str, StatusPage]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    page = StatusPage(tmp_path / "status.sqlite", tmp_path / "tickets.sqlite")
    card = AgentCard(
        name="Status page", description="Posts customer-facing status page updates about "
        "outages.", version="1", supported_interfaces=[AgentInterface(
            url=f"{url}/", protocol_binding="JSONRPC", protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True), default_input_modes=["text/plain"],
        default_output_modes=["text/plain"], skills=[AgentSkill(
            id="post", name="post a status page update",
            description="Posts an update about an outage on the public status page.",
            tags=["status page", "update the status page"])])
    handler = DefaultRequestHandler(page, InMemoryTaskStore(), card)
    app = Starlette(routes=[*create_agent_card_routes(card),
                            *create_jsonrpc_routes(handler, "/")])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert httpx.get(f"{url}{AGENT_CARD_WELL_KNOWN_PATH}", timeout=30,
                     trust_env=False).status_code == 200
    yield url, page
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


def write_cards(folder: Path, tickets: Path, status_url: str) -> Path:
    folder.mkdir()
    (folder / "service_desk.yaml").write_text(yaml.safe_dump({
        "name": "service_desk", "domain": "it_ops",
        "description": "Opens and lists service desk tickets.",
        "skills": ["open a service desk ticket", "list tickets"],
        "mcp": [{"server": "desk", "command": sys.executable,
                 "args": ["-m", "tests.support.mcp_ticket_server", str(tickets)],
                 "cwd": str(ROOT), "tools": ["list_tickets", "open_ticket"]}]}))
    (folder / "status_page.yaml").write_text(yaml.safe_dump({  # described by its own card
        "name": "status_page", "domain": "it_ops", "a2a": {"url": status_url}}))
    return folder


def test_built_in_mcp_and_a2a_agents_work_one_plan_in_parallel(
        tmp_path: Path, domain_db: Path, status_page: tuple[str, StatusPage],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    url, page = status_page
    tickets = tmp_path / "tickets.sqlite"
    cards = load_agent_cards(write_cards(tmp_path / "cards", tickets, url))
    status_spec = next(c for c in cards if c.name == "status_page")
    assert "status page" in status_spec.description.lower()  # from the remote card
    orch = Orchestrator(FakeChatModel(latency=0.05), agents=[*it_ops_agents(), *cards],
                        domain_db=domain_db, settings=Settings(
                            home=tmp_path / "home", knowledge=False))
    result = orch.run(REQUEST)

    assert result.ok, (result.error, result.answer)
    assert result.plan is not None
    by_agent = {s.agent: s for s in result.plan.subtasks}
    assert {"diagnostics", "service_desk", "status_page", "notifications"} <= set(by_agent)
    assert by_agent["service_desk"].depends_on == by_agent["status_page"].depends_on == []
    # Each system shows its part, once.
    with sqlite3.connect(tickets) as db:
        (title,) = [r[0] for r in db.execute("SELECT title FROM tickets")]
    assert "ticket" in title.lower()
    with sqlite3.connect(tmp_path / "status.sqlite") as db:
        assert db.execute("SELECT text FROM posts").fetchall() == [
            ("Investigating (ticket T-1)",)]
    with sqlite3.connect(domain_db) as db:
        assert db.execute("SELECT count(*) FROM alerts WHERE service = 'web-3'"
                          ).fetchone()[0] == 1
    # The remote got its goal (and no other agent's work or the whole request).
    (sent,) = page.received
    assert "status page" in sent and "service desk" not in sent
    # The events show each agent's work, stored as they are in the run store.
    seen = {(e.type, e.agent, (e.data or {}).get("tool")) for e in result.events}
    assert ("tool_called", "service_desk", "open_ticket") in seen
    assert ("tool_called", "diagnostics", "find_root_cause") in seen
    assert ("tool_called", "notifications", "alert_oncall") in seen
    assert any(t == "agent_status" and a == "status_page" for t, a, _ in seen)
    with sqlite3.connect(tmp_path / "home" / "runs.sqlite") as db:
        stored = db.execute("SELECT count(*) FROM events WHERE run_id = ?",
                            (result.run_id,)).fetchone()[0]
    assert stored == len(result.events)
    for agent in ("service_desk", "status_page", "diagnostics", "notifications"):
        assert result.results[by_agent[agent].id].status == "done"
    orch.close()
