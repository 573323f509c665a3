"""Threads over HTTP: the tenant's conversations, a conversation's turns (each answer with
the run that wrote it), and the approvals its paused run waits for.

Approving needs the ``approve`` scope; the approver stored with the decision is the API
key's name. A decision is strict: ``{"approve": true|false, "reason": ..., "keys": [...]}``
and nothing else, a JSON boolean (``"false"`` is refused with 422, never read as a yes).
``keys`` binds the decision to the calls the decider saw: a screen shown before the run
moved on to other calls cannot approve those.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from orchestrator.approvals import ApprovalRequest
from orchestrator.records import RunRecords
from orchestrator.runs import RunSummary
from orchestrator.server.auth import require
from orchestrator.server.dispatch import dispatcher_of
from orchestrator.server.errors import ApiError
from orchestrator.server.keys import KeyInfo
from orchestrator.server.native import (
    NativeRoute,
    client_thread_id,
    orchestrator_of,
    own_existing_thread,
    records_of,
    tenant_runs,
)
from orchestrator.server.native_schema import (
    ApprovalDecisionBody,
    ApprovalList,
    ApprovalOut,
    RunOut,
    ThreadHistory,
    ThreadList,
    ThreadOut,
    Turn,
)
from orchestrator.server.run_hub import run_hub
from orchestrator.server.runs import Caller, run_outcome
from orchestrator.server.threads import in_client_terms

router = APIRouter(prefix="/api", tags=["threads and approvals"], route_class=NativeRoute)
Chat = Caller  # a key with the chat scope
_PAUSED_SCAN = 200
"""How many of the tenant's paused runs ``GET /api/approvals`` without a thread reads."""


@router.get("/threads", response_model=ThreadList)
async def list_threads(
    request: Request, caller: Chat,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 50,
) -> ThreadList:
    """The tenant's conversations, newest first: each with its first request as a title, its
    last activity, how many runs it has had and how its latest run stands."""
    found = await asyncio.to_thread(records_of(request).threads, f"{caller.tenant}:", limit)
    return ThreadList(threads=[ThreadOut.of(t, client) for t in found
                               if (client := client_thread_id(caller, t.thread_id))])


@router.get("/threads/{thread_id:path}/history", response_model=ThreadHistory,
            response_model_exclude_none=True)
async def thread_history(thread_id: str, request: Request, caller: Chat) -> ThreadHistory:
    """The thread's turns so far, oldest first; each answer names its run and the run's
    status where the run store has it."""
    thread = await own_existing_thread(request, caller, thread_id)
    turns = await orchestrator_of(request).history(thread.stored)
    records = records_of(request)
    runs = await asyncio.to_thread(records.thread_runs, thread.stored)
    return ThreadHistory(thread_id=thread.id, turns=turns_with_runs(turns, runs, records))


def turns_with_runs(turns: list[tuple[str, str]], runs: list[RunSummary],
                    records: RunRecords) -> list[Turn]:
    """The turns, each request with the run it started and each answer with the run that
    wrote it (a request whose run ended without an answer, interrupted or failed, shows
    that run and its status all the same). Every run adds its request as a user turn and,
    once it ends, its answer after it; so the runs are matched to the user turns whose text
    is their stored request, newest first: turns a client sent as its earlier conversation
    (which start a thread) come before every run's, and keep no run even when one has the
    same text. A run the thread has no turn of, such as one killed before its first step,
    is passed over."""
    owner: list[RunSummary | None] = [None] * len(turns)
    left = len(runs)  # the runs from here on are matched or passed over
    for at in range(len(turns) - 1, -1, -1):
        role, text = turns[at]
        if role != "user":
            continue
        stored = records.store.capped(text)
        found = next((i for i in range(left - 1, -1, -1) if runs[i].request == stored), None)
        if found is not None:
            owner[at], left = runs[found], found
    out: list[Turn] = []
    current: RunSummary | None = None
    for (role, text), run in zip(turns, owner, strict=True):
        if role == "user":
            current = run
        shown = run if role == "user" else current if role == "assistant" else None
        out.append(Turn(role=role, text=text) if shown is None else Turn(
            role=role, text=text, run_id=shown.run_id,
            status=shown.status))  # type: ignore[arg-type]
    return out


@router.get("/approvals", response_model=ApprovalList)
async def list_approvals(
    request: Request, caller: Chat,
    thread_id: Annotated[str | None, Query(description="Only this thread's.")] = None,
) -> ApprovalList:
    """What the tenant's paused runs wait for: each exact call (tool, arguments, preview,
    reason), by thread."""
    orch = orchestrator_of(request)
    if thread_id is not None:
        thread = await own_existing_thread(request, caller, thread_id)
        pending = await orch.apending_approvals(thread.stored)
        return ApprovalList(approvals=[ApprovalOut.of(p, thread.id) for p in pending])
    paused = await asyncio.to_thread(tenant_runs, records_of(request), caller,
                                     limit=_PAUSED_SCAN, statuses=frozenset({"paused"}))
    found: list[ApprovalOut] = []
    for stored in dict.fromkeys(run.thread_id for run in paused):  # newest first, once
        client = client_thread_id(caller, stored) or ""
        waiting: list[ApprovalRequest] = await orch.apending_approvals(stored)
        found.extend(ApprovalOut.of(p, client) for p in waiting)
    return ApprovalList(approvals=found)


@router.post("/threads/{thread_id:path}/approvals", response_model=RunOut)
async def decide_approvals(
    thread_id: str, body: ApprovalDecisionBody, request: Request,
    caller: Annotated[KeyInfo, Depends(require("approve"))],
) -> RunOut:
    """Approve or deny every call the thread's paused run waits for, as the key's name; the
    run goes on, and its result is returned."""
    thread = await own_existing_thread(request, caller, thread_id)
    orch = orchestrator_of(request)
    decision: bool | dict[str, Any] = body.approve
    if body.keys is not None:
        waiting = sorted({p.key for p in await orch.apending_approvals(thread.stored)})
        if sorted(set(body.keys)) != waiting:
            raise ApiError(409, "the calls waiting for approval are not the ones named in "
                           "'keys' (they changed since they were shown): get them again with "
                           "GET /api/approvals and decide on what waits now",
                           code="approval_changed", param="keys")
        # Keyed, so the engine too refuses it if the run moves on before the resume.
        decision = {key: {"approved": body.approve, "reason": body.reason or ""}
                    for key in waiting}
    runner = dispatcher_of(request)
    with in_client_terms(thread):
        run_id, task = await run_hub(request).start(lambda on_event: runner.aresume(
            thread.stored, decision, reason=body.reason or "", approver=caller.name,
            on_event=on_event))
    return await run_outcome(request, caller, run_id, task, thread.id)
