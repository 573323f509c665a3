"""A run's trace over HTTP (``GET /api/runs/{run_id}/trace``): the data ``orchestrator trace``
shows, as JSON.

A run belongs to the tenant of its thread (stored as ``<tenant>:<thread>``); another tenant's
key gets the same 404 as for a run that does not exist, so ids of other tenants' runs are
never confirmed. The run id must be given whole (no prefixes: a prefix shared by two
tenants' runs would tell one about the other).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from orchestrator.api import Orchestrator
from orchestrator.errors import RequestError
from orchestrator.server.auth import require
from orchestrator.server.errors import ApiError
from orchestrator.server.keys import KeyInfo
from orchestrator.server.native import NativeRoute
from orchestrator.traces import SubtaskSpan, Trace

router = APIRouter(prefix="/api", tags=["traces"], route_class=NativeRoute)


class RunRecordOut(BaseModel):
    run_id: str
    thread_id: str = Field(description="The thread as the client names it (no tenant).")
    request: str
    status: str
    mode: str
    started_at: float = Field(description="Unix time.")
    elapsed_s: float = Field(description="The run's own time (its last stretch, once it was "
                             "resumed).")
    wall_s: float = Field(description="From its first event to its last, waits included.")
    approval_wait_s: float = Field(description="Of that, time its subtasks waited for a "
                                   "person's decision.")
    llm_calls: int
    input_tokens: int
    output_tokens: int
    tokens: int
    answer: str
    error: str | None


class SpanOut(BaseModel):
    """One subtask on the timeline; times are Unix seconds, ``*_offset_s`` from the run's
    first event."""

    id: str
    agent: str
    goal: str
    depends_on: list[str]
    status: str
    ready_at: float | None = Field(description="When its dependencies were done.")
    started_at: float | None
    finished_at: float | None
    start_offset_s: float | None
    end_offset_s: float | None
    waited_s: float = Field(description="From ready to started.")
    elapsed_s: float = Field(description="From started to finished.")
    approval_waits: list[tuple[float, float | None]] = Field(
        description="When it waited for a decision, as offsets (asked, decided; null while "
        "it waits).")
    approval_wait_s: float = Field(description="Of its elapsed time, waiting for decisions.")
    parallel_with: list[str] = Field(description="Subtasks that ran at the same time.")
    attempts: int
    agents_tried: list[str]
    llm_calls: int
    tokens: int
    error: str | None


class AgentTimelineOut(BaseModel):
    """One agent's lane: its subtasks in the order they started, and their totals."""

    agent: str
    subtasks: list[str]
    busy_s: float = Field(description="Its subtasks' time, waits for decisions left out.")
    waited_s: float
    llm_calls: int
    tokens: int


class EventOut(BaseModel):
    type: str
    time: float
    subtask_id: str | None
    agent: str | None
    data: dict[str, Any]
    usage: dict[str, int] | None


class TraceOut(BaseModel):
    run: RunRecordOut
    subtasks: list[SpanOut]
    agents: list[AgentTimelineOut]
    events: list[EventOut]


def _tenant_record(orch: Orchestrator, run_id: str, tenant: str) -> Trace:
    """The trace of ``run_id`` when it is the tenant's; ApiError 404 otherwise."""
    missing = ApiError(404, f"no run {run_id[:64]!r} in this tenant", code="run_not_found",
                       param="run_id")
    try:
        record = orch.records.run(run_id)
    except RequestError:
        raise missing from None
    if record["run_id"] != run_id or not str(record["thread_id"]).startswith(f"{tenant}:"):
        raise missing
    return orch.records.trace(run_id)


def _overlaps(span: SubtaskSpan, other: SubtaskSpan, end: float) -> bool:
    if span.started_at is None or other.started_at is None or span is other:
        return False
    return (span.started_at < (other.finished_at or end)
            and other.started_at < (span.finished_at or end))


def trace_out(trace: Trace, tenant: str) -> TraceOut:
    """The JSON of a trace: the run, a span per subtask, a lane per agent, every event."""
    record, events = trace.run, trace.events
    start = events[0].time if events else record["started_at"]
    end = max([e.time for e in events] or [start])

    def offset(moment: float | None) -> float | None:
        return None if moment is None else round(moment - start, 4)

    spans = [SpanOut(
        id=s.id, agent=s.agent, goal=s.goal, depends_on=s.depends_on, status=s.status,
        ready_at=s.ready_at, started_at=s.started_at, finished_at=s.finished_at,
        start_offset_s=offset(s.started_at), end_offset_s=offset(s.finished_at),
        waited_s=round(s.waited_s, 4), elapsed_s=round(s.elapsed_s, 4),
        approval_waits=[(round(asked - start, 4),
                         None if decided is None else round(decided - start, 4))
                        for asked, decided in s.approval_waits],
        approval_wait_s=round(s.approval_wait_s(end), 4),
        parallel_with=[o.id for o in trace.subtasks if _overlaps(s, o, end)],
        attempts=s.attempts, agents_tried=s.agents_tried, llm_calls=s.llm_calls,
        tokens=s.tokens, error=s.error) for s in trace.subtasks]
    lanes: dict[str, list[SpanOut]] = {}
    for span in sorted(spans, key=lambda s: (s.started_at is None, s.started_at or 0.0)):
        lanes.setdefault(span.agent, []).append(span)
    agents = [AgentTimelineOut(
        agent=name, subtasks=[s.id for s in lane],
        busy_s=round(sum(max(s.elapsed_s - s.approval_wait_s, 0.0) for s in lane), 4),
        waited_s=round(sum(s.waited_s for s in lane), 4),
        llm_calls=sum(s.llm_calls for s in lane), tokens=sum(s.tokens for s in lane))
        for name, lane in sorted(lanes.items())]
    inputs, outputs = record["input_tokens"] or 0, record["output_tokens"] or 0
    run = RunRecordOut(
        run_id=record["run_id"], thread_id=str(record["thread_id"]).removeprefix(f"{tenant}:"),
        request=record["request"], status=record["status"], mode=record.get("mode") or "",
        started_at=record["started_at"], elapsed_s=record["elapsed_s"] or 0.0,
        wall_s=round(end - start, 4),
        approval_wait_s=round(sum(s.approval_wait_s for s in spans), 4),
        llm_calls=record["llm_calls"] or 0, input_tokens=inputs, output_tokens=outputs,
        tokens=inputs + outputs, answer=record.get("answer") or "", error=record.get("error"))
    return TraceOut(run=run, subtasks=spans, agents=agents, events=[EventOut(
        type=e.type, time=e.time, subtask_id=e.subtask_id, agent=e.agent, data=dict(e.data),
        usage=e.usage) for e in events])


@router.get("/runs/{run_id}/trace", responses={404: {"description": "No such run in the "
                                                                    "caller's tenant."}})
async def run_trace(run_id: str, request: Request,
                    caller: Annotated[KeyInfo, Depends(require("chat"))]) -> TraceOut:
    """What ``orchestrator trace`` shows: the run, each subtask's span (when it could start,
    started, ended, what ran beside it), a lane per agent, tokens, calls and every event."""
    orch: Orchestrator = request.app.state.orchestrator
    if orch.runs is None:
        raise ApiError(404, "this server does not record runs (ORCHESTRATOR_RECORD_RUNS is "
                       "off)", code="run_not_found")
    trace = await asyncio.to_thread(_tenant_record, orch, run_id, caller.tenant)
    return trace_out(trace, caller.tenant)
