"""The OpenAI-compatible routes: ``GET /v1/models`` and ``POST /v1/chat/completions``.

The last message of a chat request, the user's, is the orchestrator's request. The
conversation before it lives in the thread the client names (:mod:`orchestrator.server.threads`),
not in the body, so a client that resends the whole history gets the same answers as one that
sends only the new message; a client that names no thread keeps the conversation itself, and
the turns it sends start the new thread its request runs on.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse

from orchestrator.api import Orchestrator
from orchestrator.results import RunResult
from orchestrator.server.auth import require
from orchestrator.server.dispatch import dispatcher_of
from orchestrator.server.errors import ApiError
from orchestrator.server.idempotency import IDEMPOTENCY_HEADER, request_key, run_once
from orchestrator.server.keys import KeyInfo
from orchestrator.server.openai_schema import ChatCompletionRequest, completion, model_list
from orchestrator.server.progress import RUN_HEADER, paused_answer
from orchestrator.server.run_hub import kept
from orchestrator.server.streaming import RunFeed, sse_stream
from orchestrator.server.threads import THREAD_HEADER, ChatThread, chat_thread, in_client_terms

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
_STARTED = int(time.time())


def model_ids(orch: Orchestrator) -> list[str]:
    """The models a client may name. The coordination mode is fixed per ``Orchestrator``
    (the engine reads ``settings.coordination`` when the graph is built, and one graph serves
    every request), so the server lists the mode it runs with and ``orchestrator`` as its
    alias, and refuses the other modes rather than quietly run a mode not asked for."""
    return ["orchestrator", f"orchestrator-{orch.settings.coordination}"]


def _orchestrator(request: Request) -> Orchestrator:
    orch: Orchestrator = request.app.state.orchestrator
    return orch


@router.get("/models")
async def list_models(request: Request,
                      _: Annotated[KeyInfo, Depends(require(None))]) -> dict[str, Any]:
    """The orchestrator as OpenAI models: ``orchestrator`` and ``orchestrator-<mode>``."""
    return model_list(model_ids(_orchestrator(request)), _STARTED)


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, request: Request,
    caller: Annotated[KeyInfo, Depends(require("chat"))],
    x_thread_id: Annotated[str | None, Header(
        description="The conversation to continue (default: the `user` field, else a new "
        "one; the id used comes back in this header).")] = None,
    idempotency_key: Annotated[str | None, Header(
        alias=IDEMPOTENCY_HEADER, description="Sent again with the same request, gets the "
        "first run's result instead of running it again (1-150 letters, digits or . _ : / -)."
        )] = None,
) -> JSONResponse | StreamingResponse:
    """Run the last message (the user's) as a request; the answer as a ``chat.completion``,
    or streamed as ``chat.completion.chunk`` events with progress in SSE comment lines."""
    orch = _orchestrator(request)
    if body.model not in (known := model_ids(orch)):
        raise ApiError(404, f"model {body.model!r} is not served here; use one of "
                       f"{', '.join(known)}", code="model_not_found", param="model")
    if (refused := body.unsupported()) is not None:
        raise ApiError(400, refused[1], code="unsupported_parameter", param=refused[0])
    text = body.last_user_text()
    if text is None:
        raise ApiError(400, "the last message must be the user's (role \"user\"): the "
                       "orchestrator runs a user's request, it does not continue another "
                       f"role's message (the last is {body.messages[-1].role!r})",
                       param="messages")
    orch.check_request(text)
    key = request_key(caller.tenant, idempotency_key, IDEMPOTENCY_HEADER)
    thread = chat_thread(caller.tenant, x_thread_id, body.user, key)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    headers = {THREAD_HEADER: thread.id}
    answer_of = partial(_answer, thread=thread)
    runner = dispatcher_of(request)

    # A client that names no thread keeps the conversation itself: a new thread starts with
    # the turns it sent before its request.
    history = body.history() if x_thread_id is None and body.user is None else []

    def start(**listeners: Any) -> Any:
        return run_once(partial(runner.arun, text, thread_id=thread.stored, request_id=key,
                                history=history, **listeners))

    limit = body.answer_limit()
    if not body.stream:
        with in_client_terms(thread):
            result = await _in_flight(request, start())
        answer = limit.whole(answer_of(result))
        return JSONResponse(completion(completion_id, body.model, answer, result.usage,
                                       _about(result, thread), limit.finish_reason),
                            headers={**headers, RUN_HEADER: result.run_id})
    feed = RunFeed(start, request.app.state.runs_in_flight)
    with in_client_terms(thread):
        await feed.started()
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(
        sse_stream(feed, completion_id, body.model, answer_of=answer_of,
                   include_usage=include_usage, limit=limit),
        media_type="text/event-stream",
        headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _in_flight(request: Request, run: Awaitable[RunResult]) -> RunResult:
    """``run`` in a task of its own, kept with the server's runs in flight: a request
    cancelled (the server stopping) does not cancel it, so it gets the grace runs get."""
    task = kept(run, request.app.state.runs_in_flight)
    # Read even when nobody waits any more (the request was cancelled): no "never retrieved".
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    await asyncio.wait({task})
    return task.result()


def _answer(result: RunResult, thread: ChatThread) -> str:
    """The text a chat client gets: the answer, how to approve a paused run, or why the run
    ended without an answer."""
    if result.status == "paused":
        return paused_answer(result.pending_approvals, thread.id, thread.stored)
    if result.answer:
        return result.answer
    return f"The run ended without an answer ({result.status}): {result.error or 'no reason'}"


def _about(result: RunResult, thread: ChatThread) -> dict[str, Any]:
    """The ``orchestrator`` field of a completion: the run behind it."""
    return {"run_id": result.run_id, "thread_id": thread.id, "status": result.status,
            "mode": result.mode}
