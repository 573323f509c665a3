"""What crosses Temporal's boundary: a run's job, a step of it, its outcome, a decision.

Plain dataclasses of JSON types (Temporal's default converter serializes them), imported
by the workflow inside Temporal's sandbox, so this module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WORKFLOW_NAME = "OrchestratorRun"
ADVANCE_ACTIVITY = "advance_run"
DECIDE_UPDATE = "decide"
STATUS_QUERY = "status"


@dataclass
class RunJob:
    """A request or an event to run, as submitted: the workflow's input."""

    request: str = ""
    """The request's text (empty for an event)."""
    event: str | None = None
    """An event's name; its playbook runs (then ``request`` is empty)."""
    data: dict[str, Any] = field(default_factory=dict)
    """The event's data."""
    thread_id: str | None = None
    """The conversation the run is a turn of (a new one when None)."""
    history: list[list[str]] = field(default_factory=list)
    """The conversation before the request as ``[role, text]`` pairs, when the caller keeps
    it (see ``Orchestrator.arun``)."""
    heartbeat_s: float = 5.0
    """How long a silent worker may hold the run before Temporal gives it to another."""
    timeout_s: float = 3600.0
    """The longest one activity (a run's stretch up to its end or a pause) may take."""


@dataclass
class Verdict:
    """The decision on one pending approval."""

    approved: bool
    reason: str = ""


@dataclass
class Decision:
    """A person's decision on everything a paused run waits for, by approval key."""

    verdicts: dict[str, Verdict]
    approver: str = "unknown"


@dataclass
class RunStep:
    """One activity's work: start or continue the run, applying ``decision`` if it waits."""

    job: RunJob
    decision: Decision | None = None


@dataclass
class RunOutcome:
    """Where the run stands after an activity: finished, paused (with what it waits for)
    or refused (``error`` says why; nothing ran)."""

    status: str
    run_id: str = ""
    thread_id: str = ""
    request: str = ""
    error: str | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)
    """When paused: each pending approval (:meth:`ApprovalRequest.to_dict`)."""
    result: dict[str, Any] = field(default_factory=dict)
    """The run's result as ``--json`` shows it (:meth:`RunResult.to_dict`, no events)."""


@dataclass
class RunView:
    """What the workflow's status query returns."""

    status: str
    """starting, running, paused, deciding, or the outcome's status once ended."""
    run_id: str = ""
    thread_id: str = ""
    pending: list[dict[str, Any]] = field(default_factory=list)
    outcome: RunOutcome | None = None
