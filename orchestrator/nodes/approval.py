"""The approval node: pause the run until a person approves or denies pending steps.

The pause is a LangGraph ``interrupt``: the checkpointer saves it, so a paused run
survives a restart of the process and resumes with ``Orchestrator.resume``.

A decision is strict: ``True``/``False``, or ``{"approved": bool, "reason": str}``, for all
pending steps or by step id / approval key. Anything else (``"false"``, ``1``, ``None``) is a
:class:`RequestError`, never read as truthy. Who decided, when and why is kept with it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from langgraph.types import interrupt

from orchestrator.errors import RequestError
from orchestrator.events import emit
from orchestrator.state import EngineContext, NodeFn, OrchestratorState


def pending_approvals(state: OrchestratorState) -> list[dict[str, Any]]:
    """What waits for a decision: playbook steps that need an approval and are ready, and
    tool calls an agent tried that need one. Each has key, subtask_id, agent, goal (and
    tool, args, why, preview for a tool call)."""
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
                                "args": awaiting["args"], "why": awaiting["why"],
                                "preview": awaiting.get("preview")})
        elif step.get("requires_approval") and step["id"] not in decided and all(
                satisfied(d) for d in step.get("depends_on", [])):
            pending.append({"key": step["id"], "subtask_id": step["id"], "agent": step["agent"],
                            "goal": step["goal"], "why": "the playbook step needs an approval"})
    return pending


def check_decision(decision: Any, pending: list[dict[str, Any]]) -> None:
    """Raise :class:`RequestError` unless ``decision`` is a strict decision on ``pending``:
    a bool, ``{"approved": bool, "reason": str}``, or a mapping from a pending step id or
    approval key to one of those."""
    if isinstance(decision, bool):
        return
    if not isinstance(decision, Mapping):
        raise RequestError(f"an approval decision must be true or false, not "
                           f"{type(decision).__name__} {decision!r}")
    if "approved" in decision:
        _check_one(decision, "the decision")
        return
    known = {p["key"] for p in pending} | {p["subtask_id"] for p in pending}
    unknown = [str(k) for k in decision if k not in known]
    if unknown:
        waiting = ", ".join(sorted({p["subtask_id"] for p in pending})) or "nothing"
        raise RequestError(f"no pending approval named {', '.join(unknown)}; waiting: {waiting}")
    for key, value in decision.items():
        _check_one(value, f"the decision on {key!r}")


def _check_one(value: Any, what: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, Mapping):
        extra = set(value) - {"approved", "reason"}
        if extra:
            raise RequestError(f"{what} has unknown field(s) {', '.join(sorted(extra))}; "
                               "give approved (true/false) and optionally reason")
        if not isinstance(value.get("approved"), bool):
            raise RequestError(f"{what}: 'approved' must be true or false, not "
                               f"{value.get('approved')!r}")
        if not isinstance(value.get("reason", ""), str):
            raise RequestError(f"{what}: 'reason' must be text")
        return
    raise RequestError(f"{what} must be true or false, not {type(value).__name__} {value!r}")


def resume_payload(decision: Any, *, reason: str = "", approver: str | None = None
                   ) -> dict[str, Any]:
    """What ``Orchestrator.resume`` sends into the paused graph: the decision and who made it."""
    return {"decision": decision, "reason": reason, "approver": approver or "unknown",
            "decided_at": time.time()}


def normalize_decision(payload: Any, pending: list[dict[str, Any]]
                       ) -> dict[str, dict[str, Any]]:
    """Decisions by approval key: approved, reason, approver, decided_at.

    ``payload`` is :func:`resume_payload`'s dict (a bare decision is accepted too). Anything
    pending without a decision is denied: nothing sensitive runs by default. Raises
    :class:`RequestError` for a decision that is not strict (see :func:`check_decision`).
    """
    if isinstance(payload, Mapping) and "decision" in payload:
        decision, reason = payload["decision"], str(payload.get("reason") or "")
        who = {"approver": str(payload.get("approver") or "unknown"),
               "decided_at": float(payload.get("decided_at") or time.time())}
    else:
        decision, reason = payload, ""
        who = {"approver": "unknown", "decided_at": time.time()}
    check_decision(decision, pending)
    if isinstance(decision, bool):
        return {p["key"]: {"approved": decision, "reason": reason, **who} for p in pending}
    if "approved" in decision:
        one = {"approved": decision["approved"], "reason": decision.get("reason") or reason}
        return {p["key"]: {**one, **who} for p in pending}
    out: dict[str, dict[str, Any]] = {}
    for item in pending:
        value = decision.get(item["key"], decision.get(item["subtask_id"]))
        if value is None:
            out[item["key"]] = {"approved": False, "reason": "no decision given", **who}
        elif isinstance(value, bool):
            out[item["key"]] = {"approved": value, "reason": reason, **who}
        else:
            out[item["key"]] = {"approved": value["approved"],
                                "reason": value.get("reason") or reason, **who}
    return out


def approval_node(ctx: EngineContext) -> NodeFn:
    """Build the approval node (``ctx`` is unused; nodes share one factory signature)."""

    async def approve(state: OrchestratorState) -> dict[str, Any]:
        pending = pending_approvals(state)
        payload = interrupt({"run_id": state["run_id"], "approvals": pending})
        try:
            decisions = normalize_decision(payload, pending)
        except RequestError:
            # Checked before resuming; a malformed decision that gets here denies everything.
            decisions = normalize_decision(False, pending)
        for item in pending:
            emit("approval_decided", state["run_id"], subtask_id=item["subtask_id"],
                 data={**decisions[item["key"]], "key": item["key"],
                       "tool": item.get("tool"), "args": item.get("args"),
                       "preview": item.get("preview")})
        return {"approvals": {**(state.get("approvals") or {}), **decisions}}

    return approve
