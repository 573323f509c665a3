"""The ``advance_run`` activity: start or continue one run of the orchestrator.

The workflow id is the run's request id, so an attempt after a worker died continues the
interrupted run from its checkpoint (finished subtasks are not redone, writes that happened
return their earlier results) instead of starting it again. The attempt heartbeats while
the run works, so Temporal notices a worker killed mid-run within the heartbeat timeout and
gives the run to another worker; the dead worker's lease on the run does not block that one
for long: on the same host its dead process is seen at once, elsewhere the lease runs out
(``ORCHESTRATOR_LEASE_S``), and until then the attempt fails as retryable and Temporal tries
again with backoff. The takeover is on record as a ``run_handed_over`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import asdict
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orchestrator.api import Orchestrator
from orchestrator.errors import RequestError
from orchestrator.events import Event, RunHandedOverData
from orchestrator.leases import ACTIVE_STATUSES, HOST
from orchestrator.results import RunResult
from orchestrator.runs import BaseRunStore
from orchestrator.temporal.types import ADVANCE_ACTIVITY, Decision, RunJob, RunOutcome, RunStep

log = logging.getLogger(__name__)
RUNS_ELSEWHERE = "RunsElsewhere"
"""The error type of an attempt that found the run held by another live worker."""


class RunActivities:
    """The activities of one worker process, over its orchestrator's shared stores."""

    def __init__(self, orch: Orchestrator) -> None:
        if orch.runs is None:
            raise RequestError("runs on Temporal need the run store (ORCHESTRATOR_RECORD_RUNS "
                               "is off)")
        self.orch = orch
        orch.driver = "temporal"  # its runs' records say their workflow drives them
        self.store: BaseRunStore = orch.runs
        self.worker = f"{os.getpid()}@{HOST}"

    @activity.defn(name=ADVANCE_ACTIVITY)
    async def advance_run(self, step: RunStep) -> RunOutcome:
        """Start the run, continue it after an interruption, or apply a decision to it;
        its outcome once it ends or pauses."""
        info = activity.info()
        beat = asyncio.ensure_future(_heartbeat(step.job.heartbeat_s / 3))
        try:
            result = await self._advance(step, info.workflow_id or info.activity_id,
                                         info.attempt)
        except RequestError as exc:
            await self._refuse_if_held(info.workflow_id or "", str(exc))
            return RunOutcome(status="refused", error=str(exc))
        finally:
            beat.cancel()
        if result.status == "interrupted":  # this worker lost the run (its lease)
            raise ApplicationError(result.error or "the run was interrupted", type="Interrupted")
        return outcome_of(result)

    async def _advance(self, step: RunStep, request_id: str, attempt: int) -> RunResult:
        record = await asyncio.to_thread(self.store.find_request, request_id)
        status = record["status"] if record is not None else None
        if record is not None and status in ACTIVE_STATUSES:
            raise _elsewhere(record)
        if record is not None and status == "interrupted":
            await asyncio.to_thread(self._hand_over, record, attempt)
            result = await self.orch.aresume_run(record["run_id"], on_event=_beat)
        else:  # new; or paused or finished: the request id gives the stored result
            result = await self._start(step.job, request_id)
        if result.status == "paused" and step.decision is not None:
            return await self._decide(result, step.decision)
        return result

    async def _start(self, job: RunJob, request_id: str) -> RunResult:
        if job.event is not None:
            return await self.orch.afire_event(job.event, job.data, thread_id=job.thread_id,
                                               request_id=request_id, on_event=_beat)
        return await self.orch.arun(job.request, thread_id=job.thread_id,
                                    request_id=request_id, on_event=_beat,
                                    history=[(role, text) for role, text in job.history])

    async def _decide(self, paused: RunResult, decision: Decision) -> RunResult:
        """Apply ``decision`` when it covers exactly what the run waits for; otherwise (the
        run paused again after it was applied) the run as it is, waiting for a new one."""
        if {p.key for p in paused.pending_approvals} != set(decision.verdicts):
            return paused
        verdicts = {key: asdict(verdict) for key, verdict in decision.verdicts.items()}
        return await self.orch.aresume(paused.thread_id, verdicts, approver=decision.approver,
                                       on_event=_beat)

    def _hand_over(self, record: dict[str, Any], attempt: int) -> None:
        """Put the takeover of an interrupted run on its record."""
        before = f"{record['pid']}@{record['host']}" if record.get("pid") else "unknown"
        data: RunHandedOverData = {"from_worker": before, "to_worker": self.worker,
                                   "attempt": attempt}
        self.store.append_events(record["run_id"], [Event(type="run_handed_over",
                                                          run_id=record["run_id"], data=data)])
        log.info("run %s handed over from %s to %s (attempt %d)", record["run_id"][:12],
                 before, self.worker, attempt)

    async def _refuse_if_held(self, request_id: str, message: str) -> None:
        """A refusal because another worker took the run meanwhile is retried, not final."""
        with contextlib.suppress(RequestError):
            record = await asyncio.to_thread(self.store.find_request, request_id)
            if record is not None and record["status"] in ACTIVE_STATUSES:
                raise _elsewhere(record) from None
        log.info("request %s refused: %s", request_id, message)


def _elsewhere(record: dict[str, Any]) -> ApplicationError:
    where = "" if record["host"] == HOST else f" on {record['host']}"
    return ApplicationError(
        f"run {record['run_id'][:12]} is held by pid {record['pid']}{where} until its lease "
        "runs out or it ends; trying again", type=RUNS_ELSEWHERE)


def _beat(_event: Event) -> None:
    activity.heartbeat()


async def _heartbeat(every_s: float) -> None:
    """Heartbeat while the run works, events or not (a tool may take long)."""
    while True:
        activity.heartbeat()
        await asyncio.sleep(every_s)


def outcome_of(result: RunResult) -> RunOutcome:
    """A run's result as the workflow keeps it (its events stay in the run store)."""
    return RunOutcome(status=result.status, run_id=result.run_id, thread_id=result.thread_id,
                      request=result.request, error=result.error,
                      pending=[p.to_dict() for p in result.pending_approvals],
                      result=result.to_dict())
