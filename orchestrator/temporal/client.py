"""Submit runs as workflows, follow them through the run store, send decisions.

A submitting process does not run anything: workers do (``orchestrator worker``), and they
write each run's events to the shared run store as they happen, so a follower polls the
store for the run's new events (the run is found by its request id, which is the workflow
id). A decision goes to the workflow as an update, from any process that can reach
Temporal and the run store: not necessarily the one that submitted the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.approvals import ApprovalRequest
from orchestrator.config import Settings
from orchestrator.errors import ConfigError, DrivenElsewhereError, RequestError
from orchestrator.events import Event
from orchestrator.plan import Plan
from orchestrator.results import RunResult, SubtaskResult, Usage
from orchestrator.runs import BaseRunStore
from orchestrator.temporal.types import (
    DECIDE_UPDATE,
    Decision,
    RunJob,
    RunOutcome,
    RunView,
    Verdict,
)
from orchestrator.temporal.workflow import RunWorkflow

POLL_S = 0.2
"""How often a follower reads the run store for new events."""
QUERY_TIMEOUT_S = 10.0


async def connect(settings: Settings) -> Client:
    """A client of the settings' Temporal; ConfigError (one line) when it is unreachable."""
    address = settings.temporal_address
    try:
        return await Client.connect(address, namespace=settings.temporal_namespace)
    except RuntimeError as exc:
        raise ConfigError(f"cannot reach Temporal at {address} ({_short(str(exc))}): start it "
                          "(`temporal server start-dev`) or set ORCHESTRATOR_TEMPORAL_ADDRESS"
                          ) from None


def _short(text: str) -> str:
    if "Connection refused" in text:
        return "connection refused"
    return " ".join(text.split())[-120:] or "no answer"


def run_job(settings: Settings, *, request: str = "", event: str | None = None,
            data: dict[str, Any] | None = None, thread_id: str | None = None,
            history: Sequence[tuple[str, str]] = ()) -> RunJob:
    """A job with the settings' heartbeat, and the run timeout (plus a minute) as the
    longest an activity may take."""
    return RunJob(request=request, event=event, data=dict(data or {}), thread_id=thread_id,
                  history=[[role, text] for role, text in history],
                  heartbeat_s=settings.temporal_heartbeat_s,
                  timeout_s=(settings.max_wall_s or 86400.0) + 60.0)


@dataclass
class Followed:
    """A run followed until it ended or paused."""

    outcome: RunOutcome
    events: list[Event]
    workflow_id: str


class TemporalRuns:
    """Runs on Temporal as one client sees them: submit, follow, decide."""

    def __init__(self, client: Client, settings: Settings, store: BaseRunStore) -> None:
        self.client = client
        self.settings = settings
        self.store = store

    async def submit(self, job: RunJob, request_id: str | None = None
                     ) -> WorkflowHandle[Any, RunOutcome]:
        """Start the job's workflow; the id is the request id (sent again, the same id
        joins the workflow while it runs, and gives the stored result once it ended)."""
        return await self.client.start_workflow(
            RunWorkflow.run, job, id=request_id or f"run-{uuid.uuid4().hex}",
            task_queue=self.settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)

    async def follow(self, handle: WorkflowHandle[Any, RunOutcome],
                     on_event: Callable[[Event], None] | None = None, *,
                     only_new: bool = False) -> Followed:
        """Pass the run's events on as workers store them, until the workflow ends or the
        run pauses (then the outcome says what it waits for); ``only_new``: not those
        stored before (a run followed again after a decision)."""
        result = asyncio.ensure_future(handle.result())
        run_id: str | None = None
        seen: list[Event] = []
        skip = 0
        if only_new:
            record = await asyncio.to_thread(self.store.find_request, handle.id)
            if record is not None:
                run_id = record["run_id"]
                skip = len(await asyncio.to_thread(self.store.events, run_id))
        try:
            while True:
                ended = result.done()  # read before the store: no event is missed at the end
                if run_id is None:
                    record = await asyncio.to_thread(self.store.find_request, handle.id)
                    run_id = record["run_id"] if record else None
                if run_id is not None:
                    events = await asyncio.to_thread(self.store.events, run_id,
                                                     skip + len(seen))  # the new ones
                    for event in events:
                        seen.append(event)
                        if on_event is not None:
                            on_event(event)
                if ended:
                    return Followed(_finished(result), seen, handle.id)
                if run_id is not None and len(seen) and await self._paused(run_id):
                    view = await self.view(handle)
                    if view.status == "paused" and view.outcome is not None:
                        return Followed(view.outcome, seen, handle.id)
                await asyncio.wait({result}, timeout=POLL_S)
        finally:
            if not result.done():
                result.cancel()
                with contextlib.suppress(BaseException):
                    await result

    async def _paused(self, run_id: str) -> bool:
        record = await asyncio.to_thread(self.store.run, run_id)
        return bool(record["status"] == "paused")

    async def view(self, handle: WorkflowHandle[Any, Any], local: str | None = None
                   ) -> RunView:
        """The workflow's status query (a worker answers it); ``local``: the refusal to
        raise when Temporal has no such workflow (see :meth:`thread_workflow`)."""
        try:
            return await asyncio.wait_for(handle.query(RunWorkflow.status), QUERY_TIMEOUT_S)
        except TimeoutError:
            raise RequestError(f"no worker answered about workflow {handle.id} within "
                               f"{QUERY_TIMEOUT_S:g}s: is `orchestrator worker` running on "
                               f"task queue {self.settings.temporal_task_queue!r}?") from None
        except RPCError as exc:
            raise _rpc_error(handle.id, exc, local) from None

    def thread_workflow(self, thread_id: str) -> WorkflowHandle[Any, RunOutcome]:
        """The workflow of a thread's latest run; RequestError when it has none
        (DrivenElsewhereError when that run is driven locally)."""
        return self._workflow_of(thread_id)[0]

    def _workflow_of(self, thread_id: str) -> tuple[WorkflowHandle[Any, RunOutcome],
                                                    str | None]:
        """The workflow of a thread's latest run and, when its record says a local process
        drives it, the refusal to raise unless Temporal has that workflow: a run stored
        before records named their driver reads as local, even one a workflow drives."""
        runs = self.store.thread_runs(thread_id)
        if not runs:
            raise RequestError(f"thread {thread_id!r} has no runs")
        record = self.store.run(runs[-1].run_id)
        local = None if record["driver"] == "temporal" else (
            f"run {record['run_id'][:12]} is driven locally (by the process that runs it), "
            "not by a Temporal workflow; approve it with --runs local (or "
            "ORCHESTRATOR_RUNS=local)")
        if local is not None and not record.get("request_id"):
            raise DrivenElsewhereError(local)
        return self.client.get_workflow_handle_for(RunWorkflow.run,
                                                   record["request_id"]), local

    async def pending(self, thread_id: str) -> list[dict[str, Any]]:
        """What the paused run of ``thread_id`` waits for, as its workflow says."""
        handle, local = self._workflow_of(thread_id)
        view = await self.view(handle, local)
        if view.status != "paused":
            raise RequestError(f"thread {thread_id!r} has no run waiting for a decision "
                               f"(its workflow {handle.id} is {view.status})")
        return view.pending

    async def decide(self, thread_id: str, verdicts: dict[str, dict[str, Any]],
                     approver: str) -> WorkflowHandle[Any, RunOutcome]:
        """Send one decision to the paused run's workflow; RequestError when it is refused
        (decided already, or not covering exactly what the run waits for)."""
        handle, local = self._workflow_of(thread_id)
        decision = Decision(verdicts={key: Verdict(bool(v["approved"]), str(v.get("reason")
                                                                            or ""))
                                      for key, v in verdicts.items()}, approver=approver)
        try:
            await handle.execute_update(DECIDE_UPDATE, decision, result_type=str)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            raise RequestError(f"decision refused: {getattr(cause, 'message', None) or exc}"
                               ) from None
        except RPCError as exc:
            raise _rpc_error(handle.id, exc, local) from None
        return handle


def _finished(result: asyncio.Future[RunOutcome]) -> RunOutcome:
    try:
        return result.result()
    except WorkflowFailureError as exc:
        raise RequestError(f"the run's workflow failed: {exc.cause or exc}") from None


def _rpc_error(workflow_id: str, exc: RPCError, local: str | None) -> RequestError:
    if exc.status == RPCStatusCode.NOT_FOUND and local is not None:
        return DrivenElsewhereError(local)  # no workflow: the record told the truth
    if exc.status == RPCStatusCode.NOT_FOUND or "already completed" in str(exc):
        return RequestError(f"the run's workflow {workflow_id} is not waiting for a decision "
                            "(it has ended: decided already)")
    return RequestError(f"Temporal refused: {exc.message}")


def result_of(followed: Followed) -> RunResult:
    """The run's result, from the workflow's outcome and the events followed; RequestError
    (one line) when the request was refused."""
    outcome = followed.outcome
    if outcome.status == "refused":
        raise RequestError(outcome.error or "the request was refused")
    data = outcome.result
    return RunResult(
        run_id=outcome.run_id, thread_id=outcome.thread_id, request=outcome.request,
        answer=data.get("answer") or "", status=data.get("status", outcome.status),
        plan=Plan.model_validate(data["plan"]) if data.get("plan") else None,
        results={k: SubtaskResult.from_dict(v) for k, v in (data.get("results") or {}).items()},
        usage=Usage.from_dict(data.get("usage")), elapsed_s=float(data.get("elapsed_s") or 0),
        error=outcome.error, events=followed.events,
        pending_approvals=[ApprovalRequest.from_dict(p) for p in outcome.pending],
        mode=data.get("mode") or "", budget_hit=data.get("budget_hit"))
