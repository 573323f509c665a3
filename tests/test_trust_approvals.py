"""Approvals bound to the action (issue: trustworthy outcomes, part 3).

A person approves one exact call (tool, validated arguments, the effect the tool previews
from the current state), once; the rule belongs to the tool wherever it is reached from.
"""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from langchain_core.tools import StructuredTool

from orchestrator import Orchestrator
from orchestrator.agents.cards import load_agent_card
from orchestrator.agents.commerce import commerce_agents
from orchestrator.agents.commerce import tools as shop
from orchestrator.agents.finance import finance_agents
from orchestrator.agents.healthcare import healthcare_agents
from orchestrator.agents.healthcare import tools as clinic
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.agents.policy import (
    approval_reason,
    is_audited,
    is_read_only,
    needs_approval,
    policy_of,
    refusal_reason,
)
from orchestrator.agents.spec import AgentSpec
from orchestrator.config import Settings
from orchestrator.errors import RequestError
from orchestrator.models import FakeChatModel, tool_call


def make(agents: list[AgentSpec], domain_db: Path, tmp_path: Path, model: Any = "fake",
         **kwargs: Any) -> Orchestrator:
    return Orchestrator(model, agents=agents, domain_db=domain_db,
                        checkpointer=tmp_path / "checkpoints.sqlite",
                        settings=Settings(home=tmp_path / "home", max_retries=0,
                                          max_replans=0), **kwargs)


def plan(goal: str, agent: str, kind: str = "act") -> Any:
    return tool_call("Plan", {"subtasks": [{"id": "t1", "goal": goal, "agent": agent,
                                            "kind": kind}]})


def refunds(db: sqlite3.Connection) -> list[tuple[str, float]]:
    return [tuple(r) for r in db.execute("SELECT order_id, amount FROM refunds")]


# --- decisions are strict and recorded ---------------------------------------------------


@pytest.mark.parametrize("decision", ["false", "no", 1, None, {"approved": "false"},
                                      {"t1": "yes"}, {"approved": True, "by": "me"}])
def test_a_decision_that_is_not_a_boolean_is_a_clear_error_and_approves_nothing(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path, decision: Any) -> None:
    o = make(commerce_agents(), domain_db, tmp_path)
    paused = o.run("refund order o-1010")  # $299: over the $100 limit
    assert paused.status == "paused"
    with pytest.raises(RequestError, match=r"true or false|no pending approval|unknown field"):
        o.resume(paused.thread_id, decision)
    assert refunds(db) == []
    # still paused: a valid decision can still be given, and who gave it is kept
    done = make(commerce_agents(), domain_db, tmp_path).resume(
        paused.thread_id, {"approved": True, "reason": "damaged on arrival"}, approver="ana")
    assert refunds(db) == [("o-1010", 299.0)]
    decided = next(e for e in done.events if e.type == "approval_decided")
    assert decided.data["approver"] == "ana" and decided.data["reason"] == "damaged on arrival"
    assert decided.data["decided_at"] > 0 and decided.data["tool"] == "refund_order"


# --- arguments are validated first; impossible actions are refused, not asked ----------


@pytest.mark.parametrize("args", [{"order": "o-1010"}, {}])
def test_a_malformed_call_is_not_shown_for_approval(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path, args: dict[str, Any]) -> None:
    support = FakeChatModel(script=[tool_call("refund_order", args), "I could not refund it."])
    o = make(commerce_agents(), domain_db, tmp_path,
             FakeChatModel(script=[plan("Refund order o-1010", "support")]),
             agent_models={"support": support})
    result = o.run("refund order o-1010")
    assert result.status == "failed" and result.pending_approvals == []
    assert "approval_requested" not in [e.type for e in result.events]
    (subtask,) = result.results.values()
    assert subtask.tool_calls[0].status == "invalid"
    assert refunds(db) == []


def test_an_action_that_can_never_be_allowed_is_refused_without_asking(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    db.execute("UPDATE transactions SET status = 'blocked' WHERE id = 'tx-1010'")
    db.commit()
    result = make(finance_agents(), domain_db, tmp_path).run("release transaction tx-1010")
    assert result.status == "failed" and result.pending_approvals == []
    refused = [e for e in result.events if e.type == "tool_refused"]
    assert refused and "blocked, not held" in refused[0].data["reason"]
    assert refused[0].data["precondition"] is True
    assert "replanned" not in [e.type for e in result.events]
    status = db.execute("SELECT status FROM transactions WHERE id = 'tx-1010'").fetchone()[0]
    assert status == "blocked"


# --- an approval is for the exact call and its effect, once ------------------------------


def test_a_changed_effect_asks_again_and_the_old_approval_does_not_apply(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    # Seen: shown $45 -> $32, executed $22 after the market data changed while paused.
    o = make(commerce_agents(), domain_db, tmp_path)
    paused = o.run("adjust the price of sku-6 to the market")
    (pending,) = paused.pending_approvals
    assert pending.preview == "price of sku-6: $45.00 -> $32.00"
    db.execute("UPDATE market_prices SET price = 22.0 WHERE sku = 'sku-6'")
    db.commit()

    again = make(commerce_agents(), domain_db, tmp_path).resume(paused.thread_id, True)
    assert again.status == "paused"
    (pending2,) = again.pending_approvals
    assert pending2.preview == "price of sku-6: $45.00 -> $22.00"
    assert pending2.key != pending.key
    price = db.execute("SELECT price FROM products WHERE sku = 'sku-6'").fetchone()[0]
    assert price == 45.0  # the approval of "$32" did not move it to $22

    done = make(commerce_agents(), domain_db, tmp_path).resume(paused.thread_id, True)
    assert done.ok
    assert db.execute("SELECT price FROM products WHERE sku = 'sku-6'").fetchone()[0] == 22.0


def test_one_approval_lets_the_call_run_once(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    # Seen: one approval let the agent repeat the approved call three times in a subtask.
    reader = FakeChatModel(script=[
        tool_call("read_full_patient_record", {"patient": "p-2"}, call_id="r1"),
        tool_call("read_full_patient_record", {"patient": "p-2"}, call_id="r2"),
        "Omar Haddad's record was read.",
    ])
    o = make(healthcare_agents(), domain_db, tmp_path,
             FakeChatModel(script=[plan("Read p-2's full record", "patient_history",
                                        "answer")]),
             agent_models={"patient_history": reader})
    paused = o.run("read the full record of patient p-2")
    assert paused.status == "paused"
    again = o.resume(paused.thread_id, True)
    # the second identical read is a new use: it needs its own approval
    assert again.status == "paused"
    assert again.pending_approvals[0].key != paused.pending_approvals[0].key
    reads = [e for e in again.events if e.type == "tool_called"
             and e.data["tool"] == "read_full_patient_record"]
    assert len(reads) == 1 and reads[0].data["audit"] is True
    done = o.resume(paused.thread_id, False, reason="once is enough")
    assert done.status in ("ok", "partial", "failed")
    reads += [e for e in done.events if e.type == "tool_called"
              and e.data["tool"] == "read_full_patient_record"]
    assert len(reads) == 1


# --- the rule belongs to the tool, wherever it is reached from ---------------------------


def test_a_card_that_imports_the_original_tools_gets_their_approvals_and_audit(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    # Seen: a YAML card importing the tool got a $299 refund and a full patient record with
    # no approval and no audit flag: the marks sat on one agent's copy.
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "helper.yaml").write_text(yaml.safe_dump({
        "name": "helper", "description": "Refunds orders and reads patient records.",
        "skills": ["refund order", "full patient record"],
        "tools": ["orchestrator.agents.commerce.tools:refund_order",
                  "orchestrator.agents.healthcare.tools:read_full_patient_record"]}))
    helper = load_agent_card(cards / "helper.yaml")
    assert all(needs_approval(t) for t in helper.tools)
    assert is_audited(next(t for t in helper.tools if t.name == "read_full_patient_record"))

    result = make([helper], domain_db, tmp_path).run("refund order o-1010")
    assert result.status == "paused" and refunds(db) == []
    assert result.pending_approvals[0].preview == "refund $299.00 for o-1010"


def test_a_tool_rewrapped_from_its_function_keeps_its_rule() -> None:
    copy = StructuredTool.from_function(shop.refund_order.func, name="refund_order",
                                        args_schema=shop.RefundArgs)
    assert approval_reason(copy, {"order_id": "o-1010"}) is not None
    bare = StructuredTool.from_function(clinic.read_full_patient_record.func)
    assert is_audited(bare) and needs_approval(bare)

    # Found by review: a decorator made with functools.wraps hid the rule.
    def logged(fn: Any) -> Any:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)
        return inner

    wrapped = StructuredTool.from_function(logged(shop.refund_order.func), name="refund_order",
                                           args_schema=shop.RefundArgs)
    assert needs_approval(wrapped) and not is_read_only(wrapped)
    assert refusal_reason(wrapped, {"order_id": "o-1010"}) is None  # the precondition is there
    assert policy_of(wrapped).refuse is not None


def test_a_supervisor_plan_that_moves_a_healthy_service_needs_an_approval(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    # Seen: the planned_failover playbook asked for an approval; the same move planned by
    # the supervisor did not.
    o = make(it_ops_agents(), domain_db, tmp_path)
    result = o.run("move web-2 traffic to web-backup-b for maintenance")
    assert result.mode == "supervisor" and result.status == "paused"
    (pending,) = result.pending_approvals
    assert pending.tool == "reroute_traffic"
    assert pending.preview == "web-2 traffic: web-primary -> web-backup-b"
    assert db.execute("SELECT pool FROM routes WHERE service = 'web-2'").fetchone()[0] == \
        "web-primary"
    # failing over a service that is down is incident response: no approval
    down = o.run("reroute web-3 traffic to web-backup-a")
    assert down.ok


def test_a_playbook_step_that_needs_approval_still_pauses_before_it_starts(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "page_drill.yaml").write_text(yaml.safe_dump({
        "name": "page_drill", "description": "A paging drill, approved by a person first.",
        "trigger": {"event": "page_drill"}, "inputs": ["service"],
        "steps": [{"id": "page", "agent": "notifications", "requires_approval": True,
                   "goal": "Page the on-call engineer for {service}: paging drill"}]}))
    settings = Settings(home=tmp_path / "home", playbooks_dir=books)
    o = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, settings=settings,
                     checkpointer=tmp_path / "checkpoints.sqlite")
    paused = o.fire_event("page_drill", {"service": "api-1"})
    assert paused.status == "paused" and paused.pending_approvals[0].key == "page"
    assert db.execute("SELECT count(*) FROM alerts").fetchone()[0] == 0
    done = o.resume(paused.thread_id, True, approver="sre-lead")
    assert done.ok and db.execute("SELECT count(*) FROM alerts").fetchone()[0] == 1


def test_a_typed_decision_by_key_is_applied_and_recorded(domain_db: Path, db: sqlite3.Connection,
                                                         tmp_path: Path) -> None:
    from orchestrator import ApprovalDecision

    o = make(it_ops_agents(), domain_db, tmp_path)
    paused = o.run("move web-2 traffic to web-backup-b for maintenance")
    (pending,) = o.pending_approvals(paused.thread_id)
    assert pending == paused.pending_approvals[0]
    with pytest.raises(RequestError, match="no pending approval named nope"):
        o.resume(paused.thread_id, {"nope": ApprovalDecision(approved=True)})
    done = o.resume(paused.thread_id, {pending.key: ApprovalDecision(True, reason="CR-9")},
                    approver="dana")
    assert done.ok
    assert db.execute("SELECT pool FROM routes WHERE service = 'web-2'").fetchone()[0] == \
        "web-backup-b"
    (decided,) = [e.data for e in done.events if e.type == "approval_decided"]
    assert (decided["approved"], decided["reason"], decided["approver"], decided["key"]) == (
        True, "CR-9", "dana", pending.key)


def test_a_decision_keeps_its_own_approver_unless_the_caller_names_one(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    """Seen in review: an ApprovalDecision's approver and time were dropped ("unknown")."""
    from orchestrator import ApprovalDecision

    o = make(it_ops_agents(), domain_db, tmp_path)
    first = o.run("move web-2 traffic to web-backup-b for maintenance")
    done = o.resume(first.thread_id, ApprovalDecision(True, reason="window", approver="alice",
                                                      decided_at=123.0))
    (decided,) = [e.data for e in done.events if e.type == "approval_decided"]
    assert (decided["approver"], decided["decided_at"], decided["reason"]) == (
        "alice", 123.0, "window")

    second = o.run("move web-1 traffic to web-backup-b for maintenance")
    (pending,) = second.pending_approvals
    with pytest.raises(RequestError, match="'approver' must be text"):
        o.resume(second.thread_id, {"approved": True, "approver": 7})
    as_dict = ApprovalDecision(True, approver="mallory").to_dict()  # its to_dict() is a decision
    done = o.resume(second.thread_id, {pending.key: as_dict}, approver="carol")
    (decided,) = [e.data for e in done.events if e.type == "approval_decided"]
    assert decided["approver"] == "carol"  # the caller's approver wins (a server's key owner)
    assert db.execute("SELECT pool FROM routes WHERE service = 'web-1'").fetchone()[0] == \
        "web-backup-b"
