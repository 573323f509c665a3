"""The server as an A2A agent, driven by the a2a-sdk client against the app under uvicorn on
127.0.0.1 with the offline model: the card, messages sent and streamed, a run that waits for
an approval, keys and tenants; checked in the business database and the run store."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, A2AClientError, Client, ClientConfig, ClientFactory
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.errors import TaskNotFoundError
from google.protobuf.json_format import MessageToDict

from orchestrator.agents.catalog import entries_of
from orchestrator.server.progress import progress
from tests.test_server_native import FAILOVER, ROUTE, Served, serving
from tests.test_server_openai import alerts, error_of
from tests.test_server_openai import no_proxy as no_proxy  # autouse: straight to 127.0.0.1
from tests.test_startup_imports import loaded_after

DEMO = "web-3 is down: find the root cause and alert the on-call team"


@pytest.fixture
def served(domain_db: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(domain_db, tmp_path) as running:
        yield running


@pytest.fixture
def slow(domain_db: Path, tmp_path: Path) -> Iterator[Served]:
    """A model that takes 0.5 s a call: a run is still going when the cancel comes."""
    with serving(domain_db, tmp_path, "fake:latency=0.5") as running:
        yield running


def key_of(served: Served, name: str, scopes: str = "chat", tenant: str = "acme") -> str:
    return served.keys.create(name, scopes, tenant=tenant)


@asynccontextmanager
async def a2a(served: Served, key: str | None, *, streaming: bool = False
              ) -> AsyncIterator[Client]:
    """An a2a-sdk client made from the served card, sending ``key`` as the bearer key."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        card = await A2ACardResolver(http, served.live.url).get_agent_card()
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create(card)
        async with client:
            yield client


def message(text: str, *, context_id: str = "", task_id: str = "") -> SendMessageRequest:
    return SendMessageRequest(message=Message(
        role=Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=[Part(text=text)],
        context_id=context_id, task_id=task_id))


async def send(client: Client, request: SendMessageRequest) -> Task:
    """The task a message (sent without streaming) ended in."""
    (response,) = [r async for r in client.send_message(request)]
    assert response.HasField("task")
    return response.task


def text_of(msg: Message) -> str:
    return "\n".join(p.text for p in msg.parts if p.HasField("text"))


def data_of(msg: Message) -> dict[str, Any]:
    (data,) = [MessageToDict(p.data) for p in msg.parts if p.HasField("data")]
    assert isinstance(data, dict)
    return data


def answer_of(task: Task) -> str:
    (artifact,) = task.artifacts
    assert artifact.name == "answer"
    return "\n".join(p.text for p in artifact.parts)


async def test_the_card_lists_every_agents_skills_and_the_keys_it_takes(served: Served) -> None:
    async with httpx.AsyncClient() as http:  # no key: the card is for discovery
        card: AgentCard = await A2ACardResolver(http, served.live.url).get_agent_card()

    assert card.name == "agent-orchestrator" and card.capabilities.streaming
    assert {(i.url, i.protocol_binding, i.protocol_version)
            for i in card.supported_interfaces} == {
        (f"{served.live.url}/a2a", "JSONRPC", "1.0"), (f"{served.live.url}/a2a", "JSONRPC", "0.3")}
    skills = {s.id: s for s in card.skills}
    agents = entries_of(served.orch.agents)
    assert {a.name for a in agents} <= set(skills)
    paging = skills["notifications"]
    assert paging.description.startswith("Alerts the on-call team")
    assert {"it_ops", "on-call", "page"} <= set(paging.tags)
    failover = skills["playbook:planned_failover"]
    assert "playbook" in failover.tags and "traffic" in failover.tags
    assert "playbook:visit_completed" not in skills  # fired by an event, not a message
    scheme = card.security_schemes["apiKey"].http_auth_security_scheme
    assert scheme.scheme == "bearer"
    (requirement,) = card.security_requirements
    assert list(requirement.schemes["apiKey"].list) == ["chat"]


async def test_a_message_runs_the_request_once_and_the_answer_is_the_artifact(
        served: Served, db: sqlite3.Connection) -> None:
    async with a2a(served, key_of(served, "ops")) as client:
        task = await send(client, message(DEMO, context_id="inc-7"))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        answer = answer_of(task)
        assert "Dana Okafor" in answer
        assert alerts(db) == ["web-3"]  # the page happened, once
        run_id = task.metadata["run_id"]
        record = served.orch.records.run(run_id)
        assert (record["thread_id"], record["status"], record["answer"], record["request"]) == (
            "acme:inc-7", "ok", answer, DEMO)
        assert task.metadata["thread_id"] == "inc-7" and task.context_id == "inc-7"

        stored = await client.get_task(GetTaskRequest(id=task.id))
        assert stored.status.state == TaskState.TASK_STATE_COMPLETED
        assert answer_of(stored) == answer

        # The contextId is the conversation: the next message goes on in the same thread.
        again = await send(client, message("check web-1 health", context_id="inc-7"))
        assert again.status.state == TaskState.TASK_STATE_COMPLETED and again.id != task.id
    turns = await served.orch.history("acme:inc-7")
    assert [role for role, _ in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[0] == ("user", DEMO) and turns[2] == ("user", "check web-1 health")
    assert alerts(db) == ["web-3"]


async def test_a_streamed_message_reports_the_runs_events_in_order_then_the_answer(
        served: Served, db: sqlite3.Connection) -> None:
    async with a2a(served, key_of(served, "ops"), streaming=True) as client:
        updates: list[StreamResponse] = [r async for r in client.send_message(message(DEMO))]

    assert updates[0].HasField("task")  # submitted
    assert updates[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
    *working, artifact, final = updates[1:]
    assert all(u.HasField("status_update") for u in working)
    assert {u.status_update.status.state for u in working} == {TaskState.TASK_STATE_WORKING}
    shown = [data_of(u.status_update.status.message) for u in working]
    run_id = shown[0]["run_id"]
    # Every event a client is shown, in the order the run store has them.
    expected = [p for e in served.orch.records.events(run_id) if (p := progress(e))]
    assert shown == expected
    kinds = [s["type"] for s in shown]
    assert kinds[:2] == ["run_started", "plan_made"]
    assert kinds.index("subtask_started") < kinds.index("subtask_finished")
    assert text_of(working[1].status_update.status.message).startswith("plan made: ")

    assert artifact.HasField("artifact_update")
    assert artifact.artifact_update.artifact.name == "answer"
    answer = artifact.artifact_update.artifact.parts[0].text
    assert answer == served.orch.records.run(run_id)["answer"] and "Dana Okafor" in answer
    assert final.HasField("status_update")
    assert final.status_update.status.state == TaskState.TASK_STATE_COMPLETED
    assert alerts(db) == ["web-3"]


async def test_a_run_that_needs_approval_is_input_required_until_someone_decides(
        served: Served, db: sqlite3.Connection) -> None:
    boss = served.client("ana", scopes="chat,approve")
    async with a2a(served, key_of(served, "ops")) as client:
        paused = await send(client, message(FAILOVER, context_id="cr-5"))
        assert paused.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        said = text_of(paused.status.message)
        assert "reroute_traffic" in said and "web-2" in said
        assert "POST /api/threads/cr-5/approvals" in said
        (waiting,) = data_of(paused.status.message)["pending_approvals"]
        assert (waiting["tool"], waiting["args"]) == ("reroute_traffic", {"service": "web-2"})
        assert db.execute(ROUTE).fetchone()[0] == "web-primary"  # nothing moved yet

        # Asking again before anyone decided: still waiting, nothing run.
        still = await send(client, message("go on", task_id=paused.id, context_id="cr-5"))
        assert still.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert db.execute(ROUTE).fetchone()[0] == "web-primary"

        decided = boss.post("/api/threads/cr-5/approvals", json={"approve": True})
        assert decided.status_code == 200 and decided.json()["status"] == "ok"
        done = await send(client, message("go on", task_id=paused.id, context_id="cr-5"))
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert answer_of(done) == decided.json()["answer"]
    assert db.execute(ROUTE).fetchone()[0] == "web-backup-b"
    runs = served.orch.records.runs()
    assert [r.thread_id for r in runs] == ["acme:cr-5"]  # "go on" was never run


async def test_every_call_needs_a_key_with_the_chat_scope(served: Served) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {
        "role": "user", "messageId": "m1", "kind": "message",
        "parts": [{"kind": "text", "text": DEMO}]}}}
    bare = httpx.post(f"{served.live.url}/a2a", json=body, timeout=30)
    assert bare.status_code == 401 and error_of(bare)["code"] == "missing_api_key"
    wrong = httpx.post(f"{served.live.url}/a2a", json=body, timeout=30,
                       headers={"Authorization": "Bearer ok_not-a-key"})
    assert wrong.status_code == 401 and error_of(wrong)["code"] == "invalid_api_key"
    approver = served.client("approver-only", scopes="approve")
    refused = approver.post("/a2a", json=body)
    assert refused.status_code == 403 and error_of(refused)["code"] == "missing_scope"
    with pytest.raises(A2AClientError, match="401"):
        async with a2a(served, None) as client:
            await send(client, message(DEMO))
    assert served.orch.records.runs() == []
    paths = httpx.get(f"{served.live.url}/openapi.json", timeout=30).json()["paths"]
    assert paths["/a2a"]["post"]["x-scope"] == "chat"
    assert "x-scope" not in paths["/.well-known/agent-card.json"]["get"]

    # The 0.3 method names work too, with a key.
    chat = served.client("ops")
    ran = chat.post("/a2a", json=body).json()["result"]
    assert ran["kind"] == "task" and ran["status"]["state"] == "completed"


async def test_a_tenant_cannot_read_or_continue_another_tenants_task_or_thread(
        served: Served, db: sqlite3.Connection) -> None:
    async with a2a(served, key_of(served, "acme-ops")) as acme:
        task = await send(acme, message(FAILOVER, context_id="cr-1"))
        assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        async with a2a(served, key_of(served, "globex-ops", tenant="globex")) as globex:
            with pytest.raises(TaskNotFoundError):
                await globex.get_task(GetTaskRequest(id=task.id))
            with pytest.raises(TaskNotFoundError):
                await globex.cancel_task(CancelTaskRequest(id=task.id))
            with pytest.raises(TaskNotFoundError):
                await send(globex, message("go on", task_id=task.id))
            assert list((await globex.list_tasks(ListTasksRequest())).tasks) == []
            # The same contextId is another thread in another tenant: not paused.
            own = await send(globex, message("check web-1 health", context_id="cr-1"))
            assert own.status.state == TaskState.TASK_STATE_COMPLETED
        listed = (await acme.list_tasks(ListTasksRequest())).tasks
        assert [t.id for t in listed] == [task.id]
    assert await served.orch.apending_approvals("acme:cr-1")  # still waiting for acme
    assert [role for role, _ in await served.orch.history("globex:cr-1")] == [
        "user", "assistant"]
    assert db.execute(ROUTE).fetchone()[0] == "web-primary"


async def test_cancelling_a_task_stops_its_run_and_records_it_interrupted(slow: Served) -> None:
    async with a2a(slow, key_of(slow, "ops"), streaming=True) as client:
        stream = client.send_message(message(DEMO))
        first = await anext(stream)
        assert first.task.status.state == TaskState.TASK_STATE_SUBMITTED
        started = await anext(stream)  # run_started: the run is going
        run_id = data_of(started.status_update.status.message)["run_id"]
        cancelled = await client.cancel_task(CancelTaskRequest(id=first.task.id))
        await stream.aclose()
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        assert f"/api/runs/{run_id}/resume" in text_of(cancelled.status.message)
        stored = await client.get_task(GetTaskRequest(id=first.task.id))
    assert stored.status.state == TaskState.TASK_STATE_CANCELED
    assert slow.orch.records.run(run_id)["status"] == "interrupted"


def test_the_cli_loads_no_a2a_module() -> None:
    assert loaded_after("import orchestrator.cli.app", ("a2a", "orchestrator.server.a2a")) == []
