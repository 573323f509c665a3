"""The executor node: a dataflow scheduler over the plan's DAG.

A subtask starts the moment its own dependencies are done (not when its whole level
is), so wall time follows the critical path even when branches differ in speed. Each
subtask runs as a LangGraph ``@task``: its result is checkpointed, and a resumed run
does not redo finished subtasks.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from langgraph.func import task

from orchestrator.events import EventType, emit
from orchestrator.nodes.specialist import DependencyOutput, run_specialist
from orchestrator.plan import Plan, Subtask
from orchestrator.results import FINISHED_STATUSES, SubtaskResult
from orchestrator.state import EngineContext, NodeFn, OrchestratorState


def executor_node(ctx: EngineContext) -> NodeFn:
    """Build the executor node for ``ctx``."""

    async def run_subtask_now(
        subtask: dict[str, Any], inputs: list[dict[str, str]], run_id: str
    ) -> dict[str, Any]:
        spec = ctx.agents[subtask["agent"]]
        result = SubtaskResult(id=subtask["id"], goal=subtask["goal"], agent=spec.name,
                               status="running")
        deps = [DependencyOutput(**d) for d in inputs]
        done = await run_specialist(
            spec, ctx.agent_runnable(spec), ctx.agent_tools(spec), result, deps,
            run_id=run_id, max_steps=ctx.settings.max_agent_steps,
        )
        return done.to_dict()

    checkpointed: Any = task(name="specialist")(run_subtask_now)  # type: ignore[arg-type]

    async def run_subtask(
        subtask: dict[str, Any], inputs: list[dict[str, str]], run_id: str
    ) -> dict[str, Any]:
        # LangGraph replays task results by call order; on a resumed run the order can
        # differ, so a replayed result for another subtask is not trusted.
        result: dict[str, Any] = await checkpointed(subtask, inputs, run_id)
        if result.get("id") != subtask["id"]:
            result = await run_subtask_now(subtask, inputs, run_id)
        return result

    async def execute(state: OrchestratorState) -> dict[str, Any]:
        plan = Plan.model_validate(state["plan"])
        results = await dispatch_plan(plan, state["run_id"], run_subtask, ctx.settings.max_parallel)
        return {"results": {key: value.to_dict() for key, value in results.items()}}

    return execute


async def dispatch_plan(plan: Plan, run_id: str, run_subtask: Any, max_parallel: int
                        ) -> dict[str, SubtaskResult]:
    """Run every subtask as soon as its dependencies are done; skip those whose inputs failed."""
    results = {s.id: SubtaskResult(id=s.id, goal=s.goal, agent=s.agent) for s in plan.subtasks}
    running: dict[asyncio.Future[Any], str] = {}
    while True:
        _skip_blocked(plan, results, run_id)
        for subtask in dispatch_ready_subtasks(plan, results, max_parallel - len(running)):
            inputs = [{"subtask_id": d, "agent": results[d].agent, "output": results[d].output}
                      for d in subtask.depends_on]
            results[subtask.id].status = "running"
            results[subtask.id].started_at = time.time()
            emit("subtask_started", run_id, subtask_id=subtask.id, agent=subtask.agent,
                 data={"goal": subtask.goal, "depends_on": subtask.depends_on})
            future = asyncio.ensure_future(run_subtask(subtask.model_dump(), inputs, run_id))
            running[future] = subtask.id
        if not running:
            break
        finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for future in finished:
            subtask_id = running.pop(future)
            results[subtask_id] = _collect(future, results[subtask_id], run_id)
    return results


def dispatch_ready_subtasks(plan: Plan, results: dict[str, SubtaskResult], slots: int
                            ) -> list[Subtask]:
    """Pending subtasks whose dependencies are all done, at most ``slots`` of them."""
    ready = [s for s in plan.subtasks if results[s.id].status == "pending"
             and all(results[d].status == "done" for d in s.depends_on)]
    return ready[:max(slots, 0)]


def _skip_blocked(plan: Plan, results: dict[str, SubtaskResult], run_id: str) -> None:
    # Never run a subtask on missing input: a failed dependency skips everything after it.
    changed = True
    while changed:
        changed = False
        for subtask in plan.subtasks:
            result = results[subtask.id]
            if result.status != "pending":
                continue
            blocked = [d for d in subtask.depends_on
                       if results[d].status in FINISHED_STATUSES and results[d].status != "done"]
            if blocked:
                result.status = "skipped"
                result.error = f"not run: depends on {', '.join(blocked)}, which did not finish"
                result.finished_at = time.time()
                emit("subtask_skipped", run_id, subtask_id=subtask.id, agent=subtask.agent,
                     data={"reason": result.error})
                changed = True


def _collect(future: asyncio.Future[Any], started: SubtaskResult, run_id: str) -> SubtaskResult:
    try:
        result = SubtaskResult.from_dict(future.result())
    except Exception as exc:  # a bug or a model/provider failure: fail this subtask only
        result = started
        result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
        result.finished_at = time.time()
        result.attempts += 1
    result.started_at = started.started_at or result.started_at
    event: EventType = "subtask_finished" if result.status == "done" else "subtask_failed"
    emit(event, run_id, subtask_id=result.id, agent=result.agent, usage=result.usage.to_dict(),
         data={"status": result.status, "error": result.error,
               "elapsed_s": round(result.elapsed_s or 0.0, 4)})
    return result
