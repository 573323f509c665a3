"""Threads over HTTP: a conversation's turns, and the approvals its paused run waits for.

Approving needs the ``approve`` scope; the approver stored with the decision is the API
key's name. A decision is strict: ``{"approve": true|false, "reason": ...}`` and nothing
else, a JSON boolean (``"false"`` is refused with 422, never read as a yes).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from orchestrator.approvals import ApprovalRequest
from orchestrator.server.auth import require
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
    Turn,
)
from orchestrator.server.run_hub import run_hub
from orchestrator.server.runs import run_outcome

router = APIRouter(prefix="/api", tags=["threads and approvals"], route_class=NativeRoute)
Chat = Annotated[KeyInfo, Depends(require("chat"))]
_PAUSED_SCAN = 200
"""How many of the tenant's paused runs ``GET /api/approvals`` without a thread reads."""


@router.get("/threads/{thread_id:path}/history", response_model=ThreadHistory)
async def thread_history(thread_id: str, request: Request, caller: Chat) -> ThreadHistory:
    """The thread's turns so far, oldest first."""
    thread = await own_existing_thread(request, caller, thread_id)
    turns = await orchestrator_of(request).history(thread.stored)
    return ThreadHistory(thread_id=thread.id,
                         turns=[Turn(role=role, text=text) for role, text in turns])


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
    run_id, task = await run_hub(request).start(lambda on_event: orch.aresume(
        thread.stored, body.approve, reason=body.reason or "", approver=caller.name,
        on_event=on_event))
    return await run_outcome(request, caller, run_id, task, thread.id)
