"""The specialist loop: one agent, its own tools only, a bounded tool-calling loop.

The agent sees its subtask goal and the outputs of the subtasks it depends on:
never the conversation, the plan, or other agents' tools.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

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
from langchain_core.tools import BaseTool

from orchestrator.agents.spec import AgentSpec
from orchestrator.budget import RunBudget
from orchestrator.errors import BudgetExceededError, ModelError
from orchestrator.model_slots import model_slot
from orchestrator.models.direct import ainvoke_chat
from orchestrator.nodes.outcome import CANNOT_MARKER, judge, judge_cut_short
from orchestrator.nodes.tool_calls import (
    ApprovalNeeded,
    OutcomeUnknown,
    ToolCaller,
    ToolFailed,
    capped,
)
from orchestrator.prompts import render_prompt, tagged
from orchestrator.request_mood import has_condition
from orchestrator.results import FailureKind, SubtaskResult, ToolCallRecord, Usage
from orchestrator.text_tool_calls import tool_calls_in_text
from orchestrator.write_journal import WriteJournal

__all__ = ["CANNOT_MARKER", "DependencyOutput", "LoopLimits", "run_specialist",
           "specialist_messages"]


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
    max_tool_output_chars: int = 20_000
    """Longer tool outputs are cut, with a marker saying how much was left out."""
    tool_threads: int = 16
    """Synchronous tool calls that may run at once in this process."""


class _AttemptFailed(Exception):
    """The attempt ends as failed with this kind and message."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind


CONDITION_NOTE = (
    " Your goal is to act only under a condition: if your inputs show it does not hold, change"
    ' nothing and begin your reply with "NOT NEEDED:" and say why.')


def specialist_messages(
    spec: AgentSpec, goal: str, inputs: list[DependencyOutput]
) -> list[BaseMessage]:
    """The agent's whole view of the world: its prompt, its goal, its inputs."""
    # Only a goal with a condition may be declined; offered to every goal, small models
    # decline unconditional ones (seen: "NOT NEEDED" for "page the on-call for api-1").
    system = render_prompt(
        "specialist", name=spec.name, description=spec.description,
        instructions=spec.prompt.strip(),
        condition=CONDITION_NOTE if has_condition(goal) else "",
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
    journal: WriteJournal | None = None,
) -> SubtaskResult:
    """Run one attempt at a subtask with ``bound`` (the agent's model with its tools bound).

    The returned result is done or failed with a ``failure_kind``, judged from what the
    tools did (``outcome``); tool errors, loops, stalls and a used-up budget do not raise.
    A call that needs an approval not in ``grants`` leaves the result pending with
    ``awaiting`` set. Usage is added to ``result`` as calls happen, so an attempt cut short
    by a timeout still counts what it spent. An attempt after one that made a write goes on
    from that attempt's conversation (same agent) or is told what was done (another agent).
    """
    limits = limits or LoopLimits()
    caller = ToolCaller(spec, tools, result, run_id, grants, limits.max_tool_output_chars,
                        limits.tool_threads, journal,
                        given=" ".join([spec.prompt, result.goal,
                                        *(i.output for i in inputs)]))
    paused = (result.awaiting or {}).get("resume")
    result.started_at = result.started_at or time.time()
    result.status, result.error, result.failure_kind = "running", None, None
    result.awaiting = None
    seen_calls: dict[str, int] = {}
    idle_steps = 0
    last_step: list[ToolCallRecord] = []
    try:
        if paused:
            # Approved: go on from where the agent stopped; what it did before stays done.
            messages = messages_from_dict(paused["messages"])
            last_step, step = await _run_step(caller, paused["calls"])
            messages.extend(step)
        else:
            messages = _start_messages(spec, result, inputs)
            result.attempts += 1
            result.attempt_first_call = len(result.tool_calls)
        for _ in range(limits.max_steps):
            reply = await _ask(spec, bound, messages, result, budget, model_name)
            if not reply.tool_calls and (written := tool_calls_in_text(reply.text)):
                # A call written as text is a call, not a final report; it meets the same
                # checks (a tool the agent does not have is refused).
                reply = AIMessage(content="", tool_calls=written, id=reply.id,
                                  usage_metadata=reply.usage_metadata)
            messages.append(reply)
            if not reply.tool_calls:
                judge(result, capped(reply.text.strip(), limits.max_tool_output_chars),
                      last_step)
                break
            _check_loop(spec.name, reply.tool_calls, seen_calls, limits.max_identical_calls)
            before = _progress(result)
            try:
                last_step, step = await _run_step(caller, list(reply.tool_calls))
            except ApprovalNeeded as exc:
                # Keep the conversation and the calls still to make, to go on once decided.
                exc.request["resume"] = {"messages": messages_to_dict([*messages, *exc.done]),
                                         "calls": exc.pending}
                raise
            messages.extend(step)
            if any(c.write and c.status == "ok" and not c.replayed for c in last_step):
                result.transcript = messages_to_dict(messages)
                result.transcript_agent = spec.name
            idle_steps = 0 if _progress(result) > before else idle_steps + 1
            if idle_steps >= limits.stall_steps:
                raise _AttemptFailed("stalled", f"{spec.name} made no progress in "
                                     f"{idle_steps} steps (no successful new tool call)")
        else:
            raise _AttemptFailed("stalled", f"{spec.name} did not finish within "
                                 f"{limits.max_steps} model calls")
    except ApprovalNeeded as exc:
        result.status, result.awaiting = "pending", exc.request
    except OutcomeUnknown as exc:
        result.status, result.error, result.failure_kind = "unknown", str(exc), \
            "outcome_unknown"
    except (_AttemptFailed, ToolFailed) as exc:
        if not judge_cut_short(result, f"stopped: {exc}"):
            result.status, result.error, result.failure_kind = "failed", str(exc), exc.kind
    except BudgetExceededError as exc:
        if not judge_cut_short(result, f"report cut short: budget, {exc}", answers=True):
            result.status, result.error, result.failure_kind = "cancelled", f"budget: {exc}", \
                "budget"
    except ModelError as exc:
        result.status, result.error, result.failure_kind = "failed", str(exc), "model_error"
    result.finished_at = time.time()
    return result


def _start_messages(spec: AgentSpec, result: SubtaskResult, inputs: list[DependencyOutput]
                    ) -> list[BaseMessage]:
    """A fresh attempt; after an earlier attempt's successful write, go on from it."""
    if result.transcript and result.transcript_agent == spec.name:
        return messages_from_dict(result.transcript)
    done = result.summary_of_writes()
    if done:  # another agent made writes for this subtask: they are done, not to redo
        inputs = [*inputs, DependencyOutput(result.id, result.transcript_agent or "earlier",
                                            f"Already done for this goal: {done}")]
    return specialist_messages(spec, result.goal, inputs)


async def _ask(spec: AgentSpec, bound: Runnable[LanguageModelInput, BaseMessage],
               messages: list[BaseMessage], result: SubtaskResult, budget: RunBudget | None,
               model_name: str) -> AIMessage:
    if budget is not None:
        budget.begin_call(estimate_tokens(messages))
    try:
        reply = await invoke_model(bound, messages, result.usage)
    finally:
        if budget is not None:
            budget.end_call()
    if not isinstance(reply, AIMessage):
        raise ModelError(f"{spec.name}'s model returned {type(reply).__name__}")
    result.usage.add_message(reply.usage_metadata)
    if budget is not None:
        budget.charge(model_name, reply.usage_metadata)
    return reply


async def invoke_model(model: Runnable[LanguageModelInput, BaseMessage],
                       messages: list[BaseMessage], usage: Usage,
                       timeout: float | None = None) -> BaseMessage:
    """One model call: it waits for a free slot of the model's endpoint (a call still
    waiting was not sent), and a call cut off by ``timeout`` or a cancellation is counted
    in ``usage`` (the server took it; its input estimated)."""
    async with model_slot(model):
        try:
            return await asyncio.wait_for(ainvoke_chat(model, messages), timeout=timeout)
        except BaseException as exc:
            truncated = length_cut_reply(exc)
            if truncated is not None:
                return truncated
            if cut_off(exc):
                usage.add_message({"input_tokens": estimate_tokens(messages)})
            raise


def length_cut_reply(exc: BaseException) -> AIMessage | None:
    """The reply inside an error a client raises when a structured reply reached its token
    cap (openai's ``LengthFinishReasonError``): the text so far, its usage, and
    ``finish_reason: length``, so that the caller sees a cut-off reply (and asks again)
    instead of a failed model."""
    completion = getattr(exc, "completion", None)
    choices = getattr(completion, "choices", None)
    if not choices or type(exc).__name__ != "LengthFinishReasonError":
        return None
    message = getattr(choices[0], "message", None)
    counted = getattr(completion, "usage", None)
    return AIMessage(
        content=str(getattr(message, "content", None) or ""),
        response_metadata={"finish_reason": "length"},
        usage_metadata={
            "input_tokens": int(getattr(counted, "prompt_tokens", 0) or 0),
            "output_tokens": int(getattr(counted, "completion_tokens", 0) or 0),
            "total_tokens": int(getattr(counted, "total_tokens", 0) or 0)})


def cut_off(exc: BaseException) -> bool:
    """A model call stopped while the server had it: cancelled (a subtask or run timeout)
    or timed out (ours or the client's)."""
    return isinstance(exc, asyncio.CancelledError | TimeoutError) or any(
        "Timeout" in cls.__name__ for cls in type(exc).__mro__)


def estimate_tokens(messages: list[BaseMessage]) -> int:
    """A cheap upper-side guess of a call's input tokens (4 characters a token)."""
    return sum(len(str(m.content)) for m in messages) // 4 + 1


def _progress(result: SubtaskResult) -> int:
    """Successful calls that did something new (a replayed write is not progress)."""
    return sum(c.status == "ok" and not c.replayed for c in result.tool_calls)


async def _run_step(caller: ToolCaller, calls: list[ToolCall]
                    ) -> tuple[list[ToolCallRecord], list[ToolMessage]]:
    """Make one step's tool calls at once; every call is recorded even if one raises.
    Returns the step's records and its tool messages."""
    first = len(caller.result.tool_calls)
    outcomes = await asyncio.gather(*(caller.call(call) for call in calls),
                                    return_exceptions=True)
    waiting = [(c, o) for c, o in zip(calls, outcomes, strict=True)
               if isinstance(o, ApprovalNeeded)]
    if waiting:  # an approval to ask for comes first; the calls that ran stay done
        pause = waiting[0][1]
        pause.done = [o for o in outcomes if isinstance(o, ToolMessage)]
        pause.pending = [dict(c) for c, _ in waiting]
        raise pause
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        raise failures[0]
    return (caller.result.tool_calls[first:],
            [o for o in outcomes if isinstance(o, ToolMessage)])


def _check_loop(agent: str, calls: list[ToolCall], seen: dict[str, int], limit: int) -> None:
    for call in calls:
        key = json.dumps([call["name"], call.get("args") or {}], sort_keys=True, default=str)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > limit:
            raise _AttemptFailed("loop", f"{agent} repeated {call['name']} with the same "
                                 f"arguments {seen[key]} times: stopped as a loop")
