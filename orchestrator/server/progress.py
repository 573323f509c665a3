"""What a chat client is told besides the answer: progress lines and a paused run's answer.

Progress travels as SSE comment lines, ``: orchestrator {json}``. The SSE standard makes
every client skip lines that start with ``:`` (the OpenAI SDKs, LangChain, browsers'
``EventSource``), so a client that knows nothing of the orchestrator sees a plain answer
stream, and one that reads the raw stream gets the plan and each agent's progress as JSON.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from orchestrator.approvals import ApprovalRequest
from orchestrator.events import Event

PROGRESS_PREFIX = ": orchestrator "
RUN_HEADER = "X-Run-Id"
"""The response header that names the run behind a chat answer that is not streamed (a
streamed one says it in its first progress line, ``run_started``)."""

_SHOWN = frozenset({
    "run_started", "plan_made", "plan_invalid", "subtask_started", "tool_called", "tool_refused",
    "agent_status", "subtask_finished", "subtask_failed", "subtask_skipped", "retried",
    "reassigned", "replanned", "approval_requested", "approval_decided", "budget_hit",
    "run_handed_over"})
_KEPT = ("mode", "goal", "status", "error", "tool", "attempt", "attempts", "replaced", "key",
         "preview", "why", "approved", "limit", "reason", "elapsed_s", "from", "after",
         "state", "text", "from_worker", "to_worker")
_MAX_TEXT = 300


def progress(event: Event) -> dict[str, Any] | None:
    """The compact view of an event a client is sent (None for events it is not sent)."""
    if event.type not in _SHOWN:
        return None
    item: dict[str, Any] = {"type": event.type}
    if event.type == "run_started":  # what a client needs to follow or look the run up
        item["run_id"] = event.run_id
    if event.subtask_id:
        item["subtask_id"] = event.subtask_id
    if event.agent:
        item["agent"] = event.agent
    for key in _KEPT:
        value = event.data.get(key)
        if value is not None:
            item[key] = value[:_MAX_TEXT] if isinstance(value, str) else value
    if event.usage and (tokens := event.usage.get("input_tokens", 0) + event.usage.get(
            "output_tokens", 0)):
        item["tokens"] = tokens
    plan = event.data.get("plan")
    # A replan's plan is the whole new one: a client redraws its graph from it.
    if event.type in ("plan_made", "replanned") and isinstance(plan, dict):
        item["subtasks"] = [{"id": s.get("id"), "agent": s.get("agent"),
                             "goal": str(s.get("goal", ""))[:_MAX_TEXT],
                             "depends_on": s.get("depends_on", [])}
                            for s in plan.get("subtasks", [])]
    return item


def progress_comment(event: Event) -> str | None:
    """The SSE comment line (with its blank line) for an event, or None."""
    item = progress(event)
    if item is None:
        return None
    # json.dumps escapes newlines, so the comment stays one line.
    return f"{PROGRESS_PREFIX}{json.dumps(item, default=str)}\n\n"


def paused_answer(pending: list[ApprovalRequest], thread: str, stored_thread: str) -> str:
    """The answer of a run that waits for approval: what waits, and how to decide it."""
    lines = ["Paused: this request needs an approval before it goes on."]
    for request in pending:
        call = (f"{request.tool}({json.dumps(request.args or {}, sort_keys=True)})"
                if request.tool else request.goal)
        detail = request.preview or request.why
        lines.append(f"- {request.agent}: {call}" + (f" ({detail})" if detail else ""))
    lines.append(f"Thread {thread!r} stays paused until someone decides: with a key that has "
                 f"the approve scope, POST /api/threads/{quote(thread, safe='')}/approvals "
                 '{"approve": true} (or false, with a "reason"); or on the server, '
                 f"`orchestrator approve {stored_thread}` (add --deny to refuse). New "
                 "messages on this thread are refused until then.")
    return "\n".join(lines)
