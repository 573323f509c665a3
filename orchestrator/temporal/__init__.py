"""Runs on Temporal: each request or event a workflow, run by ``orchestrator worker``s.

The workflow (:class:`RunWorkflow`) drives the orchestrator's run as activities over the
shared stores; a worker killed mid-run is noticed by its missing heartbeat and another
continues the run from its checkpoint; a paused run waits for a decision with no worker
held; schedules are Temporal Schedules. Needs the ``temporalio`` package.
"""

from orchestrator.temporal.client import TemporalRuns, connect
from orchestrator.temporal.dispatcher import TemporalDispatcher
from orchestrator.temporal.schedules import add_schedule, delete_schedule, list_schedules
from orchestrator.temporal.types import Decision, RunJob, RunOutcome, RunView, Verdict
from orchestrator.temporal.worker import run_worker
from orchestrator.temporal.workflow import RunWorkflow

__all__ = [
    "Decision",
    "RunJob",
    "RunOutcome",
    "RunView",
    "RunWorkflow",
    "TemporalDispatcher",
    "TemporalRuns",
    "Verdict",
    "add_schedule",
    "connect",
    "delete_schedule",
    "list_schedules",
    "run_worker",
]
