"""The approval node: pause the run until a person approves or denies pending steps.

The pause is a LangGraph ``interrupt``: the checkpointer saves it, so a paused run
survives a restart of the process and resumes with ``Orchestrator.resume``. What is pending
and how a decision is read live in :mod:`orchestrator.approvals`.
"""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from orchestrator.approvals import ApprovalRequest, parse_decision
from orchestrator.approvals import pending_approvals as pending_in
from orchestrator.errors import RequestError
from orchestrator.events import ApprovalDecidedData, emit
from orchestrator.plan import Plan
from orchestrator.results import SubtaskResult
from orchestrator.state import EngineContext, NodeFn, OrchestratorState


def pending_approvals(state: OrchestratorState) -> list[ApprovalRequest]:
    """What the run in ``state`` waits for (:func:`orchestrator.approvals.pending_approvals`)."""
    stored = state.get("results") or {}
    if not any(value.get("status") == "pending" for value in stored.values()):
        return []  # only a pending subtask waits (asked after every execute step: no parsing)
    plan = state.get("plan")
    results = {key: SubtaskResult.from_dict(value) for key, value in stored.items()}
    return pending_in(Plan.model_validate(plan) if plan else None, results,
                      state.get("approvals") or {})


def approval_node(ctx: EngineContext) -> NodeFn:
    """Build the approval node (``ctx`` is unused; nodes share one factory signature)."""

    async def approve(state: OrchestratorState) -> dict[str, Any]:
        pending = pending_approvals(state)
        payload = interrupt({"run_id": state["run_id"],
                             "approvals": [p.to_dict() for p in pending]})
        try:
            decisions = parse_decision(payload, pending)
        except RequestError:
            # Checked before resuming; a malformed decision that gets here denies everything.
            decisions = parse_decision(False, pending)
        for item in pending:
            decided = decisions[item.key]
            emit("approval_decided", state["run_id"], subtask_id=item.subtask_id,
                 data=ApprovalDecidedData(
                     approved=decided.approved, reason=decided.reason, approver=decided.approver,
                     decided_at=decided.decided_at, key=item.key, tool=item.tool,
                     args=item.args, preview=item.preview))
        return {"approvals": {**(state.get("approvals") or {}),
                              **{key: d.to_dict() for key, d in decisions.items()}}}

    return approve
