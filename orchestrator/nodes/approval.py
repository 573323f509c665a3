"""The approval node: pause the run until a person approves or denies pending steps.

The pause is a LangGraph ``interrupt``: the checkpointer saves it, so a paused run
survives a restart of the process and resumes with ``Orchestrator.resume``.
"""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from orchestrator.events import emit
from orchestrator.state import EngineContext, NodeFn, OrchestratorState


def pending_approvals(state: OrchestratorState) -> list[dict[str, Any]]:
    """Steps that need an approval, are ready to run, and have no decision yet."""
    plan = state.get("plan") or {}
    results = state.get("results") or {}
    decided = state.get("approvals") or {}

    def satisfied(dep: str) -> bool:
        result = results.get(dep) or {}
        return result.get("status") == "done" or result.get("failure_kind") == "condition"

    return [{"subtask_id": s["id"], "agent": s["agent"], "goal": s["goal"]}
            for s in plan.get("subtasks", [])
            if s.get("requires_approval") and s["id"] not in decided
            and (results.get(s["id"]) or {}).get("status") == "pending"
            and all(satisfied(d) for d in s.get("depends_on", []))]


def normalize_decision(decision: Any, pending: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Decisions by subtask id from what the resume gave.

    Accepted: ``True``/``False`` (all pending steps), ``{"approved": bool, "reason": str}``
    (all), or ``{subtask_id: bool | {"approved": bool, "reason": str}}``. A step with no
    decision is denied: nothing sensitive runs by default.
    """
    ids = [p["subtask_id"] for p in pending]
    if isinstance(decision, bool):
        return {i: {"approved": decision, "reason": ""} for i in ids}
    if isinstance(decision, dict) and "approved" in decision:
        one = {"approved": bool(decision["approved"]), "reason": str(decision.get("reason", ""))}
        return {i: dict(one) for i in ids}
    out: dict[str, dict[str, Any]] = {}
    given = decision if isinstance(decision, dict) else {}
    for subtask_id in ids:
        value = given.get(subtask_id, False)
        if isinstance(value, dict):
            out[subtask_id] = {"approved": bool(value.get("approved")),
                               "reason": str(value.get("reason", ""))}
        else:
            out[subtask_id] = {"approved": bool(value),
                               "reason": "" if value else "no decision given"}
    return out


def approval_node(ctx: EngineContext) -> NodeFn:
    """Build the approval node (``ctx`` is unused; nodes share one factory signature)."""

    async def approve(state: OrchestratorState) -> dict[str, Any]:
        pending = pending_approvals(state)
        decision = interrupt({"run_id": state["run_id"], "approvals": pending})
        decisions = normalize_decision(decision, pending)
        for subtask_id, choice in decisions.items():
            emit("approval_decided", state["run_id"], subtask_id=subtask_id, data=choice)
        return {"approvals": {**(state.get("approvals") or {}), **decisions}}

    return approve
