"""The native catalog routes: the agents with their statistics, the playbooks, and firing an
event (``GET /api/agents``, ``GET /api/playbooks``, ``POST /api/events``).

Agents and playbooks are the server's, shared by every tenant; an event's run goes in a
thread of the caller's tenant (``<tenant>:<thread>``, see :mod:`orchestrator.server.threads`),
so its trace is the tenant's alone.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.agents.catalog import entries_of
from orchestrator.api import Orchestrator
from orchestrator.errors import RequestError
from orchestrator.playbooks import check_event_name, find_for_event
from orchestrator.results import RunResult
from orchestrator.runs import AgentStats
from orchestrator.server.auth import require
from orchestrator.server.errors import ApiError
from orchestrator.server.keys import KeyInfo
from orchestrator.server.native import NativeRoute
from orchestrator.server.threads import chat_thread

router = APIRouter(prefix="/api", tags=["agents and playbooks"], route_class=NativeRoute)
_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,59}")  # others: a 400 from check_event


def orchestrator_of(request: Request) -> Orchestrator:
    orch: Orchestrator = request.app.state.orchestrator
    return orch


# --- agents -------------------------------------------------------------------------------


class ToolOut(BaseModel):
    name: str
    reads: bool = Field(description="Read-only; false: it writes (changes something).")
    requires_approval: bool = Field(description="A person approves each call first.")
    audited: bool


class AgentStatsOut(BaseModel):
    """How the agent has done across the runs the server has on record (all tenants)."""

    runs: int = 0
    attempts: int = 0
    successes: int = 0
    success_rate: float = 0.0
    mean_latency_s: float = 0.0
    p95_latency_s: float = 0.0
    tokens: int = 0
    failures: dict[str, int] = Field(default_factory=dict)


class AgentOut(BaseModel):
    name: str
    description: str
    domain: str
    skills: list[str]
    tools: list[ToolOut]
    collections: list[str]
    stats: AgentStatsOut


def _stats_out(stats: AgentStats | None) -> AgentStatsOut:
    if stats is None:
        return AgentStatsOut()
    return AgentStatsOut(**{k: v for k, v in stats.to_dict().items() if k != "agent"},
                         successes=stats.successes)


@router.get("/agents")
async def list_agents(request: Request, _: Annotated[KeyInfo, Depends(require("chat"))]
                      ) -> list[AgentOut]:
    """The agents the supervisor routes to: what each does, its tools (read or write, approval)
    and its statistics."""
    orch = orchestrator_of(request)
    stats: dict[str, AgentStats] = {}
    if orch.runs is not None:
        found = await asyncio.to_thread(orch.records.agent_stats)
        stats = {s.agent: s for s in found}
    return [AgentOut(name=e.name, description=e.description, domain=e.domain,
                     skills=e.skills, collections=e.collections,
                     tools=[ToolOut(name=t.name, reads=t.reads, requires_approval=t.approval,
                                    audited=t.audited) for t in e.tools],
                     stats=_stats_out(stats.get(e.name)))
            for e in entries_of(orch.agents)]


# --- playbooks ----------------------------------------------------------------------------


class PlaybookStepOut(BaseModel):
    id: str
    agent: str
    goal: str
    depends_on: list[str]
    requires_approval: bool


class PlaybookOut(BaseModel):
    name: str
    description: str
    pack: str | None = Field(description="The domain pack that ships it; null: the server's "
                             "own playbooks folder.")
    event: str | None = Field(description="The event that fires it (POST /api/events).")
    pattern: str | None = Field(description="A request pattern that triggers it.")
    inputs: list[str]
    defaults: dict[str, Any]
    agents: list[str]
    steps: list[PlaybookStepOut]


@router.get("/playbooks")
async def list_playbooks(request: Request, _: Annotated[KeyInfo, Depends(require("chat"))]
                         ) -> list[PlaybookOut]:
    """The playbooks that are on: what triggers them and the steps they run."""
    return [PlaybookOut(
        name=p.name, description=p.description, pack=p.pack, event=p.trigger.event,
        pattern=p.trigger.pattern, inputs=p.inputs, defaults=p.defaults, agents=p.agents,
        steps=[PlaybookStepOut(id=s.id, agent=s.agent, goal=s.goal, depends_on=s.depends_on,
                               requires_approval=s.requires_approval) for s in p.steps])
        for p in orchestrator_of(request).playbooks]


# --- events -------------------------------------------------------------------------------


class EventIn(BaseModel):
    """An event to fire: its name (a playbook's ``event``) and its data."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(description="snake_case, e.g. service_down", max_length=60)
    data: dict[str, Any] = Field(default_factory=dict,
                                 description="The event's fields, e.g. {\"service\": \"web-3\"}.")


class UsageOut(BaseModel):
    llm_calls: int
    input_tokens: int
    output_tokens: int


class SubtaskOut(BaseModel):
    id: str
    agent: str
    goal: str
    status: str
    output: str
    error: str | None
    attempts: int


class RunOut(BaseModel):
    """A run's result (its trace: ``GET /api/runs/{run_id}/trace``)."""

    run_id: str
    thread_id: str = Field(description="The thread as the client names it (X-Thread-Id).")
    status: str
    mode: str
    answer: str
    error: str | None
    elapsed_s: float
    usage: UsageOut
    subtasks: list[SubtaskOut]
    pending_approvals: list[dict[str, Any]] = Field(
        description="When paused: the exact calls that wait for a decision.")


def run_out(result: RunResult, thread_id: str) -> RunOut:
    """The HTTP view of a run's result, its thread as the client names it."""
    return RunOut(
        run_id=result.run_id, thread_id=thread_id, status=result.status, mode=result.mode,
        answer=result.answer, error=result.error, elapsed_s=round(result.elapsed_s, 4),
        usage=UsageOut(**result.usage.to_dict()),
        subtasks=[SubtaskOut(id=r.id, agent=r.agent, goal=r.goal, status=r.status,
                             output=r.output, error=r.error, attempts=r.attempts)
                  for r in result.results.values()],
        pending_approvals=[p.to_dict() for p in result.pending_approvals])


@router.post("/events", responses={404: {"description": "No playbook handles the event."}})
async def fire_event(
    body: EventIn, request: Request, caller: Annotated[KeyInfo, Depends(require("chat"))],
    x_thread_id: Annotated[str | None, Header(
        description="The thread the event's run goes in (default: a new one).")] = None,
) -> RunOut:
    """Fire an event: the playbook that handles it runs (or the supervisor plans it, in
    adaptive mode), and the run's result comes back when it has finished or paused."""
    orch = orchestrator_of(request)
    if _EVENT_NAME.fullmatch(body.name) and find_for_event(orch.playbooks, body.name) is None:
        try:
            check_event_name(orch.playbooks, body.name)
        except RequestError as exc:
            raise ApiError(404, str(exc), code="unknown_event", param="name") from None
    thread = chat_thread(caller.tenant, x_thread_id, None)
    result = await orch.afire_event(body.name, body.data, thread_id=thread.stored)
    return run_out(result, thread.id)
