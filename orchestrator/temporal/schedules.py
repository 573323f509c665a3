"""Schedules: an event fired every N minutes, as Temporal Schedules of the run workflow.

Temporal keeps the schedule and starts each run (the workflow id is the schedule's, with
the time appended, and is the run's request id); a run still going when the next is due
makes that one skip, not pile up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.errors import RequestError
from orchestrator.temporal.types import WORKFLOW_NAME, RunJob
from orchestrator.temporal.workflow import RunWorkflow

_EVERY = re.compile(r"(\d+)([smhd])")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def parse_every(text: str) -> timedelta:
    """``10m``, ``30s``, ``2h``, ``1d``; RequestError otherwise."""
    found = _EVERY.fullmatch(text.strip())
    if not found or int(found[1]) == 0:
        raise RequestError(f"--every {text!r} is not an interval: a number and s, m, h or d "
                           "(e.g. 10m)")
    return timedelta(**{_UNIT[found[2]]: int(found[1])})


@dataclass
class ScheduleInfo:
    """A schedule as ``schedule list`` shows it."""

    name: str
    event: str | None
    every_s: float | None
    next_runs: list[str]
    paused: bool


async def add_schedule(client: Client, name: str, job: RunJob, every: timedelta,
                       task_queue: str) -> None:
    """Create schedule ``name`` firing ``job`` every ``every``; RequestError if it exists."""
    if not _NAME.fullmatch(name):
        raise RequestError(f"schedule name {name!r} must be 1-100 letters, digits or . _ -")
    action = ScheduleActionStartWorkflow(RunWorkflow.run, job, id=f"schedule-{name}",
                                         task_queue=task_queue)
    schedule = Schedule(action=action,
                        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
                        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP))
    try:
        await client.create_schedule(name, schedule)
    except ScheduleAlreadyRunningError:
        raise RequestError(f"schedule {name!r} exists: delete it first "
                           f"(orchestrator schedule delete {name})") from None


async def list_schedules(client: Client) -> list[ScheduleInfo]:
    """Every schedule of the namespace that fires the run workflow."""
    found = []
    async for item in await client.list_schedules():
        described = await client.get_schedule_handle(item.id).describe()
        action = described.schedule.action
        if not isinstance(action, ScheduleActionStartWorkflow) or (
                action.workflow != WORKFLOW_NAME):
            continue
        job = _job_of(action.args)
        intervals = described.schedule.spec.intervals
        found.append(ScheduleInfo(
            name=item.id, event=job.get("event"),
            every_s=intervals[0].every.total_seconds() if intervals else None,
            next_runs=[t.isoformat() for t in described.info.next_action_times[:1]],
            paused=described.schedule.state.paused))
    return sorted(found, key=lambda s: s.name)


def _job_of(args: Any) -> dict[str, Any]:
    """The job a described schedule starts (its payload decoded as plain JSON)."""
    from temporalio.converter import default

    if not args:
        return {}
    first = args[0]
    if isinstance(first, dict):
        return first
    decoded = default().payload_converter.from_payloads([first])[0]
    return decoded if isinstance(decoded, dict) else {}


async def delete_schedule(client: Client, name: str) -> None:
    """Delete schedule ``name`` (its runs so far stay); RequestError if there is none."""
    await _call(client, name, "delete")


async def trigger_schedule(client: Client, name: str) -> None:
    """Fire schedule ``name``'s event now, once."""
    await _call(client, name, "trigger")


async def _call(client: Client, name: str, what: str) -> None:
    handle = client.get_schedule_handle(name)
    try:
        await getattr(handle, what)()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RequestError(f"no schedule named {name!r} (orchestrator schedule list)"
                               ) from None
        raise RequestError(f"Temporal refused to {what} schedule {name!r}: {exc.message}"
                           ) from None
