"""A run's trace: its record, a span per subtask (when it could start, started, ended, what
it cost) and its events. What ``orchestrator trace`` shows and the service API returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, cast

from orchestrator.events import ApprovalDecidedData, Event, ReplannedData, SubtaskEndedData

_END_EVENTS = ("subtask_finished", "subtask_failed", "subtask_skipped")


@dataclass
class SubtaskSpan:
    """One subtask's place in time: when it could start, started, ended; what it cost."""

    id: str
    agent: str
    goal: str
    depends_on: list[str]
    status: str = "pending"
    ready_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    agents_tried: list[str] = field(default_factory=list)
    tokens: int = 0
    llm_calls: int = 0
    error: str | None = None
    approval_waits: list[tuple[float, float | None]] = field(default_factory=list)
    """When it waited for a person's decision: (asked, decided; None while it waits)."""

    def approval_wait_s(self, until: float | None = None) -> float:
        """Time spent waiting for decisions; one still waited for counts up to ``until``
        (not at all without it)."""
        return sum(max((decided if decided is not None else until or asked) - asked, 0.0)
                   for asked, decided in self.approval_waits)

    @property
    def waited_s(self) -> float:
        if self.started_at is None or self.ready_at is None:
            return 0.0
        return max(self.started_at - self.ready_at, 0.0)

    @property
    def elapsed_s(self) -> float:
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return self.finished_at - self.started_at


def spans(plan: dict[str, Any] | None, events: list[Event]) -> list[SubtaskSpan]:
    """Subtask spans from a run's events (replanned subtasks included)."""
    found: dict[str, SubtaskSpan] = {}
    planned_at = next((e.time for e in events if e.type == "plan_made"), None)

    def add(sub: dict[str, Any]) -> None:
        found.setdefault(sub["id"], SubtaskSpan(sub["id"], sub["agent"], sub["goal"],
                                                list(sub.get("depends_on", []))))

    for sub in (plan or {}).get("subtasks", []):
        add(sub)
    for event in events:
        if event.type == "replanned":
            for sub in cast(ReplannedData, event.data)["added"]:
                add(sub)
        span = found.get(event.subtask_id or "")
        if span is None:
            continue
        if event.type == "subtask_started":
            # A subtask resumed after a decision starts again: its span begins at its first
            # start (what came between is its wait for the decision, not a wait to start).
            span.started_at = span.started_at if span.started_at is not None else event.time
            span.status = "running"
        elif event.type == "approval_requested":
            span.approval_waits.append((event.time, None))
            span.status = "approval"
        elif event.type == "approval_decided" and span.approval_waits:
            decided = cast(ApprovalDecidedData, event.data)
            span.approval_waits[-1] = (span.approval_waits[-1][0], event.time)
            span.status = "running" if decided["approved"] else "denied"
        elif event.type in _END_EVENTS:
            ended = cast(SubtaskEndedData, event.data)
            denied = span.status == "denied" and ended["status"] in ("cancelled", "skipped")
            span.finished_at = event.time
            span.status = "denied" if denied else ended["status"]
            span.error = ended.get("error") or ended.get("reason")
            span.attempts = ended.get("attempts", span.attempts)
            span.agents_tried = list(ended.get("agents_tried", span.agents_tried))
            if span.agents_tried:
                span.agent = span.agents_tried[-1]
            usage = event.usage or {}
            span.llm_calls = int(usage.get("llm_calls", 0))
            span.tokens = int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
    for span in found.values():
        ends = [found[d].finished_at for d in span.depends_on if d in found]
        span.ready_at = max((e for e in ends if e is not None), default=planned_at)
    return list(found.values())


@dataclass
class Trace:
    """One run: its stored record, a span per subtask, and every event."""

    run: dict[str, Any]
    subtasks: list[SubtaskSpan]
    events: list[Event]

    @classmethod
    def build(cls, record: dict[str, Any], events: list[Event]) -> Trace:
        return cls(record, spans(record.get("plan"), events), events)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run,
                "subtasks": [{**asdict(s), "waited_s": round(s.waited_s, 4),
                              "elapsed_s": round(s.elapsed_s, 4),
                              "approval_wait_s": round(s.approval_wait_s(), 4)}
                             for s in self.subtasks],
                "events": [e.to_dict() for e in self.events]}
