"""What the MCP tools return: a run's outcome as data (the tools' output schemas) and as the
short text an MCP client shows, with a paused run's waiting calls and how to decide them."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from orchestrator.approvals import ApprovalRequest
from orchestrator.results import RunResult


class SubtaskLine(BaseModel):
    """One subtask of a run: who did it and how it ended."""

    id: str
    agent: str
    status: str
    error: str | None = None


class WaitingCall(BaseModel):
    """One action a paused run waits for: a tool call (tool, arguments, preview of its
    effect) or a playbook step that needs an approval (no tool)."""

    key: str = Field(description="The approval key: a decision keyed by it covers this only.")
    subtask_id: str
    agent: str
    goal: str
    why: str
    tool: str | None = None
    args: dict[str, Any] | None = None
    preview: str | None = None

    @classmethod
    def of(cls, request: ApprovalRequest) -> WaitingCall:
        return cls(key=request.key, subtask_id=request.subtask_id, agent=request.agent,
                   goal=request.goal, why=request.why, tool=request.tool, args=request.args,
                   preview=request.preview)


class RunOutcome(BaseModel):
    """A run as the MCP tools report it."""

    run_id: str
    thread_id: str
    status: str = Field(description="ok, partial, failed, unknown, paused or interrupted.")
    request: str
    answer: str
    error: str | None = None
    mode: str = Field("", description="How it was planned: supervisor or playbook:<name>.")
    subtasks: list[SubtaskLine] = Field(default_factory=list)
    llm_calls: int = 0
    tokens: int = 0
    waiting_for_approval: list[WaitingCall] = Field(
        default_factory=list, description="When paused: the exact calls that wait.")
    how_to_approve: str | None = Field(None, description="When paused: how to decide.")


class RunLine(BaseModel):
    """One stored run, as ``list_runs`` shows it."""

    run_id: str
    thread_id: str
    request: str
    mode: str
    status: str
    started_at: float
    elapsed_s: float
    llm_calls: int
    tokens: int


class RunList(BaseModel):
    """Recent runs, newest first."""

    runs: list[RunLine]


def subtask_lines(plan: Mapping[str, Any] | None,
                  results: Mapping[str, Mapping[str, Any]] | None) -> list[SubtaskLine]:
    """The plan's subtasks in order (then any a replan added), each with its result."""
    results = results or {}
    planned = [dict(s) for s in (plan or {}).get("subtasks", [])]
    ids = [s["id"] for s in planned] + [k for k in results if k not in
                                        {s["id"] for s in planned}]
    agents = {s["id"]: s.get("agent", "") for s in planned}
    lines = []
    for sub_id in ids:
        result = results.get(sub_id) or {}
        lines.append(SubtaskLine(id=sub_id, agent=str(result.get("agent") or agents.get(sub_id)
                                                      or ""),
                                 status=str(result.get("status") or "pending"),
                                 error=result.get("error")))
    return lines


def outcome_of_result(result: RunResult, approve_hint: str) -> RunOutcome:
    """The outcome of a run that just ended or paused."""
    results = {k: {"agent": r.agent, "status": r.status, "error": r.error}
               for k, r in result.results.items()}
    plan = result.plan.model_dump() if result.plan is not None else None
    return RunOutcome(
        run_id=result.run_id, thread_id=result.thread_id, status=result.status,
        request=result.request, answer=result.answer, error=result.error, mode=result.mode,
        subtasks=subtask_lines(plan, results), llm_calls=result.usage.llm_calls,
        tokens=result.usage.total_tokens,
        waiting_for_approval=[WaitingCall.of(p) for p in result.pending_approvals],
        how_to_approve=approve_hint if result.pending_approvals else None)


def outcome_of_record(record: Mapping[str, Any], pending: Sequence[ApprovalRequest],
                      approve_hint: str) -> RunOutcome:
    """The outcome of a stored run (``RunRecords.run``); ``pending`` when it is paused."""
    return RunOutcome(
        run_id=record["run_id"], thread_id=record["thread_id"], status=record["status"],
        request=record["request"] or "", answer=record["answer"] or "",
        error=record["error"], mode=record["mode"] or "",
        subtasks=subtask_lines(record["plan"], record["results"]),
        llm_calls=record["llm_calls"] or 0,
        tokens=(record["input_tokens"] or 0) + (record["output_tokens"] or 0),
        waiting_for_approval=[WaitingCall.of(p) for p in pending],
        how_to_approve=approve_hint if pending else None)


def approve_hint(thread_id: str, cli_flags: Sequence[str], tool_enabled: bool) -> str:
    """How to approve or deny what a paused run of ``thread_id`` waits for."""
    command = shlex.join(["orchestrator", "approve", thread_id, *cli_flags])
    hint = (f"A person approves or denies on the machine serving this (same ORCHESTRATOR_HOME): "
            f"`{command}` (add --deny to refuse, --key KEY to decide one call, "
            "--reason TEXT for the record)")
    if tool_enabled:
        hint += (f"; or call the decide_approval tool with thread_id={thread_id!r} and "
                 "approve true or false")
    return hint + "."


def outcome_text(outcome: RunOutcome) -> str:
    """What an MCP client shows: status line, waiting calls when paused, subtasks, answer."""
    lines = [f"Run {outcome.run_id} (thread {outcome.thread_id}): {outcome.status}"
             + (f" - {outcome.error}" if outcome.error else "")]
    if outcome.waiting_for_approval:
        count = len(outcome.waiting_for_approval)
        waits = "1 action waits" if count == 1 else f"{count} actions wait"
        lines[0] = (f"Run {outcome.run_id} (thread {outcome.thread_id}) is paused: {waits} "
                    f"for a person's approval and {'has' if count == 1 else 'have'} not run.")
        for call in outcome.waiting_for_approval:
            lines.append(f"- {_call_text(call)}")
        lines.append(outcome.how_to_approve or "")
    if outcome.subtasks:
        lines.append("Subtasks: " + "; ".join(
            f"{s.id} ({s.agent}): {s.status}" for s in outcome.subtasks))
    if outcome.answer:
        lines += ["", outcome.answer]
    return "\n".join(lines)


def _call_text(call: WaitingCall) -> str:
    if call.tool is None:
        return (f"step {call.subtask_id} ({call.agent}): {call.goal} - {call.why} "
                f"[key {call.key}]")
    args = json.dumps(call.args or {}, ensure_ascii=False, sort_keys=True)
    effect = f" -> {call.preview}" if call.preview else ""
    return (f"{call.tool}({args}){effect} in step {call.subtask_id} ({call.agent}); why: "
            f"{call.why} [key {call.key}]")
