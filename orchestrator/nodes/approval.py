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
    """What waits for a decision: playbook steps that need an approval and are ready, and
    tool calls an agent tried that need one. Each has key, subtask_id, agent, goal (and
    tool, args, why for a tool call)."""
    plan = state.get("plan") or {}
    results = state.get("results") or {}
    decided = state.get("approvals") or {}

    def satisfied(dep: str) -> bool:
        result = results.get(dep) or {}
        return result.get("status") == "done" or result.get("failure_kind") == "condition"

    pending = []
    for step in plan.get("subtasks", []):
        result = results.get(step["id"]) or {}
        if result.get("status") != "pending":
            continue
        awaiting = result.get("awaiting")
        if awaiting:
            if awaiting["key"] not in decided:
                pending.append({"key": awaiting["key"], "subtask_id": step["id"],
                                "agent": result.get("agent", step["agent"]),
                                "goal": step["goal"], "tool": awaiting["tool"],
                                "args": awaiting["args"], "why": awaiting["why"]})
        elif step.get("requires_approval") and step["id"] not in decided and all(
                satisfied(d) for d in step.get("depends_on", [])):
            pending.append({"key": step["id"], "subtask_id": step["id"], "agent": step["agent"],
                            "goal": step["goal"], "why": "the playbook step needs an approval"})
    return pending


def normalize_decision(decision: Any, pending: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Decisions by approval key from what the resume gave.

    Accepted: ``True``/``False`` (all pending), ``{"approved": bool, "reason": str}`` (all),
    or ``{subtask_id or key: bool | {"approved": bool, "reason": str}}``. Anything pending
    without a decision is denied: nothing sensitive runs by default.
    """
    if isinstance(decision, bool):
        return {p["key"]: {"approved": decision, "reason": ""} for p in pending}
    if isinstance(decision, dict) and "approved" in decision:
        one = {"approved": bool(decision["approved"]), "reason": str(decision.get("reason", ""))}
        return {p["key"]: dict(one) for p in pending}
    given = decision if isinstance(decision, dict) else {}
    out: dict[str, dict[str, Any]] = {}
    for item in pending:
        value = given.get(item["key"], given.get(item["subtask_id"], False))
        if isinstance(value, dict):
            out[item["key"]] = {"approved": bool(value.get("approved")),
                                "reason": str(value.get("reason", ""))}
        else:
            out[item["key"]] = {"approved": bool(value),
                                "reason": "" if value else "no decision given"}
    return out


def approval_node(ctx: EngineContext) -> NodeFn:
    """Build the approval node (``ctx`` is unused; nodes share one factory signature)."""

    async def approve(state: OrchestratorState) -> dict[str, Any]:
        pending = pending_approvals(state)
        decision = interrupt({"run_id": state["run_id"], "approvals": pending})
        decisions = normalize_decision(decision, pending)
        for item in pending:
            emit("approval_decided", state["run_id"], subtask_id=item["subtask_id"],
                 data={**decisions[item["key"]], "key": item["key"]})
        return {"approvals": {**(state.get("approvals") or {}), **decisions}}

    return approve
