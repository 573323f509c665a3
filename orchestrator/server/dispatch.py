"""Where the server's runs run: the one seam between the routes and the engine.

By default the app's :class:`~orchestrator.api.Orchestrator` runs each request in the
server's process. With ``orchestrator serve --runs temporal`` a
:class:`~orchestrator.temporal.dispatcher.TemporalDispatcher` submits each request as a
workflow that a worker runs, and a decision to the run's workflow, from whichever replica
gets it; events reach clients through the shared run store either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from fastapi import Request

from orchestrator.approvals import ApprovalDecision
from orchestrator.events import AnswerChunkSink, EventSink
from orchestrator.results import RunResult


class RunDispatcher(Protocol):
    """Starts runs and continues paused ones (``Orchestrator`` is one)."""

    async def arun(self, request: str, *, thread_id: str | None = None,
                   on_event: EventSink | None = None, request_id: str | None = None,
                   on_answer_chunk: AnswerChunkSink | None = None,
                   history: Sequence[tuple[str, str]] = ()) -> RunResult: ...

    async def aresume(self, thread_id: str,
                      decision: bool | ApprovalDecision | Mapping[str, Any], *,
                      reason: str = "", approver: str | None = None,
                      on_event: EventSink | None = None,
                      on_answer_chunk: AnswerChunkSink | None = None) -> RunResult: ...


def dispatcher_of(request: Request) -> RunDispatcher:
    """The app's dispatcher: the one ``create_app`` was given, else its orchestrator."""
    state = request.app.state
    found: RunDispatcher = getattr(state, "dispatcher", None) or state.orchestrator
    return found
