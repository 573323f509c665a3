"""The executor node: a dataflow scheduler over the plan's DAG, with recovery.

A subtask starts the moment its own dependencies are done (not when its whole level
is), so wall time follows the critical path even when branches differ in speed. Each
subtask runs as a LangGraph ``@task`` (its result is checkpointed: a resumed run does not
redo finished subtasks) with retries and reassignment inside (``recovery``). A subtask
that still fails is handed to the supervisor to replan, within ``max_replans``; its
dependents wait for the replacement, or are skipped when there is none.

Playbook steps may carry a condition (checked when the step is ready) and may need an
approval: the node then returns with those steps pending and the graph pauses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.func import task

from orchestrator.approvals import (
    ApprovalDecision,
    ApprovalRequest,
    approval_key_of,
    granted_keys,
    pending_approvals,
    satisfies_dependents,
)
from orchestrator.budget import RunBudget
from orchestrator.events import (
    BudgetHitData,
    EventType,
    ReplannedData,
    SubtaskEndedData,
    SubtaskStartedData,
    emit,
)
from orchestrator.nodes.recovery import run_with_recovery
from orchestrator.nodes.replan import merge_replacement, replan_failed
from orchestrator.nodes.specialist import DependencyOutput
from orchestrator.plan import Plan, Subtask
from orchestrator.results import FINISHED_STATUSES, FailureKind, SubtaskResult, Usage
from orchestrator.start_gate import leave_start_gate
from orchestrator.state import EngineContext, NodeFn, OrchestratorState

logger = logging.getLogger(__name__)

NO_REPLAN: frozenset[FailureKind | None] = frozenset({"budget", "denied", "dependency",
                                                      "condition", "rejected", "outcome_unknown",
                                                      "engine_error"})
"""Failures a new plan cannot fix: limits, decisions, and input the systems rejected."""


def executor_node(ctx: EngineContext) -> NodeFn:
    """Build the executor node for ``ctx``."""

    ran: set[tuple[str, str]] = set()
    """(run, subtask) pairs this process ran; a result not among them came from the
    checkpoint (a resumed run): its events say so."""

    async def run_subtask_now(subtask: dict[str, Any], inputs: list[dict[str, str]],
                              run_id: str, grants: list[str] | None = None,
                              paused: dict[str, Any] | None = None) -> dict[str, Any]:
        ran.add((run_id, subtask["id"]))
        leave_start_gate()  # its agent may wait on the world: the next run may start
        deps = [DependencyOutput(**d) for d in inputs]
        done = await run_with_recovery(
            ctx, Subtask.model_validate(subtask), deps, run_id, ctx.budget(run_id),
            frozenset(grants or ()), SubtaskResult.from_dict(paused) if paused else None)
        return done.to_dict()

    async def run_subtask(subtask: dict[str, Any], inputs: list[dict[str, str]], run_id: str,
                          grants: list[str], paused: dict[str, Any] | None) -> dict[str, Any]:
        # LangGraph replays task results by call order; on a resumed run the order can
        # differ, so a replayed result for another subtask is not trusted.
        result: dict[str, Any] = await _checkpointed(run_subtask_now, subtask, inputs, run_id,
                                                     grants, paused)
        if result.get("id") != subtask["id"]:
            result = await run_subtask_now(subtask, inputs, run_id, grants, paused)
        if (run_id, subtask["id"]) in ran:
            ran.discard((run_id, subtask["id"]))
        else:
            result = {**result, "replayed": True}
        return result

    async def execute(state: OrchestratorState) -> dict[str, Any]:
        scheduler = Scheduler(ctx, state, run_subtask)
        await scheduler.run()
        return scheduler.update()

    return execute


async def _run_checkpointed(run: Callable[..., Awaitable[dict[str, Any]]], *args: Any
                            ) -> dict[str, Any]:
    """``run(*args)`` as the LangGraph task "specialist": its result is checkpointed. A
    function of this module, not a closure per graph: LangGraph keeps the runnable it builds
    for a task function (a few signature inspections) only for one it finds by module and
    name, and rebuilt it for every subtask."""
    return await run(*args)


_checkpointed: Any = task(name="specialist")(_run_checkpointed)  # type: ignore[arg-type]


class Scheduler:
    """Runs one plan to the end: dispatch, collect, skip, replan, pause for approvals."""

    def __init__(self, ctx: EngineContext, state: OrchestratorState, run_subtask: Any) -> None:
        self.ctx = ctx
        self.state = state
        self.run_id = state["run_id"]
        self.plan = Plan.model_validate(state["plan"])
        self.run_subtask = run_subtask
        self.supervisor_usage = Usage.from_dict(state.get("supervisor_usage"))
        earlier = {k: SubtaskResult.from_dict(v) for k, v in (state.get("results") or {}).items()}
        spent = self.supervisor_usage
        for result in earlier.values():
            spent = spent + result.usage
        self.budget: RunBudget = ctx.budget(self.run_id, spent.to_dict())
        paused_at = state.get("wall_used_s")
        if paused_at is not None:  # time spent waiting for a person does not count
            self.budget.started = time.monotonic() - float(paused_at)
        self.results = {s.id: earlier.get(s.id) or self._new_result(s)
                        for s in self.plan.subtasks}
        for result in self.results.values():
            if result.status == "running":  # interrupted mid-flight: run it again
                result.status = "pending"
        self.replans = int(state.get("replans") or 0)
        self.approvals = {key: ApprovalDecision.from_dict(value)
                          for key, value in (state.get("approvals") or {}).items()}
        self.awaiting: list[ApprovalRequest] = []
        self.budget_reported = bool(state.get("budget_hit"))
        self._settled_some = False
        self._replanning: set[str] = set()
        """Failed subtasks the supervisor is replanning: their dependents wait."""
        self._replan_notes: dict[str, list[str]] = {}
        """What the engine changed in each replacement, by failed subtask (``plan_fit``)."""

    def _new_result(self, subtask: Subtask) -> SubtaskResult:
        return SubtaskResult(id=subtask.id, goal=subtask.goal, agent=subtask.agent,
                             kind=self.ctx.subtask_kind(subtask))

    async def run(self) -> None:
        running: dict[asyncio.Future[Any], str] = {}
        replanning: dict[asyncio.Future[Any], SubtaskResult] = {}
        while True:
            self._settled_some = False
            self._skip_blocked()
            if self.budget.exhausted:
                self._cancel_pending_for_budget()
            else:
                for subtask in self._ready(self.ctx.settings.max_parallel - len(running)):
                    running[self._dispatch(subtask)] = subtask.id
            if not running and not replanning:
                if self._settled_some:  # a skip or a denial may unblock or block others
                    continue
                break
            # A replan runs beside the subtasks: the rest of the plan does not wait for it.
            finished, _ = await asyncio.wait([*running, *replanning],
                                             return_when=asyncio.FIRST_COMPLETED)
            for future in finished:
                if future in replanning:
                    self._apply_replan(replanning.pop(future), future)
                    continue
                subtask_id = running.pop(future)
                result = self._collect(future, self.results[subtask_id])
                self.results[subtask_id] = result
                if self._should_replan(result):
                    self.replans += 1
                    self._replanning.add(result.id)
                    replanning[asyncio.ensure_future(self._ask_replan(result))] = result
        self.awaiting = pending_approvals(self.plan, self.results, self.approvals)
        for request in self.awaiting:
            emit("approval_requested", self.run_id, subtask_id=request.subtask_id,
                 agent=request.agent, data=request.event_data())

    def update(self) -> dict[str, Any]:
        """The state keys this node writes."""
        return {
            "plan": self.plan.model_dump(),
            "results": {key: value.to_dict() for key, value in self.results.items()},
            "supervisor_usage": self.supervisor_usage.to_dict(),
            "replans": self.replans,
            "budget_hit": self.budget.hit,
            "wall_used_s": (time.monotonic() - self.budget.started) if self.awaiting else None,
        }

    # --- dispatch ---------------------------------------------------------------------

    def _ready(self, slots: int) -> list[Subtask]:
        ready: list[Subtask] = []
        for subtask in self.plan.subtasks:
            result = self.results[subtask.id]
            if result.status != "pending" or not all(
                    self._satisfied(d) for d in subtask.depends_on):
                continue
            if subtask.when is not None and not subtask.when.holds(self._lookup(subtask.when.path)):
                self._finish_unrun(result, "skipped", "condition",
                                   f"condition on {subtask.when.path} not met")
                continue
            key = approval_key_of(subtask, result)
            if key is not None:
                decision = self.approvals.get(key)
                if decision is None:
                    continue  # waits for a person: see pending_approvals
                if not decision.approved:
                    reason = decision.reason or "no reason given"
                    what = f" for {result.awaiting['tool']}" if result.awaiting else ""
                    self._finish_unrun(result, "cancelled", "denied",
                                       f"not done: approval{what} denied ({reason})")
                    continue
            ready.append(subtask)
        return ready[:max(slots, 0)]

    def _satisfied(self, dependency: str) -> bool:
        return satisfies_dependents(self.results[dependency])

    def _dispatch(self, subtask: Subtask) -> asyncio.Future[Any]:
        inputs = [{"subtask_id": d, "agent": self.results[d].agent,
                   "output": self.results[d].output or f"(not run: {self.results[d].error})"}
                  for d in subtask.depends_on]
        result = self.results[subtask.id]
        # Approved: the same agent goes on from where it stopped.
        paused = result.to_dict() if result.awaiting is not None else None
        grants = granted_keys(subtask.id, self.approvals)
        result.status, result.awaiting = "running", None
        result.started_at = result.started_at or time.time()
        emit("subtask_started", self.run_id, subtask_id=subtask.id,
             agent=result.agent if paused else subtask.agent,
             data=SubtaskStartedData(goal=subtask.goal, depends_on=subtask.depends_on,
                                     kind=result.kind, resumed=paused is not None))
        return asyncio.ensure_future(self.run_subtask(subtask.model_dump(), inputs, self.run_id,
                                                      grants, paused))

    def _lookup(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        if head == "data":
            return (self.state.get("inputs") or {}).get(rest)
        step, _, attribute = rest.rpartition(".")
        result = self.results.get(step)
        return getattr(result, attribute) if result is not None else None

    # --- outcomes ---------------------------------------------------------------------

    def _collect(self, future: asyncio.Future[Any], started: SubtaskResult) -> SubtaskResult:
        replayed = False
        try:
            raw = future.result()
            replayed = bool(raw.get("replayed"))
            result = SubtaskResult.from_dict(raw)
        except Exception as exc:  # a bug: fail this subtask only, keep the traceback
            logger.exception("engine error running subtask %s", started.id)
            result = started
            result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
            result.failure_kind, result.finished_at = "engine_error", time.time()
        result.started_at = started.started_at or result.started_at
        if result.awaiting is not None:  # paused at a tool call that needs an approval
            return result
        data = SubtaskEndedData(
            status=result.status, error=result.error, kind=result.failure_kind,
            subtask_kind=result.kind, writes=[c.name for c in result.writes_done],
            attempts=result.attempts, agents_tried=result.agents_tried,
            elapsed_s=round(result.elapsed_s or 0.0, 4))
        if replayed:
            data["replayed"] = True
        event: EventType = ("subtask_finished" if result.status == "done" else
                            "subtask_skipped" if result.failure_kind == "condition" else
                            "subtask_failed")
        emit(event, self.run_id, subtask_id=result.id, agent=result.agent,
             time=result.finished_at or time.time(), usage=result.usage.to_dict(),
             data=data)
        if result.failure_kind == "budget":
            self._report_budget()
        return result

    def _skip_blocked(self) -> None:
        # Never run a subtask on missing input: a failed dependency skips everything after it.
        changed = True
        while changed:
            changed = False
            for subtask in self.plan.subtasks:
                result = self.results[subtask.id]
                if result.status != "pending":
                    continue
                blocked = [d for d in subtask.depends_on
                           if self.results[d].status in FINISHED_STATUSES
                           and not self._satisfied(d) and d not in self._replanning]
                if blocked:
                    self._finish_unrun(result, "skipped", "dependency", "not run: depends on "
                                       f"{', '.join(blocked)}, which did not finish")
                    changed = True

    def _cancel_pending_for_budget(self) -> None:
        self._report_budget()
        for result in self.results.values():
            if result.status == "pending":
                self._finish_unrun(result, "cancelled", "budget",
                                   f"not run: budget used up ({self.budget.hit})")

    def _report_budget(self) -> None:
        if not self.budget_reported and self.budget.hit:
            self.budget_reported = True
            emit("budget_hit", self.run_id, usage=self.budget.spent.to_dict(),
                 data=BudgetHitData(limit=self.budget.hit,
                                    cost_usd=round(self.budget.cost_usd, 6)))

    def _finish_unrun(self, result: SubtaskResult, status: Any, kind: FailureKind,
                      reason: str) -> None:
        result.status, result.failure_kind, result.error = status, kind, reason
        result.finished_at = time.time()
        self._settled_some = True
        emit("subtask_skipped", self.run_id, subtask_id=result.id, agent=result.agent,
             data=SubtaskEndedData(status=status, kind=kind, reason=reason))

    def _should_replan(self, result: SubtaskResult) -> bool:
        return (result.status == "failed" and result.failure_kind not in NO_REPLAN
                and self.ctx.settings.coordination != "rules"  # rules: no model planning
                and self.replans < self.ctx.settings.max_replans and not self.budget.exhausted)

    async def _ask_replan(self, failed: SubtaskResult) -> tuple[Plan, Usage, float]:
        before = self.supervisor_usage + Usage()  # a copy: the replan adds to it
        started = time.monotonic()
        notes: list[str] = []
        new = await replan_failed(self.ctx, self.state, self.plan, self.results, failed,
                                  self.supervisor_usage, self.budget, notes)
        self._replan_notes[failed.id] = notes
        return new, self.supervisor_usage - before, time.monotonic() - started

    def _apply_replan(self, failed: SubtaskResult, future: asyncio.Future[Any]) -> None:
        self._replanning.discard(failed.id)
        self._settled_some = True
        data = ReplannedData(replaced=failed.id, added=[])
        usage: dict[str, int] | None = None
        try:
            new, spent, elapsed = future.result()
            usage, data["elapsed_s"] = spent.to_dict(), round(elapsed, 4)
            if not new.subtasks:
                data["error"] = new.answer or "no agent can do it"
            else:
                before = {s.id for s in self.plan.subtasks}
                self.plan = merge_replacement(self.plan, failed.id, new, self.results)
                added = [s for s in self.plan.subtasks if s.id not in before]
                failed.replaced_by = [s.id for s in added]
                for subtask in added:
                    self.results[subtask.id] = self._new_result(subtask)
                data["added"] = [s.model_dump(exclude_defaults=True) for s in added]
                data["plan"] = self.plan.model_dump()
                if self._replan_notes.get(failed.id):
                    data["adjusted"] = self._replan_notes[failed.id]
        except Exception as exc:  # the supervisor could not replan: the failure stands
            data["error"] = str(exc)
        emit("replanned", self.run_id, subtask_id=failed.id, usage=usage, data=data)
