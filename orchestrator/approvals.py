"""Approvals: what waits for a person, and what they decided.

An approval belongs to one action: a tool call (this subtask, this tool, these arguments,
this preview of the effect; the key comes from :func:`orchestrator.agents.policy.approval_key`)
or a playbook step that needs one (the key is the step's id). :func:`pending_approvals` is
the one place that says what is waiting; :func:`parse_decision` turns what a person sent into
:class:`ApprovalDecision` records, strictly: ``True``/``False``, ``{"approved": bool,
"reason": str}``, or a mapping from a pending step id or approval key to one of those.
Anything else (``"false"``, ``1``, ``None``) is a :class:`RequestError`, never read as truthy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator.errors import RequestError
from orchestrator.events import ApprovalRequestedData
from orchestrator.plan import Plan, Subtask
from orchestrator.results import SubtaskResult

PLAYBOOK_STEP_WHY = "the playbook step needs an approval"


@dataclass(frozen=True)
class ApprovalRequest:
    """One action waiting for a decision."""

    key: str
    subtask_id: str
    agent: str
    goal: str
    why: str
    tool: str | None = None
    """The tool call's tool; None for a playbook step."""
    args: dict[str, Any] | None = None
    preview: str | None = None
    """What the call would do, computed from current state by the tool's preview."""
    again: bool = False
    """The same call was approved and spent before: this asks for it once more."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def event_data(self) -> ApprovalRequestedData:
        """The data of its ``approval_requested`` event."""
        return ApprovalRequestedData(key=self.key, subtask_id=self.subtask_id, agent=self.agent,
                                     goal=self.goal, why=self.why, tool=self.tool,
                                     args=self.args, preview=self.preview, again=self.again)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApprovalRequest:
        return cls(key=str(data["key"]), subtask_id=str(data["subtask_id"]),
                   agent=str(data.get("agent") or ""), goal=str(data.get("goal") or ""),
                   why=str(data.get("why") or ""), tool=data.get("tool"),
                   args=data.get("args"), preview=data.get("preview"),
                   again=bool(data.get("again")))


@dataclass(frozen=True)
class ApprovalDecision:
    """A person's decision on one approval, and who made it, when and why."""

    approved: bool
    reason: str = ""
    approver: str = "unknown"
    decided_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApprovalDecision:
        return cls(approved=data.get("approved") is True, reason=str(data.get("reason") or ""),
                   approver=str(data.get("approver") or "unknown"),
                   decided_at=float(data.get("decided_at") or 0.0))


def satisfies_dependents(result: SubtaskResult) -> bool:
    """Done, or skipped because its condition did not hold (not a failure)."""
    return result.status == "done" or result.failure_kind == "condition"


def approval_key_of(subtask: Subtask, result: SubtaskResult) -> str | None:
    """The approval a pending subtask waits for before it (re)starts: its paused tool call's,
    or its own id for a playbook step that needs one; None when it needs none."""
    if result.awaiting:
        return str(result.awaiting["key"])
    return subtask.id if subtask.requires_approval else None


def pending_approvals(plan: Plan | None, results: Mapping[str, SubtaskResult],
                      decided: Mapping[str, Any]) -> list[ApprovalRequest]:
    """What waits for a decision: tool calls an agent tried that need one, and ready playbook
    steps that need one, without a decision in ``decided`` (keyed by approval key)."""
    pending: list[ApprovalRequest] = []
    for step in plan.subtasks if plan is not None else []:
        result = results.get(step.id)
        if result is None or result.status != "pending":
            continue
        key = approval_key_of(step, result)
        if key is None or key in decided:
            continue
        if result.awaiting:
            call = result.awaiting
            pending.append(ApprovalRequest(
                key=key, subtask_id=step.id, agent=result.agent or step.agent, goal=step.goal,
                why=str(call.get("why") or ""), tool=call.get("tool"), args=call.get("args"),
                preview=call.get("preview"), again=bool(call.get("again"))))
        elif all(d in results and satisfies_dependents(results[d]) for d in step.depends_on):
            pending.append(ApprovalRequest(key=key, subtask_id=step.id, agent=step.agent,
                                           goal=step.goal, why=PLAYBOOK_STEP_WHY))
    return pending


def granted_keys(subtask_id: str, decisions: Mapping[str, ApprovalDecision]) -> list[str]:
    """The approved keys of ``subtask_id``'s tool calls (each lets one call run, once)."""
    return [key for key, decision in decisions.items()
            if decision.approved and key.startswith(f"{subtask_id}:")]


def plain_decision(decision: Any) -> Any:
    """``decision`` with :class:`ApprovalDecision` objects (alone or by key) turned into
    plain mappings (``approved``, ``reason``, and ``approver``/``decided_at`` when set);
    anything else unchanged."""
    if isinstance(decision, ApprovalDecision):
        plain: dict[str, Any] = {"approved": decision.approved, "reason": decision.reason}
        if decision.approver != "unknown":
            plain["approver"] = decision.approver
        if decision.decided_at:
            plain["decided_at"] = decision.decided_at
        return plain
    if isinstance(decision, Mapping) and any(
            isinstance(v, ApprovalDecision) for v in decision.values()):
        return {k: plain_decision(v) for k, v in decision.items()}
    return decision


def check_decision(decision: Any, pending: list[ApprovalRequest]) -> None:
    """Raise :class:`RequestError` unless ``decision`` is a strict decision on ``pending``."""
    decision = plain_decision(decision)
    if isinstance(decision, bool):
        return
    if not isinstance(decision, Mapping):
        raise RequestError(f"an approval decision must be true or false, not "
                           f"{type(decision).__name__} {decision!r}")
    if "approved" in decision:
        _check_one(decision, "the decision")
        return
    known = {p.key for p in pending} | {p.subtask_id for p in pending}
    unknown = [str(k) for k in decision if k not in known]
    if unknown:
        waiting = ", ".join(sorted({p.subtask_id for p in pending})) or "nothing"
        raise RequestError(f"no pending approval named {', '.join(unknown)}; waiting: {waiting}")
    for key, value in decision.items():
        _check_one(value, f"the decision on {key!r}")


def _check_one(value: Any, what: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, Mapping):
        extra = set(value) - {"approved", "reason", "approver", "decided_at"}
        if extra:
            raise RequestError(f"{what} has unknown field(s) {', '.join(sorted(extra))}; "
                               "give approved (true/false) and optionally reason, approver "
                               "and decided_at")
        if not isinstance(value.get("approved"), bool):
            raise RequestError(f"{what}: 'approved' must be true or false, not "
                               f"{value.get('approved')!r}")
        if not isinstance(value.get("reason", ""), str):
            raise RequestError(f"{what}: 'reason' must be text")
        if not isinstance(value.get("approver", ""), str):
            raise RequestError(f"{what}: 'approver' must be text")
        when = value.get("decided_at", 0.0)
        if isinstance(when, bool) or not isinstance(when, int | float):
            raise RequestError(f"{what}: 'decided_at' must be a time in seconds")
        return
    raise RequestError(f"{what} must be true or false, not {type(value).__name__} {value!r}")


def resume_payload(decision: Any, *, reason: str = "", approver: str | None = None
                   ) -> dict[str, Any]:
    """What ``Orchestrator.resume`` sends into the paused graph: the decision and who made it."""
    return {"decision": plain_decision(decision), "reason": reason,
            "approver": approver or "unknown", "decided_at": time.time()}


def parse_decision(payload: Any, pending: list[ApprovalRequest]
                   ) -> dict[str, ApprovalDecision]:
    """Decisions by approval key for everything ``pending``.

    ``payload`` is :func:`resume_payload`'s dict (a bare decision is accepted too). Anything
    pending without a decision is denied: nothing sensitive runs by default. Raises
    :class:`RequestError` for a decision that is not strict (see :func:`check_decision`).
    """
    if isinstance(payload, Mapping) and "decision" in payload:
        decision, reason = payload["decision"], str(payload.get("reason") or "")
        approver = str(payload.get("approver") or "unknown")
        decided_at = float(payload.get("decided_at") or time.time())
    else:
        decision, reason, approver, decided_at = payload, "", "unknown", time.time()
    decision = plain_decision(decision)
    check_decision(decision, pending)

    def made(approved: bool, why: str, given: Mapping[str, Any] | None = None
             ) -> ApprovalDecision:
        # The approver the caller names (a server: the key's owner) wins over the one a
        # decision carries; that one over "unknown".
        given = given or {}
        who = approver if approver != "unknown" else str(given.get("approver") or "unknown")
        return ApprovalDecision(approved, why, who,
                                float(given.get("decided_at") or decided_at))

    if isinstance(decision, bool):
        return {p.key: made(decision, reason) for p in pending}
    if "approved" in decision:
        return {p.key: made(decision["approved"], decision.get("reason") or reason, decision)
                for p in pending}
    out: dict[str, ApprovalDecision] = {}
    for item in pending:
        value = decision.get(item.key, decision.get(item.subtask_id))
        if value is None:
            out[item.key] = made(False, "no decision given")
        elif isinstance(value, bool):
            out[item.key] = made(value, reason)
        else:
            out[item.key] = made(value["approved"], value.get("reason") or reason, value)
    return out
