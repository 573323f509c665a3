"""The specialist loop: one agent, its own tools only, a bounded tool-calling loop.

The agent sees its subtask goal and the outputs of the subtasks it depends on:
never the conversation, the plan, or other agents' tools.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    messages_from_dict,
    messages_to_dict,
)
from langchain_core.messages.tool import ToolCall
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, ToolException
from pydantic import ValidationError

from agents.policy import approval_reason, call_key, is_audited
from agents.spec import AgentSpec
from orchestrator.budget import RunBudget
from orchestrator.errors import BudgetExceededError, ModelError, ToolRefusedError
from orchestrator.events import emit
from orchestrator.results import FailureKind, SubtaskResult, ToolCallRecord
from prompts import render_prompt, tagged


@dataclass(frozen=True)
class DependencyOutput:
    """The output of a finished subtask that the current one depends on."""

    subtask_id: str
    agent: str
    output: str


@dataclass(frozen=True)
class LoopLimits:
    """Bounds on one attempt's tool-calling loop."""

    max_steps: int = 6
    """Model calls per attempt."""
    max_identical_calls: int = 2
    """Same tool, same arguments: more than this is a loop."""
    stall_steps: int = 4
    """Model steps in a row without a successful new tool call: stalled."""


CANNOT_MARKER = "CANNOT:"
"""A report starting with this says the agent could not do its goal (see the prompt)."""


class _ApprovalNeeded(Exception):
    """A tool call needs a person's approval first: the attempt pauses here."""

    def __init__(self, key: str, tool: str, args: dict[str, Any], why: str) -> None:
        super().__init__(why)
        self.request: dict[str, Any] = {"key": key, "tool": tool, "args": args, "why": why}
        self.done: list[ToolMessage] = []
        self.pending: list[dict[str, Any]] = []


class _AttemptFailed(Exception):
    """The attempt ends as failed with this kind and message."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind


def specialist_messages(
    spec: AgentSpec, goal: str, inputs: list[DependencyOutput]
) -> list[BaseMessage]:
    """The agent's whole view of the world: its prompt, its goal, its inputs."""
    system = render_prompt(
        "specialist", name=spec.name, description=spec.description,
        instructions=spec.prompt.strip(),
    )
    parts = [tagged("goal", goal)]
    if inputs:
        blocks = "\n".join(tagged("input", d.output, subtask=d.subtask_id, agent=d.agent)
                           for d in inputs)
        parts.append(tagged("inputs", blocks))
    return [SystemMessage(system), HumanMessage("\n".join(parts))]


async def run_specialist(
    spec: AgentSpec,
    bound: Runnable[LanguageModelInput, BaseMessage],
    tools: dict[str, BaseTool],
    result: SubtaskResult,
    inputs: list[DependencyOutput],
    *,
    run_id: str,
    limits: LoopLimits | None = None,
    budget: RunBudget | None = None,
    model_name: str = "",
    grants: frozenset[str] = frozenset(),
) -> SubtaskResult:
    """Run one attempt at a subtask with ``bound`` (the agent's model with its tools bound).

    The returned result is done or failed with a ``failure_kind``; tool errors, loops,
    stalls and a used-up budget do not raise. A call that needs an approval not in
    ``grants`` leaves the result pending with ``awaiting`` set. Usage is added to ``result``
    as calls happen, so an attempt cut short by a timeout still counts what it spent.
    """
    limits = limits or LoopLimits()
    paused = (result.awaiting or {}).get("resume")
    result.started_at = result.started_at or time.time()
    result.status, result.error, result.failure_kind = "running", None, None
    result.awaiting = None
    seen_calls: dict[str, int] = {}
    idle_steps = 0
    try:
        if paused:
            # Approved: go on from where the agent stopped; what it did before stays done.
            messages = messages_from_dict(paused["messages"])
            messages.extend(await _run_step(spec, tools, paused["calls"], result, run_id,
                                            grants))
        else:
            messages = specialist_messages(spec, result.goal, inputs)
            result.attempts += 1
        for _ in range(limits.max_steps):
            if budget is not None:
                budget.begin_call()
            try:
                reply = await bound.ainvoke(messages)
            finally:
                if budget is not None:
                    budget.end_call()
            if not isinstance(reply, AIMessage):
                raise ModelError(f"{spec.name}'s model returned {type(reply).__name__}")
            result.usage.add_message(reply.usage_metadata)
            if budget is not None:
                budget.charge(model_name, reply.usage_metadata)
            messages.append(reply)
            if not reply.tool_calls:
                _finish(result, reply.text.strip())
                break
            _check_loop(spec.name, reply.tool_calls, seen_calls, limits.max_identical_calls)
            before = sum(c.status == "ok" for c in result.tool_calls)
            try:
                messages.extend(await _run_step(spec, tools, list(reply.tool_calls), result,
                                                run_id, grants))
            except _ApprovalNeeded as exc:
                # Keep the conversation and the calls still to make, to go on once decided.
                exc.request["resume"] = {"messages": messages_to_dict([*messages, *exc.done]),
                                         "calls": exc.pending}
                raise
            idle_steps = 0 if sum(c.status == "ok" for c in result.tool_calls) > before \
                else idle_steps + 1
            if idle_steps >= limits.stall_steps:
                raise _AttemptFailed("stalled", f"{spec.name} made no progress in "
                                     f"{idle_steps} steps (no successful tool call)")
        else:
            raise _AttemptFailed("stalled", f"{spec.name} did not finish within "
                                 f"{limits.max_steps} model calls")
    except _ApprovalNeeded as exc:
        result.status, result.awaiting = "pending", exc.request
    except _AttemptFailed as exc:
        result.status, result.error, result.failure_kind = "failed", str(exc), exc.kind
    except BudgetExceededError as exc:
        done = [c for c in result.tool_calls if c.status == "ok"]
        if done:
            # The actions happened; only the agent's report was cut: report the tool results.
            result.status = "done"
            result.output = " ".join(c.output for c in done) + \
                f" (report cut short: budget, {exc})"
        else:
            result.status, result.error, result.failure_kind = "cancelled", f"budget: {exc}", \
                "budget"
    except ModelError as exc:
        result.status, result.error, result.failure_kind = "failed", str(exc), "model_error"
    result.finished_at = time.time()
    return result


async def _run_step(spec: AgentSpec, tools: dict[str, BaseTool], calls: list[ToolCall],
                    result: SubtaskResult, run_id: str, grants: frozenset[str]
                    ) -> list[ToolMessage]:
    """Make one step's tool calls at once; every call is recorded even if one raises."""
    outcomes = await asyncio.gather(*(
        _call_tool(spec, tools, call, result, run_id, grants) for call in calls
    ), return_exceptions=True)
    waiting = [(c, o) for c, o in zip(calls, outcomes, strict=True)
               if isinstance(o, _ApprovalNeeded)]
    if waiting:  # an approval to ask for comes first; the calls that ran stay done
        first = waiting[0][1]
        first.done = [o for o in outcomes if isinstance(o, ToolMessage)]
        first.pending = [dict(c) for c, _ in waiting]
        raise first
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        raise failures[0]
    return [o for o in outcomes if isinstance(o, ToolMessage)]


def _finish(result: SubtaskResult, report: str) -> None:
    """The agent ended its loop: done, unless its tools all failed or it says it could not."""
    result.output = report or "(no report)"
    result.status = "done"
    if report.upper().startswith(CANNOT_MARKER):
        result.status, result.failure_kind = "failed", "no_result"
        result.error = report[len(CANNOT_MARKER):].strip() or "the agent could not do its goal"
    elif result.tool_calls and not any(c.status == "ok" for c in result.tool_calls):
        # It tried tools and none worked: the goal was not done, whatever it says.
        last = result.tool_calls[-1]
        result.status = "failed"
        result.failure_kind = "invalid_arguments" if last.status == "invalid" else "refused"
        result.error = f"no tool call succeeded ({last.name}: {last.output})"


def _check_loop(agent: str, calls: list[ToolCall], seen: dict[str, int], limit: int) -> None:
    for call in calls:
        key = json.dumps([call["name"], call.get("args") or {}], sort_keys=True, default=str)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > limit:
            raise _AttemptFailed("loop", f"{agent} repeated {call['name']} with the same "
                                 f"arguments {seen[key]} times: stopped as a loop")


async def _call_tool(
    spec: AgentSpec, tools: dict[str, BaseTool], call: ToolCall, result: SubtaskResult,
    run_id: str, grants: frozenset[str] = frozenset(),
) -> ToolMessage:
    name, args = call["name"], dict(call.get("args") or {})
    call_id = call.get("id") or name
    tool = tools.get(name)
    if tool is None:
        # Least privilege is enforced here, not in the prompt: the call never reaches any tool.
        allowed = ", ".join(tools) or "none"
        note = f"tool {name!r} is not available to agent {spec.name} (its tools: {allowed})"
        result.tool_calls.append(ToolCallRecord(name, args, "refused", note))
        emit("tool_refused", run_id, subtask_id=result.id, agent=spec.name,
             data={"tool": name, "args": _jsonable(args)})
        return ToolMessage(f"Refused: {note}.", tool_call_id=call_id, status="error")
    why = approval_reason(tool, args)
    if why is not None:
        key = call_key(result.id, name, args)
        if key not in grants:
            raise _ApprovalNeeded(key, name, _jsonable(args), why)
    audit = {"audit": True} if is_audited(tool) else {}
    started = time.perf_counter()
    try:
        output = await _invoke(tool, args, result)
    except ToolRefusedError as exc:
        result.tool_calls.append(ToolCallRecord(name, args, "refused", str(exc)))
        emit("tool_refused", run_id, subtask_id=result.id, agent=spec.name,
             data={"tool": name, "args": _jsonable(args), "reason": str(exc)})
        return ToolMessage(f"Refused: {exc}.", tool_call_id=call_id, status="error")
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        result.tool_calls.append(ToolCallRecord(name, args, "invalid", detail))
        emit("tool_called", run_id, subtask_id=result.id, agent=spec.name,
             data={"tool": name, "args": _jsonable(args), "status": "invalid", "error": detail})
        return ToolMessage(f"Invalid arguments for {name}: {detail}. Fix them and call again.",
                           tool_call_id=call_id, status="error")
    except Exception as exc:
        message = f"{name} failed: {exc}"
        result.tool_calls.append(ToolCallRecord(name, args, "error", str(exc)))
        emit("tool_called", run_id, subtask_id=result.id, agent=spec.name, data={
            "tool": name, "args": _jsonable(args), "status": "error", "error": str(exc),
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 2), **audit})
        raise _AttemptFailed(failure_kind_of(exc), message) from exc
    text = output if isinstance(output, str) else json.dumps(output, default=str)
    result.tool_calls.append(ToolCallRecord(name, args, "ok", text))
    emit("tool_called", run_id, subtask_id=result.id, agent=spec.name, data={
        "tool": name, "args": _jsonable(args), "status": "ok",
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 2), **audit})
    return ToolMessage(text, tool_call_id=call_id, name=name)


REJECTIONS = (ValueError, LookupError, TypeError, PermissionError, ToolException)
"""Exceptions by which a tool rejects its input (unknown id, bad value): not transient."""


def failure_kind_of(exc: BaseException) -> FailureKind:
    """``rejected`` when the tool refused the input (retrying cannot help), else ``tool_error``."""
    return "rejected" if isinstance(exc, REJECTIONS) else "tool_error"


async def _invoke(tool: BaseTool, args: dict[str, Any], result: SubtaskResult) -> Any:
    """Run the tool; while a synchronous one runs (in a thread a timeout cannot stop),
    ``result.unsettled_tool`` names it, so a timeout knows the outcome is unknown."""
    sync = getattr(tool, "coroutine", None) is None
    if sync:
        result.unsettled_tool = tool.name
    try:
        output = await tool.ainvoke(args)
    except asyncio.CancelledError:
        raise  # cut off by a timeout: the call may still be running
    except BaseException:
        result.unsettled_tool = None
        raise
    result.unsettled_tool = None
    return output


def _jsonable(args: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(args, default=str))
