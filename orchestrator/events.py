"""Typed events: one record per thing that happened in a run.

The CLI's live view, the Python API's ``stream`` and (later) traces and telemetry
all read these. Inside the graph they travel as plain dicts through LangGraph's
stream writer; :meth:`Event.from_dict` turns them back into records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from langgraph.config import get_stream_writer

EventType = Literal[
    "run_started",
    "plan_made",
    "plan_invalid",
    "subtask_started",
    "tool_started",
    "tool_called",
    "tool_refused",
    "subtask_finished",
    "subtask_failed",
    "subtask_skipped",
    "agent_chosen",
    "attempt_finished",
    "retried",
    "reassigned",
    "replanned",
    "approval_requested",
    "approval_decided",
    "budget_hit",
    "answer",
]

EVENT_MARKER = "__orchestrator_event__"


@dataclass(frozen=True)
class Event:
    """Something that happened in a run."""

    type: EventType
    run_id: str
    time: float = field(default_factory=time.time)
    subtask_id: str | None = None
    agent: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: events are emitted on the hot path and their data is never shared.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Event:
        values = {k: v for k, v in payload.items() if k != EVENT_MARKER}
        return cls(**values)


EventSink = Callable[[Event], None]


def emit(event_type: EventType, run_id: str, **fields: Any) -> Event:
    """Send an event out through the graph's stream writer (a no-op outside a graph)."""
    event = Event(type=event_type, run_id=run_id, **fields)
    try:
        writer = get_stream_writer()
    except RuntimeError:  # called outside a LangGraph run
        return event
    writer({EVENT_MARKER: True, **event.to_dict()})
    return event
