"""The orchestrator as an A2A agent: its card at ``/.well-known/agent-card.json`` and a
JSON-RPC endpoint at ``/a2a`` (a2a-sdk's request handler, protocol 1.0 and 0.3).

A message's text runs as a request on the thread of the caller's tenant that the message's
``contextId`` names (``<tenant>:<contextId>``, as chat threads), so a conversation goes on
from message to message. The task's status follows the run: ``working`` updates as its
events arrive (plan made, subtasks started and finished, approvals asked), then the answer
as the artifact ``answer`` and ``completed``; a failed run is ``failed`` with the reason; a
run that waits for an approval is ``input-required``, its message naming the waiting calls
and how to decide them through the approvals API. A later message on that task (same
``taskId``) reports what became of the run: still waiting, or its answer once decided.

Every call needs a key with the ``chat`` scope (401/403 with the server's JSON error
otherwise). Tasks are kept in memory per tenant: one tenant's task ids are unknown to
another's keys, as are its threads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

from a2a.auth.user import User
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import DefaultServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import AgentCard, Message, Part, Task, TaskState, TaskStatus
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf.json_format import ParseDict
from google.protobuf.struct_pb2 import Value
from starlette.types import ASGIApp

from orchestrator.agents.catalog import entries_of
from orchestrator.api import Orchestrator
from orchestrator.approvals import ApprovalRequest
from orchestrator.errors import OrchestratorError, RequestError
from orchestrator.events import Event
from orchestrator.server.a2a_card import orchestrator_card
from orchestrator.server.auth import declare_scopes, require
from orchestrator.server.errors import ApiError, internal_error
from orchestrator.server.keys import KeyInfo
from orchestrator.server.native import LIVE_STATUSES
from orchestrator.server.progress import paused_answer, progress
from orchestrator.server.run_events import POLL_S
from orchestrator.server.streaming import RunFeed
from orchestrator.server.threads import ChatThread, chat_thread

A2A_PATH = "/a2a"
CANCEL_WAIT_S = 30.0
"""How long ``tasks/cancel`` waits for the run to stop and be recorded."""
_ENDED_OK = frozenset({"ok", "partial", "unknown"})
"""Run statuses whose task is ``completed`` (its status message says what was not done)."""


class KeyUser(User):
    """The caller as the A2A handler sees it: the API key's name and tenant."""

    def __init__(self, key: KeyInfo) -> None:
        self.key = key

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self.key.name


def tenant_of(context: ServerCallContext) -> str:
    """Who owns a task: the caller's tenant (never the ``tenant`` field a request may carry)."""
    if not isinstance(context.user, KeyUser):  # every route checks the key first
        raise RuntimeError("an A2A call reached the task store without a verified key")
    return context.user.key.tenant


class _KeyContextBuilder(DefaultServerCallContextBuilder):
    """The call context with the caller's key; the key itself is dropped from the headers
    the handler keeps (they end up in its debug logs)."""

    def build(self, request: Any) -> ServerCallContext:
        context = super().build(request)
        context.state["headers"] = {k: v for k, v in context.state["headers"].items()
                                    if k.lower() != "authorization"}
        context.user = KeyUser(request.state.a2a_caller)
        return context


class OrchestratorExecutor(AgentExecutor):
    """Runs each A2A message as an orchestrator request and reports the run on its task."""

    def __init__(self, orch: Orchestrator, keep: set[asyncio.Task[Any]]) -> None:
        """``keep`` holds each run's task until it ends (the app waits for them on
        shutdown); a client that leaves does not stop the run."""
        self.orch = orch
        self.keep = keep
        self.feeds: dict[str, RunFeed] = {}
        """The live run of each task id, for ``tasks/cancel``."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = str(context.task_id), str(context.context_id)
        updater = TaskUpdater(event_queue, task_id, context_id)
        caller: KeyInfo = tenant_key(context)
        task = context.current_task
        if task is None:
            await event_queue.enqueue_event(Task(
                id=task_id, context_id=context_id,
                status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                history=[context.message] if context.message else []))
        try:
            thread = chat_thread(caller.tenant, context_id, None)
        except ApiError as exc:
            await updater.reject(_say(updater, exc.message.replace("X-Thread-Id",
                                                                    "contextId")))
            return
        if task is not None and task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED:
            await self._report_paused_run(updater, task, thread)
            return
        await self._run(updater, context.get_user_input(), thread)

    async def _run(self, updater: TaskUpdater, text: str, thread: ChatThread) -> None:
        try:
            text = self.orch.check_request(text)
            feed = RunFeed(partial(self.orch.arun, text, thread_id=thread.stored), self.keep)
            await feed.started()  # a busy or paused thread is refused here
        except RequestError as exc:
            await updater.reject(_say(updater, str(exc)))
            return
        except OrchestratorError as exc:
            await updater.failed(_say(updater, str(exc)))
            return
        self.feeds[updater.task_id] = feed
        try:
            async for batch in feed.batches():
                for item in batch:
                    if isinstance(item, Event) and (shown := progress(item)) is not None:
                        await updater.update_status(
                            TaskState.TASK_STATE_WORKING, _say(updater, _line(shown), shown),
                            metadata=_run_metadata(item.run_id, thread)
                            if item.type == "run_started" else None)
        finally:
            self.feeds.pop(updater.task_id, None)
        if feed.task.cancelled():  # by tasks/cancel, which reports it
            return
        try:
            result = feed.task.result()
        except OrchestratorError as exc:
            await updater.failed(_say(updater, str(exc)))
            return
        except Exception as exc:  # a bug; RunFeed logged it
            await updater.failed(_say(updater, internal_error(exc).message))
            return
        pending = [p.to_dict() for p in result.pending_approvals]
        await self._finish(updater, thread, result.run_id, result.status, result.answer,
                           result.error, pending)

    async def _report_paused_run(self, updater: TaskUpdater, task: Task,
                                 thread: ChatThread) -> None:
        """A message on a task that waits for an approval: the run's state now (the message
        itself is not run: the thread takes no new request while it waits)."""
        run_id = str(task.metadata["run_id"]) if "run_id" in task.metadata else ""
        try:
            record = await asyncio.to_thread(self.orch.records.run, run_id)
            while record["status"] in LIVE_STATUSES:  # decided; going on in another request
                await asyncio.sleep(POLL_S)
                record = await asyncio.to_thread(self.orch.records.run, run_id)
        except RequestError as exc:  # no run store, or a run it does not know
            await updater.failed(_say(updater, f"The task's run cannot be read: {exc}"))
            return
        pending: list[dict[str, Any]] = []
        if record["status"] == "paused":
            pending = [p.to_dict() for p in await self.orch.apending_approvals(thread.stored)]
        await self._finish(updater, thread, run_id, record["status"], record["answer"] or "",
                           record["error"], pending)

    async def _finish(self, updater: TaskUpdater, thread: ChatThread, run_id: str,
                      status: str, answer: str, error: str | None,
                      pending: list[dict[str, Any]]) -> None:
        """The task's end (or pause) for a run that ended with ``status``."""
        about = {"run_id": run_id, "thread_id": thread.id, "status": status}
        if status == "paused":
            waiting = [ApprovalRequest.from_dict(p) for p in pending]
            await updater.requires_input(_say(
                updater, paused_answer(waiting, thread.id, thread.stored),
                {**about, "pending_approvals": pending}))
            return
        if answer:
            await updater.add_artifact([Part(text=answer, media_type="text/plain")],
                                       name="answer", metadata=about)
        if status in _ENDED_OK:
            note = {"ok": "Done.", "partial": "Done in part: some subtasks failed or were "
                    "skipped (the answer says which).", "unknown": "Done, but a write's "
                    "outcome is unknown (it was cut off): check before retrying."}[status]
            await updater.complete(_say(updater, note, about))
            return
        reason = error or "no reason given"
        if status == "interrupted":
            reason += f"; POST /api/runs/{run_id}/resume continues the run"
        await updater.failed(_say(updater, f"The run {status}: {reason}", about))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Stop the task's run (recorded as interrupted; it can be resumed) and mark the
        task cancelled. A task waiting for an approval leaves its run paused."""
        updater = TaskUpdater(event_queue, str(context.task_id), str(context.context_id))
        task = context.current_task
        run_id = str(task.metadata["run_id"]) if task and "run_id" in task.metadata else ""
        feed = self.feeds.get(updater.task_id)
        note = "Cancelled."
        if feed is not None and not feed.task.done():
            feed.task.cancel()
            await asyncio.wait({feed.task}, timeout=CANCEL_WAIT_S)
            note = ("Cancelled: the run stopped and is recorded as interrupted; "
                    f"POST /api/runs/{run_id or '<run id>'}/resume continues it.")
        elif task is not None and task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED:
            note = ("Cancelled here; the run still waits for its approval on thread "
                    f"{task.context_id!r} (decide it through /api/threads/.../approvals).")
        await updater.cancel(_say(updater, note))


def tenant_key(context: RequestContext) -> KeyInfo:
    user = context.call_context.user
    if not isinstance(user, KeyUser):
        raise RuntimeError("an A2A call reached the executor without a verified key")
    return user.key


def _say(updater: TaskUpdater, text: str, data: dict[str, Any] | None = None) -> Message:
    """The agent's message: ``text``, and ``data`` as a JSON part when given."""
    parts = [Part(text=text, media_type="text/plain")]
    if data is not None:
        parts.append(Part(data=ParseDict(data, Value()), media_type="application/json"))
    return updater.new_agent_message(parts)


def _run_metadata(run_id: str, thread: ChatThread) -> dict[str, Any]:
    return {"run_id": run_id, "thread_id": thread.id}


def _line(item: dict[str, Any]) -> str:
    """One line for a progress item: what happened, who, and the detail that matters."""
    kind = str(item["type"])
    if kind == "plan_made" or kind == "replanned":
        steps = ", ".join(f"{s['id']} ({s['agent']})" for s in item.get("subtasks", []))
        return f"{kind.replace('_', ' ')}: {steps}"
    who = " ".join(str(item[k]) for k in ("agent", "subtask_id") if k in item)
    detail = next((str(item[k]) for k in ("error", "tool", "why", "goal", "reason", "run_id")
                   if item.get(k)), "")
    head = kind.replace("_", " ") + (f" [{who}]" if who else "")
    return f"{head}: {detail}" if detail else head


# --- mounting ------------------------------------------------------------------------------


def mount_a2a(app: FastAPI) -> None:
    """Serve ``app.state.orchestrator`` over A2A: the card (public) and ``POST /a2a`` (a key
    with the chat scope). Runs go in ``app.state.runs_in_flight``; the handler's tasks are
    closed when the app stops, after its runs."""
    orch: Orchestrator = app.state.orchestrator
    try:
        release = version("agent-orchestrator")
    except PackageNotFoundError:
        release = "0"
    card = orchestrator_card(entries_of(orch.agents), orch.playbooks, url=A2A_PATH,
                             version=release)
    handler = DefaultRequestHandler(
        OrchestratorExecutor(orch, app.state.runs_in_flight),
        InMemoryTaskStore(owner_resolver=tenant_of), card)
    dispatcher = JsonRpcDispatcher(handler, context_builder=_KeyContextBuilder(),
                                   enable_v0_3_compat=True)
    router = APIRouter(tags=["A2A"])

    @router.get(AGENT_CARD_WELL_KNOWN_PATH, response_class=JSONResponse)
    async def agent_card(request: Request) -> JSONResponse:
        """The A2A agent card: the orchestrator, its endpoint, skills and the keys it takes
        (needs no key)."""
        return JSONResponse(agent_card_to_dict(_served_at(card, request)))

    @router.post(A2A_PATH, response_class=Response, responses={200: {
        "content": {"application/json": {}, "text/event-stream": {}},
        "description": "A JSON-RPC 2.0 response, or an SSE stream for SendStreamingMessage "
        "and message/stream."}})
    async def a2a_rpc(request: Request,
                      caller: Annotated[KeyInfo, Depends(require("chat"))]) -> Response:
        """A2A JSON-RPC 2.0: ``SendMessage``, ``SendStreamingMessage``, ``GetTask``,
        ``ListTasks``, ``CancelTask``, ``SubscribeToTask`` (with ``A2A-Version: 1.0``), and
        their 0.3 names (``message/send``, ``message/stream``, ``tasks/get``, ...)."""
        request.state.a2a_caller = caller
        return await dispatcher.handle_requests(request)

    app.include_router(declare_scopes(router))
    _close_on_shutdown(app, handler)


def _served_at(card: AgentCard, request: Request) -> AgentCard:
    """The card with its endpoint's URL made absolute for the host the client called."""
    served = AgentCard()
    served.CopyFrom(card)
    base = str(request.base_url).rstrip("/")
    for interface in served.supported_interfaces:
        interface.url = base + A2A_PATH
    return served


def _close_on_shutdown(app: FastAPI, handler: DefaultRequestHandler) -> None:
    """Close the handler's active tasks once the app's own shutdown (which lets the runs in
    flight finish) is done."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(scope_app: ASGIApp) -> AsyncIterator[Any]:
        async with inner(scope_app) as state:
            yield state
        await handler.aclose()

    app.router.lifespan_context = lifespan
