"""One attempt of an external specialist (:mod:`orchestrator.agents.external`): its steps
become events and tool-call records, its reply the subtask's result.

It runs where the engine's own tool loop runs (inside the recovery policy's attempt), so a
timeout, a retry, another agent or a replan follow a failure exactly as for a built-in
agent. An ``answer`` subtask goes only to an agent declared read-only.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from orchestrator.agents.external import (
    ExternalAgent,
    ExternalInput,
    ExternalReply,
    ExternalStatus,
    ExternalStep,
    ExternalTask,
    ExternalToolCall,
    ExternalUnreachable,
    reports_writes,
)
from orchestrator.agents.spec import AgentSpec
from orchestrator.budget import RunBudget
from orchestrator.errors import BudgetExceededError
from orchestrator.events import AgentStatusData, ToolCalledData, emit
from orchestrator.nodes.outcome import judge
from orchestrator.nodes.specialist import DependencyOutput
from orchestrator.results import SubtaskResult, ToolCallRecord, Usage
from orchestrator.truncation import cap_text
from orchestrator.write_journal import JournalEntry, WriteJournal

MAX_STEP_TEXT = 2_000
"""Longest status text or tool output kept per step (the reply itself is capped apart)."""
MAX_STATUS_EVENTS = 100
"""Status updates reported per attempt; the agent's further ones are dropped (one event
says so): a remote agent decides how many it sends, the run's events must stay bounded."""


async def run_external(
    spec: AgentSpec, agent: ExternalAgent, result: SubtaskResult,
    inputs: list[DependencyOutput], *, run_id: str, budget: RunBudget | None = None,
    model_name: str = "", timeout_s: float | None = None, max_output_chars: int = 20_000,
    journal: WriteJournal | None = None,
) -> SubtaskResult:
    """Run one attempt at ``result``'s subtask with ``agent``; the result is done, failed
    (with a ``failure_kind``) or, when the budget ran out, cancelled. A failure worth
    another try (the agent raised: a lost connection, a timeout) is raised to the caller's
    recovery policy, as a model error is for a built-in agent."""
    result.started_at = result.started_at or time.time()
    result.status, result.error, result.failure_kind = "running", None, None
    result.awaiting = None
    result.attempts += 1
    result.attempt_first_call = len(result.tool_calls)
    if result.kind == "answer" and not agent.kind.read_only:
        result.status, result.failure_kind = "failed", "refused"
        result.error = (f"{spec.name} is not declared read-only, so it does not take questions "
                        "(its card can declare it read-only if it only reads)")
        result.finished_at = time.time()
        return result
    if budget is not None:
        budget.check()
    task = ExternalTask(run_id=run_id, subtask_id=result.id, goal=result.goal,
                        kind=result.kind, inputs=tuple(
                            ExternalInput(i.subtask_id, i.agent, i.output) for i in inputs),
                        timeout_s=timeout_s)
    acting = result.kind == "act" and not agent.kind.read_only
    # An action is journaled like a write: after a crash, a resumed run neither sends it
    # again nor forgets it (done: its reply stands; under way: its outcome is unknown).
    key = f"{run_id}:{result.id}:{spec.name}" if acting and journal is not None else None
    earlier = await asyncio.to_thread(journal.lookup, key) if key and journal else None
    if earlier is not None and earlier.state != "failed":
        return _from_journal(spec, result, earlier, max_output_chars)
    if key and journal:
        await asyncio.to_thread(journal.begin, key, spec.name, {"goal": result.goal})
    if acting:  # until it answers, a cut-off leaves the change's outcome unknown
        result.unsettled_tool = spec.name
    try:
        reply = await _run_noted(agent, task, _Reporter(spec, result, run_id), journal, key)
    except BudgetExceededError as exc:
        result.unsettled_tool = None
        result.status, result.error, result.failure_kind = "cancelled", f"budget: {exc}", \
            "budget"
        result.finished_at = time.time()
        return result
    except ExternalUnreachable:
        result.unsettled_tool = None
        raise  # nothing started: the recovery policy may try again
    except asyncio.CancelledError:  # cut off (the subtask's timeout, the run stopping)
        if key and journal and not outcome_unknown(agent, result):
            journal.fail(key, "cut off before it changed anything")  # a retry may send it
        raise
    except Exception as exc:
        result.unsettled_tool = None
        if not acting or not outcome_unknown(agent, result):
            if key and journal:  # nothing changed, as it reported: a retry may send it
                await asyncio.to_thread(journal.fail, key, f"{type(exc).__name__}: {exc}")
            raise  # nothing changed (as far as it is seen): a retry cannot do it twice
        result.status, result.failure_kind = "unknown", "outcome_unknown"
        result.error = (f"{spec.name} lost contact during the action ({type(exc).__name__}: "
                        f"{exc}); whether it took effect is unknown, so it is not tried again")
        result.finished_at = time.time()
        return result
    # (Cut off by the engine's timeout, the attempt is cancelled with unsettled_tool still
    # naming the agent, so the recovery policy knows the action may be under way.)
    result.unsettled_tool = None
    spent = Usage(reply.llm_calls, reply.input_tokens, reply.output_tokens)
    result.usage = result.usage + spent
    if budget is not None and spent.llm_calls:
        budget.charge(model_name or spec.name, {"input_tokens": reply.input_tokens,
                                                "output_tokens": reply.output_tokens})
    if reply.status == "failed":
        result.status, result.failure_kind = "failed", "no_result"
        result.error = cap_text(reply.error or "the agent reported a failure",
                                max_output_chars)
        result.output = cap_text(reply.output, max_output_chars) or ""
    else:
        # What it did, by its own account, when it reported no call of that kind: the
        # change (or the reading) is the agent's own, done in its own system.
        act = result.kind == "act"
        own = [c for c in result.tool_calls[result.attempt_first_call:]
               if c.status == "ok" and c.write == act]
        if not own:
            result.tool_calls.append(ToolCallRecord(
                name=spec.name, args={"goal": result.goal}, status="ok",
                output=cap_text(reply.output, MAX_STEP_TEXT) or "", write=act))
        judge(result, cap_text(reply.output.strip(), max_output_chars) or "", [])
    result.finished_at = time.time()
    return result


async def _run_noted(agent: ExternalAgent, task: ExternalTask, report: _Reporter,
                     journal: WriteJournal | None, key: str | None) -> ExternalReply:
    """``agent.run``, its end noted in the journal: done with its reply, or failed when it
    says so or nothing was sent; a lost contact leaves the note ``started``."""
    try:
        reply = await agent.run(task, report)
    except ExternalUnreachable as exc:
        if key and journal:
            await asyncio.to_thread(journal.fail, key, str(exc))
        raise
    if key and journal:
        if reply.status == "failed":
            await asyncio.to_thread(journal.fail, key, reply.error or "failed")
        else:
            await asyncio.to_thread(journal.finish, key, reply.output)
    return reply


def _from_journal(spec: AgentSpec, result: SubtaskResult, earlier: JournalEntry,
                  max_output_chars: int) -> SubtaskResult:
    """A resumed run's action that the journal says was done, or under way, before the
    process stopped: nothing is sent again."""
    result.finished_at = time.time()
    if earlier.state == "done":
        output = earlier.output or ""
        result.tool_calls.append(ToolCallRecord(
            name=spec.name, args={"goal": result.goal}, status="ok", replayed=True,
            output=cap_text(output, MAX_STEP_TEXT) or "", write=True))
        judge(result, cap_text(output.strip(), max_output_chars) or "", [])
        return result
    result.status, result.failure_kind = "unknown", "outcome_unknown"
    result.error = (f"{spec.name} was doing this action when the run stopped; whether it took "
                    "effect is unknown, so it is not sent again")
    return result


def outcome_unknown(agent: ExternalAgent, result: SubtaskResult) -> bool:
    """Whether an action of ``agent`` stopped mid-way may have changed something unseen: a
    remote agent's always may; one that reports its writes, only once it made one."""
    if not reports_writes(agent):
        return True
    return any(c.write for c in result.tool_calls[result.attempt_first_call:])


class _Reporter:
    """The ``report`` callback an external agent gets: each step is an event at once."""

    def __init__(self, spec: AgentSpec, result: SubtaskResult, run_id: str) -> None:
        self.spec, self.result, self.run_id = spec, result, run_id
        self.statuses = 0

    def __call__(self, step: ExternalStep) -> None:
        if isinstance(step, ExternalToolCall):
            args = _jsonable(dict(step.args))
            output = cap_text(step.output, MAX_STEP_TEXT) or ""
            self.result.tool_calls.append(ToolCallRecord(
                name=step.name, args=args, status="ok" if step.ok else "error", output=output,
                write=step.write))
            data = ToolCalledData(tool=step.name, args=args,
                                  status="ok" if step.ok else "error")
            if not step.ok:
                data["error"] = output
            emit("tool_called", self.run_id, subtask_id=self.result.id, agent=self.spec.name,
                 data=data)
        elif isinstance(step, ExternalStatus):
            self.statuses += 1
            if self.statuses > MAX_STATUS_EVENTS:
                return
            text = cap_text(step.text, MAX_STEP_TEXT) or ""
            if self.statuses == MAX_STATUS_EVENTS:
                text = (f"{text} (its {MAX_STATUS_EVENTS}th status update: further ones are "
                        "not shown)").strip()
            emit("agent_status", self.run_id, subtask_id=self.result.id,
                 agent=self.spec.name, data=AgentStatusData(state=step.state, text=text))


def _jsonable(args: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(args)
        return args
    except (TypeError, ValueError):
        return {k: str(v) for k, v in args.items()}
