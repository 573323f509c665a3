"""Replanning: the supervisor replaces a subtask that failed on every capable agent.

The executor calls :func:`replan_failed` when retries and reassignment are used up; the new
subtasks go into the running plan with :func:`merge_replacement`, keeping what is done.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from orchestrator.agents.spec import AgentSpec
from orchestrator.budget import RunBudget
from orchestrator.errors import ConfigError, PlanError
from orchestrator.nodes.plan_fit import fit_plan_off_loop
from orchestrator.nodes.planner import (
    check_can_act,
    plan_arguments,
    plan_with_repairs,
    validate_plan,
)
from orchestrator.nodes.shortlist import named_agents, shortlist
from orchestrator.plan import Plan, Subtask, check_agents
from orchestrator.prompts import render_prompt, tagged
from orchestrator.results import SubtaskResult, Usage
from orchestrator.state import EngineContext, OrchestratorState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Replacement:
    """A replacement plan as the model wrote it, and the finished subtasks its new subtasks
    depend on (kept apart: the plan alone does not contain them, so it could not validate)."""

    plan: Plan
    done_deps: dict[str, list[str]]

    @classmethod
    def parse(cls, raw: AIMessage, done: set[str]) -> _Replacement:
        args = plan_arguments(raw)
        done_deps: dict[str, list[str]] = {}
        subtasks: list[Any] = []
        for sub in args.get("subtasks") or []:
            if isinstance(sub, dict) and isinstance(sub.get("depends_on"), list):
                outside = [d for d in sub["depends_on"] if d in done]
                if outside:
                    done_deps[str(sub.get("id"))] = outside
                sub = {**sub, "depends_on": [d for d in sub["depends_on"] if d not in done]}
            subtasks.append(sub)
        return cls(validate_plan({**args, "subtasks": subtasks}), done_deps)


async def replan_failed(
    ctx: EngineContext, state: OrchestratorState, plan: Plan,
    results: dict[str, SubtaskResult], failed: SubtaskResult, usage: Usage, budget: RunBudget,
    notes: list[str] | None = None,
) -> Plan:
    """Ask the supervisor for subtasks that replace the failed one, keeping what is done.

    The agents that failed it are left out of the catalog; in a catalog larger than
    ``planner_shortlist`` the supervisor sees the shortlist for the failed goal, which may
    hold agents the first plan's shortlist did not, and the failed subtask's alternatives.
    The returned plan holds only the new subtasks (their own ids; dependencies on done
    subtasks kept); an empty plan means no agent can do it. :func:`merge_replacement` puts
    them into the running plan. A new subtask whose goal another shown agent's tools fit
    clearly better moves to that agent (``plan_fit``; kinds stay as asked), with a line in
    ``notes``.
    """
    others = [spec for spec in ctx.agents.values() if spec.name not in failed.agents_tried]
    if not others:
        return Plan(subtasks=[], answer="no other agent")
    planned = next((s for s in plan.subtasks if s.id == failed.id), None)
    keep = [*(planned.alternatives if planned is not None else []),
            *named_agents(failed.goal, ctx.agents)]
    catalog = await asyncio.to_thread(_replan_agents, ctx, failed.goal, keep, others)
    system = render_prompt("replan", agents="\n".join(ctx.catalog_line(s) for s in catalog))
    done_text = "\n".join(tagged("result", r.output, id=r.id, agent=r.agent)
                          for r in results.values() if r.status == "done")
    human = "\n".join([
        tagged("request", state["request"]),
        tagged("done", done_text or "(nothing yet)"),
        tagged("failed", failed.error or "failed", id=failed.id,
               agents=", ".join(failed.agents_tried)),
        tagged("remaining", failed.goal),
    ])
    allowed = {spec.name for spec in others}
    done = {r.id for r in results.values() if r.status == "done"}

    def accept(raw: AIMessage) -> Plan:
        reply = _Replacement.parse(raw, done)
        new = reply.plan
        check_agents(new, allowed)
        check_can_act(ctx, new)
        if failed.kind == "act" and new.subtasks and not any(
                (s.kind or failed.kind) == "act" for s in new.subtasks):
            raise PlanError(f"subtask {failed.id!r} was asked to make a change; the "
                            "replacement must make it too (an 'act' subtask for an agent "
                            "that can change things), or return no subtasks")
        # A replacement does what the failed subtask was for (its kind, unless the model
        # says it only needs to read) and never turns a question into an action.
        restored = new.model_copy(update={"subtasks": [
            s.model_copy(update={"depends_on": [*reply.done_deps.get(s.id, []), *s.depends_on],
                                 "kind": "answer" if failed.kind == "answer"
                                 else s.kind or failed.kind})
            for s in new.subtasks]})
        merge_replacement(plan, failed.id, restored, results)  # fits? (else: repair)
        return restored

    new = await plan_with_repairs(ctx, [SystemMessage(system), HumanMessage(human)],
                                  state["run_id"], usage, budget, accept,
                                  agents=[s.name for s in catalog])
    fitted, moved = await fit_plan_off_loop(ctx, new, catalog, state["request"], kinds=False)
    if notes is not None:
        notes.extend(moved)
    return fitted


def _replan_agents(ctx: EngineContext, goal: str, keep: list[str],
                   others: list[AgentSpec]) -> list[AgentSpec]:
    try:
        return shortlist(ctx, [goal], keep=keep, among=others)
    except ConfigError as exc:
        logger.warning("replan shortlist unavailable, showing every agent: %s", exc)
        return others


def merge_replacement(plan: Plan, failed_id: str, new: Plan,
                      results: dict[str, SubtaskResult]) -> Plan:
    """``plan`` plus ``new``'s subtasks (renamed apart), dependents of ``failed_id`` rewired.

    Raises PlanError when a new subtask depends on something that is neither new nor done.
    """
    if not new.subtasks:
        return plan
    taken = {s.id for s in plan.subtasks}
    failed = next((s for s in plan.subtasks if s.id == failed_id), None)
    origin = (failed.origin if failed is not None else None) or failed_id
    prefix = next(f"r{n}_" for n in range(1, 1000) if not any(
        i.startswith(f"r{n}_") for i in taken))
    renamed = {s.id: f"{prefix}{s.id}"[:40] for s in new.subtasks}
    added: list[Subtask] = []
    for subtask in new.subtasks:
        deps = []
        for dep in subtask.depends_on:
            if dep in renamed:
                deps.append(renamed[dep])
            elif dep in results and results[dep].status == "done":
                deps.append(dep)
            else:
                raise PlanError(f"replacement subtask {subtask.id!r} depends on {dep!r}, "
                                "which is neither a new subtask nor a done one")
        added.append(subtask.model_copy(update={"id": renamed[subtask.id], "depends_on": deps,
                                                "origin": origin}))
    needed = {d for s in added for d in s.depends_on}
    sinks = [s.id for s in added if s.id not in needed]
    rewired = [s.model_copy(update={"depends_on": list(dict.fromkeys(
        d2 for d in s.depends_on for d2 in (sinks if d == failed_id else [d])))})
        if failed_id in s.depends_on and results.get(s.id) is not None
        and results[s.id].status == "pending" else s
        for s in plan.subtasks]
    try:
        return Plan(rationale=plan.rationale, subtasks=[*rewired, *added], answer=plan.answer)
    except ValueError as exc:
        raise PlanError(f"the replacement does not fit the plan: {exc}") from None
