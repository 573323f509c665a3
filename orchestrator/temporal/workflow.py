"""The workflow of one request or event: the orchestrator's run, driven as activities.

Deterministic by construction: the run itself (the graph, the stores, the business
database) happens in the ``advance_run`` activity (:mod:`orchestrator.temporal.activities`);
this code only decides what comes next. A paused run ends its activity and the workflow
waits for a decision with no activity running, so it holds no worker; the decision arrives
as the ``decide`` update, whose validator refuses a second decision (or one for approvals
the run does not wait for) before it is accepted, so the caller learns it at once.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orchestrator.temporal.types import (
        ADVANCE_ACTIVITY,
        DECIDE_UPDATE,
        STATUS_QUERY,
        WORKFLOW_NAME,
        Decision,
        RunJob,
        RunOutcome,
        RunStep,
        RunView,
    )

RETRY = RetryPolicy(initial_interval=timedelta(seconds=0.5), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=10), maximum_attempts=0)
"""A worker that dies, or a run still held by a worker that may be alive (its lease has
not run out), is tried again with backoff until the run can go on; refusals are outcomes,
not errors, so they are never retried."""


@workflow.defn(name=WORKFLOW_NAME)
class RunWorkflow:
    """One run: advance it until it ends, waiting (without a worker) at each pause."""

    def __init__(self) -> None:
        self._view = RunView(status="starting")
        self._decision: Decision | None = None

    @workflow.run
    async def run(self, job: RunJob) -> RunOutcome:
        step = RunStep(job=job)
        while True:
            self._view.status = "running" if step.decision is None else "deciding"
            outcome = await workflow.execute_activity(
                ADVANCE_ACTIVITY, step, result_type=RunOutcome,
                start_to_close_timeout=timedelta(seconds=job.timeout_s),
                heartbeat_timeout=timedelta(seconds=job.heartbeat_s), retry_policy=RETRY)
            self._view = RunView(status=outcome.status, run_id=outcome.run_id,
                                 thread_id=outcome.thread_id, pending=outcome.pending,
                                 outcome=outcome)
            if outcome.status != "paused":
                return outcome
            self._decision = None
            await workflow.wait_condition(lambda: self._decision is not None)
            assert self._decision is not None
            step = RunStep(job=job, decision=self._decision)

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> RunView:
        """Where the run stands, and what it waits for when paused."""
        return self._view

    @workflow.update(name=DECIDE_UPDATE)
    async def decide(self, decision: Decision) -> str:
        """Take a person's decision on what the paused run waits for (applied by the next
        activity); refused by the validator unless the run waits for exactly these."""
        self._decision = decision
        self._view.status = "deciding"
        return "accepted"

    @decide.validator
    def check_decision(self, decision: Decision) -> None:
        if self._view.status != "paused" or self._decision is not None:
            state = "decided already" if self._view.status == "deciding" else self._view.status
            raise ValueError(f"the run is not waiting for a decision ({state}): one decision "
                             "per approval")
        waiting = {p["key"] for p in self._view.pending}
        if set(decision.verdicts) != waiting:
            raise ValueError(f"a decision must cover exactly the pending approvals "
                             f"({', '.join(sorted(waiting))}), not "
                             f"{', '.join(sorted(decision.verdicts)) or 'none'}")
