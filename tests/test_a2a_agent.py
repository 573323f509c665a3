"""Remote specialists over A2A (``orchestrator.integrations.a2a_agent``), driven by the
engine on the offline model against real A2A agents: a2a-sdk's server under uvicorn on
127.0.0.1, with executors written here. What the remote agents received, what the events
and results say, and how failures, questions back, hangs and a server that is down end."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
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
    Message,
    Part,
    Role,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from starlette.applications import Starlette
from starlette.routing import Mount

from orchestrator import Orchestrator
from orchestrator.agents.cards import load_agent_card
from orchestrator.agents.external import ExternalStatus, ExternalTask
from orchestrator.agents.spec import AgentSpec
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.integrations.a2a_agent import A2AAgent, a2a_agent_spec, a2a_spec_from_card


@dataclass
class Received:
    """What one remote agent was sent: each message's context and text, the Authorization
    header it came with, and the tasks it was asked to cancel."""

    messages: list[tuple[str, str]] = field(default_factory=list)
    authorization: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


class Remote(AgentExecutor):
    """A remote agent that behaves as ``behaviour`` says: ``page`` (streams a working
    status, then an artifact, then completes), ``status`` (replies with a message), ``fail``,
    ``ask`` (wants input) or ``hang``."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.received = Received()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.received.messages.append((str(context.context_id), context.get_user_input()))
        headers = context.call_context.state.get("headers", {})
        self.received.authorization.append(headers.get("authorization", ""))
        if self.behaviour == "status":
            await event_queue.enqueue_event(Message(
                role=Role.ROLE_AGENT, message_id="m1", context_id=context.context_id,
                parts=[Part(text="web-3 is down since 09:12 (health checks failing)")]))
            return
        task_id, context_id = str(context.task_id), str(context.context_id)
        await event_queue.enqueue_event(Task(
            id=task_id, context_id=context_id,
            status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED)))
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.start_work(updater.new_agent_message([Part(text="paging the on-call")]))
        if self.behaviour == "page":
            await updater.add_artifact([Part(text="Paged alice (on call for web-3).")],
                                       name="page")
            await updater.complete()
        elif self.behaviour == "fail":
            await updater.failed(updater.new_agent_message(
                [Part(text="the paging provider refused: quota exceeded")]))
        elif self.behaviour == "ask":
            await updater.requires_input(updater.new_agent_message(
                [Part(text="which team should I page?")]))
        else:
            await asyncio.Event().wait()  # until the task is cancelled

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.received.cancelled.append(str(context.task_id))
        updater = TaskUpdater(event_queue, str(context.task_id), str(context.context_id))
        await updater.cancel()


BEHAVIOURS = ("page", "status", "fail", "ask", "hang")
CARD = """\
name: pager
description: Pages the on-call engineer of a service.
domain: it_ops
a2a:
  url: {url}
  headers:
    Authorization: "Bearer ${{PAGER_TOKEN}}"
  read_only: false
  timeout_s: 60
"""


def remote_card(behaviour: str, url: str) -> AgentCard:
    """Each remote agent's card: the pager streams, the status desk does not."""
    if behaviour == "status":
        return AgentCard(
            name="Status desk", description="Reports the health of production services.",
            version="1", supported_interfaces=[AgentInterface(
                url=url, protocol_binding="JSONRPC", protocol_version="1.0")],
            capabilities=AgentCapabilities(streaming=False),
            default_input_modes=["text/plain"], default_output_modes=["text/plain"],
            skills=[AgentSkill(id="status", name="check service status",
                               description="Tells whether a service is up or down.",
                               tags=["health", "status"])])
    return AgentCard(
        name="Pager", description="Pages the on-call engineer of a service.", version="1",
        supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC",
                                             protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"], default_output_modes=["text/plain"],
        skills=[AgentSkill(id="page", name="page the on-call",
                           description="Pages whoever is on call for a service.",
                           tags=["paging", "on-call", "escalation"])])


@dataclass
class Remotes:
    """The remote agents, each under ``<base>/<behaviour>``, served by one uvicorn."""

    base: str
    agents: dict[str, Remote]

    def url(self, behaviour: str) -> str:
        return f"{self.base}/{behaviour}"

    def received(self, behaviour: str) -> Received:
        return self.agents[behaviour].received


@pytest.fixture(scope="module")
def served() -> Iterator[Remotes]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    agents = {b: Remote(b) for b in BEHAVIOURS}
    mounts = []
    for behaviour, executor in agents.items():
        card = remote_card(behaviour, f"{base}/{behaviour}/")
        handler = DefaultRequestHandler(executor, InMemoryTaskStore(), card)
        mounts.append(Mount(f"/{behaviour}", app=Starlette(routes=[
            *create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")])))
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=mounts), log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    served_card = httpx.get(f"{base}/page{AGENT_CARD_WELL_KNOWN_PATH}", timeout=30)
    assert served_card.json()["name"] == "Pager"  # served (the socket was listening before)
    yield Remotes(base, agents)
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()
    assert not thread.is_alive()


@pytest.fixture
def remotes(served: Remotes) -> Remotes:
    """The served remote agents with nothing received yet."""
    for agent in served.agents.values():
        agent.received = Received()
    return served


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients go straight to 127.0.0.1, whatever proxy the machine sets."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def down_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def orchestrator(tmp_path: Path, agents: list[AgentSpec], **settings: object
                 ) -> Orchestrator:
    return Orchestrator("fake", agents=agents, settings=Settings(
        home=tmp_path, knowledge=False, retry_backoff_s=0, **settings))  # type: ignore[arg-type]


def external(spec: AgentSpec) -> A2AAgent:
    assert isinstance(spec.external, A2AAgent)
    return spec.external


def test_the_planner_sees_what_the_remote_card_says(remotes: Remotes) -> None:
    pager = a2a_agent_spec("pager", remotes.url("page"))
    assert pager.description == "Pages the on-call engineer of a service."
    assert pager.skills == ["page the on-call", "Pages whoever is on call for a service",
                            "paging", "on-call", "escalation"]
    assert not external(pager).kind.read_only
    status = a2a_agent_spec("status_desk", remotes.url("status"), read_only=True,
                            skills=["service health"])
    assert status.description == "Reports the health of production services."
    assert status.skills == ["service health"]  # given: kept
    assert external(status).kind.read_only
    own = a2a_agent_spec("pager", remotes.url("page"), description="Our pager.",
                         skills=["page"])
    assert (own.description, own.skills) == ("Our pager.", ["page"])


def test_a_remote_agent_gets_its_goal_and_inputs_only_and_reports_as_it_goes(
        remotes: Remotes, tmp_path: Path) -> None:
    status = a2a_agent_spec("status_desk", remotes.url("status"), read_only=True)
    pager = a2a_agent_spec("pager", remotes.url("page"))
    orch = orchestrator(tmp_path, [status, pager])
    request = "check the status of web-3, then page the on-call about it"
    result = orch.run(request)

    assert result.ok, result.error
    checked, paged = result.results["t1"], result.results["t2"]
    assert (checked.agent, checked.kind, checked.status) == ("status_desk", "answer", "done")
    assert (paged.agent, paged.kind, paged.status) == ("pager", "act", "done")
    assert paged.output == "Paged alice (on call for web-3)."
    # the pager got its goal and the status desk's output, in its subtask's own context
    ((context, text),) = remotes.received("page").messages
    assert context == f"{result.run_id}:t2"
    assert text == (f"{paged.goal}\n\n[input from status_desk (t1)]\n"
                    "web-3 is down since 09:12 (health checks failing)")
    assert "check the status" not in text and request not in text
    ((context, text),) = remotes.received("status").messages
    assert (context, text) == (f"{result.run_id}:t1", checked.goal)
    statuses = [(e.data["state"], e.data["text"]) for e in result.events
                if e.type == "agent_status" and e.agent == "pager"]
    assert statuses == [("submitted", ""), ("working", "paging the on-call")]
    kinds = [e.type for e in result.events if e.agent == "pager"]
    assert kinds == ["subtask_started", "agent_status", "agent_status", "attempt_finished",
                     "subtask_finished"]
    assert "alice" in result.answer
    # a second run, in an event loop of its own, reaches the same agents
    again = orch.run("page the on-call about web-3")
    assert again.ok, again.error
    assert len(remotes.received("page").messages) == 2
    orch.close()
    asyncio.run(external(pager).aclose())


def test_an_agent_card_with_an_a2a_section_runs_on_the_remote_agent(
        remotes: Remotes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGER_TOKEN", "s3cret")
    card = tmp_path / "pager.yaml"
    card.write_text(CARD.format(url=remotes.url("page")), "utf-8")
    pager = load_agent_card(card)
    assert (pager.name, pager.domain, pager.source) == ("pager", "it_ops", str(card))
    assert pager.description == "Pages the on-call engineer of a service."
    assert "page the on-call" in pager.skills  # from the remote card: the YAML gives none
    assert not external(pager).kind.read_only and external(pager).timeout_s == 60
    orch = orchestrator(tmp_path, [pager])
    result = orch.run("page the on-call about web-3")
    assert result.ok, result.error
    assert remotes.received("page").authorization == ["Bearer s3cret"]
    orch.close()
    # a card section with no description of its own takes the remote card's
    bare = a2a_spec_from_card("pager", {"url": remotes.url("status"), "read_only": True},
                              description="", skills=[])
    assert bare.description == "Reports the health of production services."


def test_a_card_section_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"a2a\.rw: Extra inputs"):
        a2a_spec_from_card("pager", {"url": "http://127.0.0.1:1", "rw": True},
                           description="Pages.")
    with pytest.raises(ConfigError, match="environment variable NO_SUCH_TOKEN"):
        a2a_spec_from_card("pager", {"url": "http://127.0.0.1:1", "headers": {
            "Authorization": "Bearer ${NO_SUCH_TOKEN}"}}, description="Pages.")
    with pytest.raises(ConfigError, match="must start with http"):
        a2a_spec_from_card("pager", {"url": "pager.example.com"}, description="Pages.")


def test_a_failed_remote_task_fails_its_subtask_with_the_remote_reason(
        remotes: Remotes, tmp_path: Path) -> None:
    pager = a2a_agent_spec("pager", remotes.url("fail"))
    orch = orchestrator(tmp_path, [pager], max_replans=0)
    result = orch.run("page the on-call about web-3")
    (sub,) = result.results.values()
    assert sub.status == "failed"
    assert sub.error == "the remote task failed: the paging provider refused: quota exceeded"
    assert len(remotes.received("fail").messages) == 1  # its decision: not retried
    assert not result.ok
    orch.close()


def test_a_remote_agent_that_asks_for_input_fails_clearly(remotes: Remotes,
                                                          tmp_path: Path) -> None:
    pager = a2a_agent_spec("pager", remotes.url("ask"))
    orch = orchestrator(tmp_path, [pager], max_replans=0)
    result = orch.run("page the on-call about web-3")
    (sub,) = result.results.values()
    assert sub.status == "failed"
    assert "asked for input (input-required): which team should I page?" in (sub.error or "")
    assert "cannot answer it" in (sub.error or "")
    received = remotes.received("ask")
    assert len(received.messages) == 1 and len(received.cancelled) == 1  # not left waiting
    orch.close()


def test_a_hung_remote_agent_is_cut_at_the_subtask_timeout_and_its_task_cancelled(
        remotes: Remotes, tmp_path: Path) -> None:
    pager = a2a_agent_spec("pager", remotes.url("hang"))
    orch = orchestrator(tmp_path, [pager], subtask_timeout_s=1.0, max_retries=0,
                        max_replans=0)
    result = orch.run("page the on-call about web-3")
    (sub,) = result.results.values()
    # It took the task and went quiet: it may have paged, so the page is not sent again.
    assert sub.status == "unknown" and sub.failure_kind == "outcome_unknown"
    assert "whether it took effect is unknown" in (sub.error or "")
    assert [(e.data["state"]) for e in result.events if e.type == "agent_status"] == [
        "submitted", "working"]
    received = remotes.received("hang")
    assert len(received.messages) == 1 and len(received.cancelled) == 1
    orch.close()


def test_a_server_that_is_down_fails_the_subtask_after_the_retries(tmp_path: Path) -> None:
    url = down_url()
    pager = a2a_agent_spec("pager", url, description="Pages the on-call engineer.",
                           skills=["page the on-call"])
    assert pager.skills == ["page the on-call"]  # registered while down
    orch = orchestrator(tmp_path, [pager], max_retries=1, max_replans=0)
    result = orch.run("page the on-call about web-3")
    (sub,) = result.results.values()
    assert sub.status == "failed" and sub.attempts == 2
    assert sub.error is not None and f"cannot reach the A2A agent at {url}" in sub.error
    # Nothing was sent: safe to send again, and it was.
    assert sub.error.startswith("ExternalUnreachable: ") and "\n" not in sub.error
    assert [e.type for e in result.events].count("retried") == 1
    orch.close()


def test_a_card_that_cannot_be_read_is_a_clear_config_error() -> None:
    url = down_url()
    with pytest.raises(ConfigError) as caught:
        a2a_agent_spec("pager", url)
    message = str(caught.value)
    assert f"{url}{AGENT_CARD_WELL_KNOWN_PATH}" in message and "\n" not in message
    assert "start the remote agent or fix its url, or give a description" in message


def test_the_agent_works_from_one_event_loop_to_the_next(remotes: Remotes) -> None:
    """The sync API runs each request in an event loop of its own; an HTTP client belongs
    to one loop, so each loop gets its own (closed when the loop ends)."""
    agent = external(a2a_agent_spec("pager", remotes.url("page")))
    steps: list[object] = []
    task = ExternalTask(run_id="r1", subtask_id="t1", goal="page the on-call", kind="act")
    for _ in range(2):
        reply = asyncio.run(agent.run(task, steps.append))
        assert (reply.status, reply.output) == ("done", "Paged alice (on call for web-3).")
    assert steps == [ExternalStatus("submitted"), ExternalStatus("working",
                                                                 "paging the on-call")] * 2
    asyncio.run(agent.aclose())
