"""Runs over HTTP: start one (waiting for its result, or in the background), read it, list
the tenant's runs, cancel one.

Every run goes on in a task of its own (:mod:`orchestrator.server.run_hub`): a client that
disconnects does not stop it, and ``POST /api/runs/{id}/cancel`` can. The service API has
no cancel of its own, so cancelling stops the run's task; the engine then records the run
as ``interrupted`` (as for Ctrl-C or SIGTERM): subtasks that finished keep their results,
a write cut off mid-call is reported ``unknown``.

An interrupted run (cancelled, or its server stopped or killed mid-run) goes on from its
last checkpoint with ``POST /api/runs/{id}/resume`` (or `orchestrator resume`): finished
subtasks are not redone and writes that happened return their earlier results.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from orchestrator.errors import DrivenElsewhereError, RequestError
from orchestrator.results import RunResult
from orchestrator.server.auth import require
from orchestrator.server.dispatch import dispatcher_of
from orchestrator.server.errors import ApiError
from orchestrator.server.idempotency import IDEMPOTENCY_HEADER, request_key, run_once
from orchestrator.server.keys import KeyInfo
from orchestrator.server.native import (
    LIVE_STATUSES,
    NativeRoute,
    client_thread_id,
    orchestrator_of,
    own_run,
    records_of,
    tenant_runs,
    tenant_thread,
)
from orchestrator.server.native_schema import (
    ResumeRequest,
    RunAccepted,
    RunList,
    RunOut,
    RunRequest,
    RunStatusName,
    RunSummaryOut,
)
from orchestrator.server.run_hub import run_hub
from orchestrator.server.threads import in_client_terms

router = APIRouter(prefix="/api/runs", tags=["runs"], route_class=NativeRoute)
Caller = Annotated[KeyInfo, Depends(require("chat"))]
CANCEL_WAIT_S = 30.0
"""How long a cancel waits for the run to stop and be recorded."""


@router.post("", response_model=RunOut, status_code=200, responses={
    202: {"model": RunAccepted, "description": "Started in the background."}})
async def start_run(body: RunRequest, request: Request, caller: Caller,
                    idempotency_key: Annotated[str | None, Header(
                        alias=IDEMPOTENCY_HEADER, description="As ``request_id``.")] = None,
                    ) -> Any:
    """Run a request: the run's result, or with ``background`` 202 and its id at once. A
    request sent again with its ``request_id`` (or ``Idempotency-Key``) gets the first run's
    result (200, once that run has ended), or that run continued if it was interrupted."""
    orch = orchestrator_of(request)
    text = orch.check_request(body.request)
    if body.request_id is not None and idempotency_key not in (None, body.request_id):
        raise ApiError(422, f"request_id and the {IDEMPOTENCY_HEADER} header differ: send "
                       "one of them", code="invalid_idempotency_key", param="request_id")
    key = request_key(caller.tenant, body.request_id or idempotency_key,
                      "request_id" if body.request_id else IDEMPOTENCY_HEADER)
    thread = tenant_thread(caller, body.thread_id, request_id=key)
    runner = dispatcher_of(request)
    with in_client_terms(thread):
        run_id, task = await run_hub(request).start(lambda on_event: run_once(
            lambda: runner.arun(text, thread_id=thread.stored, on_event=on_event,
                                request_id=key)))
    if body.background and run_id is not None:
        accepted = RunAccepted(run_id=run_id, thread_id=thread.id)
        return JSONResponse(accepted.model_dump(), status_code=202,
                            headers={"Location": f"/api/runs/{run_id}"})
    return await run_outcome(request, caller, run_id, task, thread.id)


async def run_outcome(request: Request, caller: KeyInfo, run_id: str | None,
                      task: asyncio.Task[RunResult], thread_id: str) -> RunOut:
    """The run's result once its task ends; the run as recorded when it was cancelled."""
    await asyncio.wait({task})  # not cancelled with this request: the run goes on
    if task.cancelled() and run_id is not None:  # by POST /api/runs/{id}/cancel
        return RunOut.of_record(await own_run(request, caller, run_id), thread_id, [])
    return RunOut.of_result(task.result(), thread_id)


@router.get("", response_model=RunList)
async def list_runs(
    request: Request, caller: Caller,
    thread_id: Annotated[str | None, Query(description="Only this thread's runs.")] = None,
    status: Annotated[RunStatusName | None, Query(description="Only runs with this status.")
                      ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> RunList:
    """The tenant's runs, newest first."""
    thread = tenant_thread(caller, thread_id).stored if thread_id is not None else None
    found = await asyncio.to_thread(
        tenant_runs, records_of(request), caller, limit=limit, thread=thread,
        statuses=frozenset({status}) if status is not None else None)
    return RunList(runs=[RunSummaryOut.of(run, client_thread_id(caller, run.thread_id) or "")
                         for run in found])


@router.get("/{run_id}", response_model=RunOut)
async def get_run(run_id: str, request: Request, caller: Caller) -> RunOut:
    """A run as the run store has it (and, when paused, what it waits for)."""
    record = await own_run(request, caller, run_id)
    return await _run_out(request, caller, record)


@router.post("/{run_id}/cancel", response_model=RunOut, responses={
    409: {"description": "The run is not running in this server, or has ended."}})
async def cancel_run(run_id: str, request: Request, caller: Caller) -> RunOut:
    """Stop a run this server is running; it is recorded as ``interrupted``."""
    record = await own_run(request, caller, run_id)
    task = run_hub(request).tasks.get(run_id)
    if request.app.state.dispatcher is not None:  # the task only follows the run
        workflow = record.get("request_id") or "(its request id)"
        raise ApiError(409, f"run {run_id} cannot be cancelled here: it runs on a worker "
                       f"(serve --runs temporal); cancel its workflow {workflow} through "
                       f"Temporal (temporal workflow cancel --workflow-id {workflow})",
                       code="not_cancellable")
    if task is None:
        status = record["status"]
        if status in LIVE_STATUSES:
            why = "it was not started through /api/runs of this server process"
        elif status == "paused":
            why = ("it waits for approval: deny it with POST "
                   "/api/threads/{thread_id}/approvals")
        else:
            why = f"it has ended ({status})"
        raise ApiError(409, f"run {run_id} cannot be cancelled here: {why}",
                       code="not_cancellable")
    task.cancel()
    await asyncio.wait({task}, timeout=CANCEL_WAIT_S)
    return await _run_out(request, caller, await own_run(request, caller, run_id))


@router.post("/{run_id}/resume", response_model=RunOut, responses={
    202: {"model": RunAccepted, "description": "Resumed in the background."},
    409: {"description": "The run is not interrupted, cannot be resumed now, or its "
          "Temporal workflow continues it (driven_elsewhere)."}})
async def resume_run(run_id: str, request: Request, caller: Caller,
                     body: Annotated[ResumeRequest | None, Body()] = None) -> Any:
    """Continue an interrupted run from its last checkpoint (finished subtasks are not
    redone; writes that happened are not repeated): its result, or with ``background`` 202
    at once. A run that was waiting for a decision when it stopped goes back to ``paused``."""
    record = await own_run(request, caller, run_id)
    if record["status"] != "interrupted":
        raise ApiError(409, f"run {run_id} cannot be resumed: {_why_not(record)}",
                       code="not_resumable")
    orch = orchestrator_of(request)
    thread = client_thread_id(caller, record["thread_id"]) or ""
    try:
        found, task = await run_hub(request).start(
            lambda on_event: orch.aresume_run(run_id, on_event=on_event))
    except DrivenElsewhereError as exc:  # its workflow continues it on a worker
        raise ApiError(409, str(exc), code="driven_elsewhere") from None
    except RequestError as exc:  # resumed by someone else meanwhile; the thread went on
        raise ApiError(409, str(exc), code="not_resumable") from None
    if body is not None and body.background and found is not None:
        accepted = RunAccepted(run_id=run_id, thread_id=thread, status="resuming")
        return JSONResponse(accepted.model_dump(), status_code=202,
                            headers={"Location": f"/api/runs/{run_id}"})
    return await run_outcome(request, caller, found or run_id, task, thread)


def _why_not(record: dict[str, Any]) -> str:
    status = record["status"]
    if status in LIVE_STATUSES:
        return "it is running"
    if status == "paused":
        return "it waits for approval: decide with POST /api/threads/{thread_id}/approvals"
    return f"it has ended ({status})"


async def _run_out(request: Request, caller: KeyInfo, record: dict[str, Any]) -> RunOut:
    thread = client_thread_id(caller, record["thread_id"]) or ""
    pending = []
    if record["status"] == "paused":
        # A paused run holds its thread, so what the thread waits for is this run's.
        pending = await orchestrator_of(request).apending_approvals(record["thread_id"])
    return RunOut.of_record(record, thread, pending)
