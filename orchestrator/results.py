"""What a run returns: per-subtask results, usage, and the run result."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from orchestrator.events import Event
from orchestrator.plan import Plan

if TYPE_CHECKING:
    from orchestrator.approvals import ApprovalRequest

RunStatus = Literal["ok", "partial", "failed", "paused", "unknown", "interrupted"]
"""ok: every subtask done; partial: some failed or were skipped; failed: no plan or nothing
done; unknown: nothing failed, but a write's outcome cannot be known (it was in flight at a
timeout); paused: waiting for an approval (``Orchestrator.resume``); interrupted: the
process stopped mid-run (resume it from its checkpoint)."""
SubtaskStatus = Literal["pending", "running", "done", "failed", "cancelled", "skipped",
                        "unknown"]
FINISHED_STATUSES = frozenset({"done", "failed", "cancelled", "skipped", "unknown"})
SubtaskKind = Literal["answer", "act"]
"""answer: only reads (bound to read-only tools); act: asked to change something."""
FailureKind = Literal["tool_error", "rejected", "invalid_arguments", "refused", "no_result",
                      "no_action", "timeout", "outcome_unknown", "loop", "stalled",
                      "model_error", "engine_error", "budget", "denied", "dependency",
                      "condition"]
"""Why a subtask did not finish: the statistics and the recovery policy key on it."""


@dataclass
class Usage:
    """LLM usage: calls and tokens."""

    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add_message(self, usage_metadata: Mapping[str, Any] | None) -> None:
        """Count one model call with its ``usage_metadata`` (may be missing)."""
        self.llm_calls += 1
        if usage_metadata:
            self.input_tokens += int(usage_metadata.get("input_tokens", 0) or 0)
            self.output_tokens += int(usage_metadata.get("output_tokens", 0) or 0)

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.llm_calls + other.llm_calls, self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.llm_calls - other.llm_calls, self.input_tokens - other.input_tokens,
                     self.output_tokens - other.output_tokens)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, int]:
        return {"llm_calls": self.llm_calls, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Usage:
        data = data or {}
        return cls(int(data.get("llm_calls", 0)), int(data.get("input_tokens", 0)),
                   int(data.get("output_tokens", 0)))


@dataclass
class ToolCallRecord:
    """One tool call an agent made (or tried to make)."""

    name: str
    args: dict[str, Any]
    status: Literal["ok", "error", "refused", "invalid", "rejected"]
    """rejected: the tool's precondition (or preview) refused the call before it ran."""
    output: str = ""
    write: bool = False
    """The tool is a write (not declared read-only)."""
    key: str | None = None
    """A write's idempotency key (run, subtask, action)."""
    replayed: bool = False
    """A write that had already happened: its earlier result was returned, nothing redone."""


@dataclass
class SubtaskResult:
    """The outcome of one subtask."""

    id: str
    goal: str
    agent: str
    status: SubtaskStatus = "pending"
    output: str = ""
    error: str | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    failure_kind: FailureKind | None = None
    agents_tried: list[str] = field(default_factory=list)
    """Every agent that attempted it, in order (reassignments add to it)."""
    replaced_by: list[str] = field(default_factory=list)
    """Subtasks a replan put in its place, when it failed and the supervisor replanned."""
    unsettled_tool: str | None = None
    """A synchronous tool still running when the attempt timed out: its outcome is unknown."""
    awaiting: dict[str, Any] | None = None
    """A tool call waiting for an approval: key, tool, args, why, preview (status pending)."""
    kind: SubtaskKind = "act"
    used_approvals: list[str] = field(default_factory=list)
    """Approval keys already spent: an approval lets one call run, once."""
    transcript: list[dict[str, Any]] | None = None
    """The attempt's conversation up to its last successful write: a retry goes on from it."""
    transcript_agent: str | None = None
    origin: str | None = None
    """The subtask a replan put this one in place of: writes are keyed by it, so a
    replacement does not redo what the failed subtask did."""
    attempt_first_call: int = 0
    """Index in ``tool_calls`` of the current attempt's first call: a failed write of an
    earlier attempt (another agent, another tool) does not fail a later one that did it."""

    @property
    def writes_done(self) -> list[ToolCallRecord]:
        return [c for c in self.tool_calls if c.write and c.status == "ok"]

    def settled(self, results: Mapping[str, SubtaskResult]) -> bool:
        """Done, or failed but replaced by a replan whose subtasks all settled."""
        if self.status == "done":
            return True
        return bool(self.replaced_by) and all(
            r in results and results[r].settled(results) for r in self.replaced_by)

    def summary_of_writes(self) -> str:
        """The writes that happened, for an answer or an error message ('' when none)."""
        return "; ".join(f"{c.name}: {c.output[:200]}" for c in self.writes_done)

    @property
    def elapsed_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        """What ``dataclasses.asdict`` gives (a deep copy), made faster: results go into
        the graph's state and the run's record several times a run, and ``asdict``
        deep-copies every string of an attempt's transcript one call at a time. The
        transcript's messages are shared, not copied: a transcript is only ever replaced
        whole (:func:`messages_to_dict` of the attempt), never changed in place, and
        copying its nested message dicts was most of the work."""
        return {name: _plain(getattr(self, name)) if name != "transcript" else
                (None if self.transcript is None else list(self.transcript))
                for name in _SUBTASK_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubtaskResult:
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        fields["usage"] = Usage.from_dict(fields.get("usage"))
        fields["tool_calls"] = [ToolCallRecord(**c) for c in fields.get("tool_calls", [])]
        return cls(**fields)


_SUBTASK_FIELDS = tuple(f.name for f in dataclasses.fields(SubtaskResult))
_ATOMS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    """``value`` as ``dataclasses.asdict`` copies a field: dataclasses as dicts, lists,
    tuples and dicts copied through, immutable atoms kept, anything else deep-copied."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is list:
        return [_plain(v) for v in value]
    if kind is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    if kind is tuple:
        return tuple(_plain(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return copy.deepcopy(value)


def run_status(results: Mapping[str, SubtaskResult], *, paused: bool, error: str | None,
               answered: bool) -> RunStatus:
    """The run's status from what its subtasks did (never ``ok`` when an asked change did
    not happen, never ``failed`` for work that was done)."""
    if paused:
        return "paused"
    counted = [r for r in results.values() if r.failure_kind != "condition"]
    settled = sum(r.settled(results) for r in counted)
    unknown = sum(r.status == "unknown" for r in counted)
    if error or (not answered and not results):
        return "failed" if not any(r.writes_done for r in counted) else "partial"
    if counted and settled == 0 and unknown == 0:
        return "partial" if any(r.writes_done for r in counted) else "failed"
    if settled + unknown < len(counted):
        return "partial"
    return "unknown" if unknown else "ok"


@dataclass
class RunResult:
    """Everything one request produced."""

    run_id: str
    thread_id: str
    request: str
    answer: str
    status: RunStatus
    plan: Plan | None
    results: dict[str, SubtaskResult]
    usage: Usage
    elapsed_s: float
    error: str | None = None
    events: list[Event] = field(default_factory=list)
    pending_approvals: list[ApprovalRequest] = field(default_factory=list)
    """When paused: what waits for a decision."""
    mode: str = ""
    """How the plan was made: 'supervisor' or 'playbook:<name>'."""
    budget_hit: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self, *, include_events: bool = False) -> dict[str, Any]:
        """The ``--json`` shape: answer, plan, results, usage, elapsed_s, thread_id, ..."""
        out: dict[str, Any] = {
            "answer": self.answer,
            "status": self.status,
            "error": self.error,
            "plan": self.plan.model_dump() if self.plan else None,
            "results": {key: value.to_dict() for key, value in self.results.items()},
            "usage": self.usage.to_dict(),
            "elapsed_s": round(self.elapsed_s, 4),
            "thread_id": self.thread_id,
            "run_id": self.run_id,
            "mode": self.mode,
            "budget_hit": self.budget_hit,
            "pending_approvals": [p.to_dict() for p in self.pending_approvals],
        }
        if include_events:
            out["events"] = [e.to_dict() for e in self.events]
        return out
