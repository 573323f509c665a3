"""Recovery for one subtask: timeouts, retries with backoff, then reassignment.

A failed attempt (tool error, timeout, invalid arguments after repair, a loop, a stall, an
agent that ends without doing its goal) is retried on the same agent up to a bound, then
the subtask goes to another capable agent. Only when every capable agent has failed does
the scheduler ask the supervisor to replan (see ``executor``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass

from orchestrator.agents.policy import is_read_only
from orchestrator.budget import RunBudget
from orchestrator.config import Settings
from orchestrator.errors import BudgetExceededError, is_model_failure
from orchestrator.events import (
    AgentChosenData,
    AttemptFinishedData,
    ReassignedData,
    RetriedData,
    emit,
)
from orchestrator.model_slots import Waits, run_within, waiting_clock
from orchestrator.nodes.external import outcome_unknown, run_external
from orchestrator.nodes.outcome import judge_cut_short
from orchestrator.nodes.specialist import DependencyOutput, LoopLimits, run_specialist
from orchestrator.plan import Subtask
from orchestrator.results import FailureKind, SubtaskResult, Usage
from orchestrator.retrieval.embedders import ModelLoads, model_load_clock
from orchestrator.routing import Choice, capable_agents
from orchestrator.state import EngineContext

logger = logging.getLogger(__name__)

RETRY_SAME_AGENT: frozenset[FailureKind] = frozenset(
    {"tool_error", "timeout", "model_error", "invalid_arguments", "loop", "stalled"})
"""Failures worth another try on the same agent; others go straight to an alternative."""


@dataclass(frozen=True)
class RecoveryPolicy:
    """How hard to try before a subtask counts as failed."""

    max_retries: int = 2
    backoff_s: float = 0.5
    max_reassigns: int = 2
    timeout_s: float = 120.0
    adaptive_routing: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> RecoveryPolicy:
        return cls(settings.max_retries, settings.retry_backoff_s, settings.max_reassigns,
                   settings.subtask_timeout_s, settings.adaptive_routing)

    def delay(self, retry: int) -> float:
        """Backoff before retry number ``retry`` (1-based): doubling, capped at 30 s."""
        return min(self.backoff_s * 2 ** (retry - 1), 30.0)


async def run_with_recovery(
    ctx: EngineContext, subtask: Subtask, inputs: list[DependencyOutput], run_id: str,
    budget: RunBudget, grants: frozenset[str] = frozenset(),
    paused: SubtaskResult | None = None,
) -> SubtaskResult:
    """Run ``subtask`` until it is done, waits for an approval, or every capable agent has
    failed it. ``paused``: the result of an attempt that stopped for an approval, which goes
    on with the same agent; ``grants``: approved tool calls."""
    policy = RecoveryPolicy.from_settings(ctx.settings)
    result = SubtaskResult(id=subtask.id, goal=subtask.goal, agent=subtask.agent,
                           kind=ctx.subtask_kind(subtask), origin=subtask.origin)
    if paused is not None:
        result = paused
        await _attempts_on_agent(ctx, policy, result, inputs, run_id, budget, grants)
        if result.status in ("done", "unknown", "skipped") or result.awaiting or \
                result.failure_kind in ("budget", "engine_error"):
            return result
    candidates = capable_agents(subtask.agent, subtask.goal, subtask.alternatives, ctx.agents)
    while len(result.agents_tried) <= policy.max_reassigns:
        left = [a for a in candidates if a not in result.agents_tried]
        if not left:
            break
        choice = _choose(ctx, policy, left, subtask.agent)
        if len(left) > 1:
            emit("agent_chosen", run_id, subtask_id=subtask.id, agent=choice.agent,
                 data=AgentChosenData(candidates=left, scores=choice.scores,
                                      reason=choice.reason))
        if result.agents_tried:
            moved: ReassignedData = {
                "from": result.agents_tried[-1], "to": choice.agent, "reason": choice.reason,
                "after": result.error, "kind": result.failure_kind}
            emit("reassigned", run_id, subtask_id=subtask.id, agent=choice.agent, data=moved)
        result.agent = choice.agent
        result.agents_tried.append(choice.agent)
        await _attempts_on_agent(ctx, policy, result, inputs, run_id, budget, grants)
        if result.status in ("done", "unknown", "skipped") or result.awaiting or \
                result.failure_kind in ("budget", "outcome_unknown", "engine_error",
                                        "rejected", "denied"):
            return result  # another agent cannot change what the systems refused
    if result.status in ("pending", "running"):  # no capable agent was left to try
        result.status, result.failure_kind = "failed", "no_result"
        result.error = result.error or f"no capable agent for {subtask.goal!r}"
    return result


def _excluded(loads: ModelLoads, waits: Waits) -> float:
    """Seconds of an attempt that are not its own: a model load, waits for a model slot."""
    return loads.seconds + waits.seconds


def _timed_out(result: SubtaskResult, agent: str, budget: RunBudget, timeout: float,
               wall_bound: bool, ctx: EngineContext) -> None:
    """An attempt cut off by its timeout or the run's wall time: say what is known."""
    unsettled = result.unsettled_tool
    spec = ctx.agents[agent]
    if spec.external is not None:  # the agent's own action, unless it is seen to be none
        write_in_flight = unsettled == agent and outcome_unknown(spec.external, result)
    else:
        tool = ctx.agent_tools(spec).get(unsettled or "")
        write_in_flight = tool is not None and not is_read_only(tool)
    result.unsettled_tool = None
    result.finished_at = time.time()
    if write_in_flight:
        # The call may still complete in its thread: its outcome cannot be known, and
        # trying again could do it twice.
        result.status, result.failure_kind = "unknown", "outcome_unknown"
        result.error = (f"{agent} was cut off after {timeout:g}s while {unsettled} was "
                        "running; whether it took effect is unknown, so it is not tried again")
        if wall_bound:
            budget.expire_wall()
        return
    if wall_bound:
        budget.expire_wall()
        if not judge_cut_short(result, f"cut short by the run's wall time ({budget.hit})",
                               answers=True):
            result.status, result.failure_kind = "cancelled", "budget"
            result.error = f"budget: {budget.hit}"
        return
    if judge_cut_short(result, f"cut short after {timeout:g}s"):
        return
    result.status, result.failure_kind = "failed", "timeout"
    result.error = f"{agent} timed out after {timeout:g}s"


def _choose(ctx: EngineContext, policy: RecoveryPolicy, left: list[str], preferred: str
            ) -> Choice:
    if not policy.adaptive_routing:
        return Choice(left[0], "planner's choice" if left[0] == preferred else "next in line", {})
    return ctx.routing.choose(left, preferred if preferred in left else left[0])


async def _attempts_on_agent(
    ctx: EngineContext, policy: RecoveryPolicy, result: SubtaskResult,
    inputs: list[DependencyOutput], run_id: str, budget: RunBudget,
    grants: frozenset[str] = frozenset(),
) -> None:
    spec = ctx.agents[result.agent]
    settings = ctx.settings
    limits = LoopLimits(settings.max_agent_steps, settings.max_identical_calls,
                        settings.stall_steps, settings.max_tool_output_chars,
                        settings.tool_threads)
    for retry in range(policy.max_retries + 1):
        if retry:
            delay = policy.delay(retry)
            emit("retried", run_id, subtask_id=result.id, agent=spec.name, data=RetriedData(
                attempt=result.attempts + 1, after=result.error, kind=result.failure_kind,
                delay_s=delay))
            await asyncio.sleep(delay)
        try:
            budget.check()
        except BudgetExceededError as exc:
            result.status, result.failure_kind = "cancelled", "budget"
            result.error = f"budget: {exc}"
            return
        before = result.usage + Usage()  # a copy: the attempt adds to result.usage
        started = time.monotonic()
        timeout = policy.timeout_s
        remaining = budget.remaining_s()
        wall_bound = remaining is not None and remaining < timeout
        loads, waits = ModelLoads(), Waits()
        try:
            # A one-off embedding-model load and waits for a free model slot are not this
            # subtask's time: the timeout counts without them.
            with model_load_clock(loads), waiting_clock(waits):
                attempt = (run_external(
                    spec, spec.external, result, inputs, run_id=run_id, budget=budget,
                    timeout_s=timeout, max_output_chars=settings.max_tool_output_chars,
                    journal=ctx.journal,
                ) if spec.external is not None else run_specialist(
                    spec, ctx.agent_runnable(spec, result.kind), ctx.agent_tools(spec), result,
                    inputs,
                    run_id=run_id, limits=limits, budget=budget,
                    model_name=ctx.model_name(spec.name), grants=grants, journal=ctx.journal,
                ))
                await run_within(attempt, timeout, functools.partial(_excluded, loads, waits),
                                 hard_limit=remaining)
        except TimeoutError:
            _timed_out(result, spec.name, budget, timeout, wall_bound, ctx)
        except Exception as exc:
            if not is_model_failure(exc):  # a bug: keep its traceback, do not retry it
                logger.exception("engine error in subtask %s (%s)", result.id, spec.name)
            result.status = "failed"
            result.failure_kind = "model_error" if is_model_failure(exc) else "engine_error"
            result.error = f"{type(exc).__name__}: {exc}"
            result.finished_at = time.time()
        # Loading the embedding model is the process's one-off start-up, reported apart:
        # it is not this agent's latency (statistics and routing read ``elapsed``).
        elapsed = max(time.monotonic() - started - loads.seconds - waits.seconds, 0.0)
        spent = result.usage - before
        ok = result.status == "done" or result.failure_kind == "condition"
        if result.failure_kind != "budget" and not result.awaiting:
            ctx.routing.record(spec.name, ok, elapsed)
            budget.note_attempt(ok)
        data = AttemptFinishedData(
            status="awaiting_approval" if result.awaiting else result.status,
            kind=result.failure_kind, error=result.error, attempt=result.attempts,
            elapsed_s=round(elapsed, 4))
        if loads.seconds:
            data["embedder_load_s"] = round(loads.seconds, 4)
        if waits.seconds >= 0.001:
            data["slot_wait_s"] = round(waits.seconds, 4)
        emit("attempt_finished", run_id, subtask_id=result.id, agent=spec.name,
             usage=spent.to_dict(), data=data)
        if ok or result.awaiting or result.failure_kind not in RETRY_SAME_AGENT:
            return

