"""Typed events: one record per thing that happened in a run.

The CLI's live view, the Python API's ``stream``, traces, the run store and telemetry all
read these. Each event type's ``data`` has a schema (a ``TypedDict`` below, listed in
:data:`EVENT_DATA`): emitters build it with the schema, so mypy checks the keys, and
readers ``cast`` to it. With ``ORCHESTRATOR_STRICT_EVENTS=1`` (the test suite sets it),
:func:`emit` raises on data that does not match its schema. Inside the graph events travel
as plain dicts through LangGraph's stream writer; :meth:`Event.from_dict` turns them back.
"""

# No ``from __future__ import annotations`` here: TypedDict reads NotRequired[...] from the
# evaluated annotations to know which keys are optional.
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import Any, Literal, NotRequired, TypedDict

EventType = Literal[
    "run_started",
    "plan_made",
    "plan_invalid",
    "subtask_started",
    "tool_started",
    "tool_called",
    "tool_refused",
    "agent_status",
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
    "run_handed_over",
    "answer",
]

EVENT_MARKER = "__orchestrator_event__"


# --- the data of each event type -----------------------------------------------------------


class RunStartedData(TypedDict):
    request: str
    event: dict[str, Any] | None
    coordination: str


class PlanMadeData(TypedDict):
    plan: dict[str, Any]
    mode: str
    elapsed_s: float
    adjusted: NotRequired[list[str]]
    """What the engine changed in the supervisor's plan, one line each (``plan_fit``)."""


class PlanInvalidData(TypedDict):
    error: str
    attempt: int


class SubtaskStartedData(TypedDict):
    goal: str
    depends_on: list[str]
    kind: str
    resumed: bool


class ToolStartedData(TypedDict):
    tool: str
    args: dict[str, Any]
    key: str


class ToolCalledData(TypedDict):
    tool: str
    args: dict[str, Any]
    status: str
    """ok, error or invalid (arguments the schema rejected)."""
    elapsed_ms: NotRequired[float]
    error: NotRequired[str]
    key: NotRequired[str]
    """The write's idempotency key (writes only)."""
    replayed: NotRequired[bool]
    """A write that had already happened: its earlier result was returned."""
    audit: NotRequired[bool]


class ToolRefusedData(TypedDict):
    tool: str
    args: dict[str, Any]
    reason: str
    precondition: bool


class SubtaskEndedData(TypedDict):
    """``subtask_finished``, ``subtask_failed`` and ``subtask_skipped``."""

    status: str
    kind: str | None
    error: NotRequired[str | None]
    reason: NotRequired[str]
    subtask_kind: NotRequired[str]
    writes: NotRequired[list[str]]
    attempts: NotRequired[int]
    agents_tried: NotRequired[list[str]]
    elapsed_s: NotRequired[float]
    replayed: NotRequired[bool]


class AgentChosenData(TypedDict):
    candidates: list[str]
    scores: dict[str, float]
    reason: str


class AttemptFinishedData(TypedDict):
    status: str
    kind: str | None
    error: str | None
    attempt: int
    elapsed_s: float
    embedder_load_s: NotRequired[float]
    """Time the attempt waited for the embedding model to load (not the agent's latency)."""
    slot_wait_s: NotRequired[float]
    """Time the attempt waited for a free slot of its model's endpoint (not its latency)."""


class RetriedData(TypedDict):
    attempt: int
    after: str | None
    kind: str | None
    delay_s: float


ReassignedData = TypedDict("ReassignedData", {
    "from": str, "to": str, "reason": str, "after": str | None, "kind": str | None})


class ReplannedData(TypedDict):
    replaced: str
    added: list[dict[str, Any]]
    elapsed_s: NotRequired[float]
    error: NotRequired[str]
    plan: NotRequired[dict[str, Any]]
    adjusted: NotRequired[list[str]]
    """What the engine changed in the supervisor's replacement (``plan_fit``)."""


class ApprovalRequestedData(TypedDict):
    """:class:`orchestrator.approvals.ApprovalRequest` as a dict."""

    key: str
    subtask_id: str
    agent: str
    goal: str
    why: str
    tool: str | None
    args: dict[str, Any] | None
    preview: str | None
    again: bool


class ApprovalDecidedData(TypedDict):
    approved: bool
    reason: str
    approver: str
    decided_at: float
    key: str
    tool: str | None
    args: dict[str, Any] | None
    preview: str | None


class BudgetHitData(TypedDict):
    limit: str | None
    cost_usd: float


class AgentStatusData(TypedDict):
    """An external agent's status update (a remote A2A task's state and message)."""

    state: str
    text: str


class RunHandedOverData(TypedDict):
    """Another worker took over an interrupted run (runs on Temporal): ``pid@host`` of the
    worker that had it and of the one going on with it, and Temporal's attempt number."""

    from_worker: str
    to_worker: str
    attempt: int


class AnswerData(TypedDict):
    answer: str
    error: str | None


EVENT_DATA: dict[str, type] = {
    "run_started": RunStartedData,
    "plan_made": PlanMadeData,
    "plan_invalid": PlanInvalidData,
    "subtask_started": SubtaskStartedData,
    "tool_started": ToolStartedData,
    "tool_called": ToolCalledData,
    "tool_refused": ToolRefusedData,
    "agent_status": AgentStatusData,
    "subtask_finished": SubtaskEndedData,
    "subtask_failed": SubtaskEndedData,
    "subtask_skipped": SubtaskEndedData,
    "agent_chosen": AgentChosenData,
    "attempt_finished": AttemptFinishedData,
    "retried": RetriedData,
    "reassigned": ReassignedData,
    "replanned": ReplannedData,
    "approval_requested": ApprovalRequestedData,
    "approval_decided": ApprovalDecidedData,
    "budget_hit": BudgetHitData,
    "run_handed_over": RunHandedOverData,
    "answer": AnswerData,
}
"""The schema of each event type's ``data``."""


def payload_problems(event_type: str, data: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``data`` for ``event_type`` (empty when it fits its schema)."""
    schema = EVENT_DATA.get(event_type)
    if schema is None:
        return [f"unknown event type {event_type!r}"]
    required: frozenset[str] = schema.__required_keys__  # type: ignore[attr-defined]
    optional: frozenset[str] = schema.__optional_keys__  # type: ignore[attr-defined]
    problems = [f"{event_type}: missing {key!r}" for key in sorted(required - set(data))]
    problems += [f"{event_type}: unknown key {key!r}" for key in sorted(
        set(data) - required - optional)]
    return problems


_STRICT = os.environ.get("ORCHESTRATOR_STRICT_EVENTS") == "1"


@dataclass(frozen=True)
class Event:
    """Something that happened in a run."""

    type: EventType
    run_id: str
    time: float = field(default_factory=time.time)
    subtask_id: str | None = None
    agent: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    usage: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: events are emitted on the hot path and their data is never shared.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "Event":
        values = {k: v for k, v in payload.items() if k != EVENT_MARKER}
        return cls(**values)


EventSink = Callable[[Event], None]


def emit(event_type: EventType, run_id: str, **fields: Any) -> Event:
    """Send an event out: to the run's sink when the engine drives the graph (see
    :func:`delivered_to`), else through the graph's stream writer (a no-op outside a graph)."""
    event = Event(type=event_type, run_id=run_id, **fields)
    if _STRICT and (problems := payload_problems(event_type, event.data)):
        raise AssertionError("; ".join(problems))
    sinks = _SINKS.get()
    if sinks is not None:
        sinks[0](event)
    else:
        _write({EVENT_MARKER: True, **event.to_dict()})
    return event


def _write(payload: dict[str, Any]) -> None:
    """Hand ``payload`` to the running graph's stream writer; nothing outside a graph."""
    try:
        from langgraph.config import get_stream_writer  # loaded once, on the first use

        writer = get_stream_writer()
    except RuntimeError:  # called outside a LangGraph run
        return
    writer(payload)


# --- answer chunks: the answer as the model writes it ---------------------------------------

ANSWER_CHUNK_MARKER = "__orchestrator_answer_chunk__"
ANSWER_CHUNKS_KEY = "orchestrator_answer_chunks"
"""The run config's ``configurable`` flag: False when nobody listens for answer chunks (the
answer is then written in one model call, not streamed). Absent means they are wanted."""


def answer_chunks_wanted() -> bool:
    """Whether the running graph's caller listens for answer chunks (True outside a graph
    and when the run's config does not say)."""
    try:
        from langgraph.config import get_config

        config = get_config()
    except RuntimeError:  # called outside a LangGraph run
        return True
    return bool(config.get("configurable", {}).get(ANSWER_CHUNKS_KEY, True))


@dataclass(frozen=True)
class AnswerChunk:
    """A piece of the answer as the synthesizer's model writes it.

    Not an :class:`Event`: chunks are not stored (the ``answer`` event holds the whole
    answer, as it always did) and not traced; they only go to a caller that asked for them
    (``on_answer_chunk``). The chunks of a call joined are the text the model wrote; when
    the call fails part-way, the ``answer`` event holds the plain account written instead.
    """

    run_id: str
    text: str
    index: int
    """0, 1, 2, ... in the order the model wrote them."""

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "text": self.text, "index": self.index}


AnswerChunkSink = Callable[[AnswerChunk], None]


def emit_answer_chunk(run_id: str, text: str, index: int) -> AnswerChunk:
    """Send a piece of the answer out, as :func:`emit` does; the service layer passes it to
    ``on_answer_chunk`` and stores nothing."""
    chunk = AnswerChunk(run_id=run_id, text=text, index=index)
    sinks = _SINKS.get()
    if sinks is None:
        _write({ANSWER_CHUNK_MARKER: True, **chunk.to_dict()})
    elif sinks[1] is not None:
        sinks[1](chunk)
    return chunk


_SINKS: ContextVar[tuple[EventSink, AnswerChunkSink | None] | None] = ContextVar(
    "orchestrator_event_sinks", default=None)


@contextmanager
def delivered_to(on_event: EventSink, on_answer_chunk: AnswerChunkSink | None
                 ) -> Iterator[None]:
    """Within this block (and the graph tasks started in it, which copy its context) events
    and answer chunks go straight to these callables, not through the graph's stream: the
    engine stores an event the moment it is emitted, so a step's events are in the writer
    before any of its checkpoint writes, and a piece of the answer skips the stream's
    queue. Graphs run by others (``langgraph dev``) still get them on the stream."""
    token = _SINKS.set((on_event, on_answer_chunk))
    try:
        yield
    finally:
        _SINKS.reset(token)


def answer_chunk_from_dict(payload: Mapping[str, Any]) -> AnswerChunk | None:
    """The chunk a stream-writer item carries, or None when it is not one."""
    if not payload.get(ANSWER_CHUNK_MARKER):
        return None
    return AnswerChunk(run_id=payload["run_id"], text=payload["text"], index=payload["index"])
