"""Approvals at the API and the CLI: strict decisions checked before anything is claimed,
the approver on record, and what a person approves shown complete and sanitised."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from rich.console import Console

from agents.it_ops import it_ops_agents
from orchestrator import Orchestrator
from orchestrator.cli.view import approval_details, print_answer, safe_text
from orchestrator.errors import RequestError
from orchestrator.runs import RunStore
from tests.support.processes import crash_env, run_on_terminal

HOSTILE = "web-2\x1b[2J\x1b]0;owned\x07 [/bold][red]HIDDEN\rTEXT\u202eevil\x08"


def route(db: Path, service: str) -> str:
    return str(sqlite3.connect(db).execute("SELECT pool FROM routes WHERE service = ?",
                                           (service,)).fetchone()[0])


@pytest.mark.parametrize("decision", ["false", 1, None, {"approved": "false"},
                                      {"reroute": "yes"}, {"approved": True, "who": "me"}])
def test_a_decision_that_is_not_strict_is_refused_before_the_run_is_claimed(
        domain_db: Path, tmp_path: Path, decision: object) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, runs=store,
                        checkpointer=tmp_path / "c.sqlite")
    paused = orch.run("planned failover for web-2")
    assert paused.status == "paused"
    with pytest.raises(RequestError):
        orch.resume(paused.thread_id, decision)  # type: ignore[arg-type]
    assert store.run(paused.run_id)["status"] == "paused"  # not claimed, not resuming
    assert route(domain_db, "web-2") == "web-primary"

    done = orch.resume(paused.thread_id, False, reason="change freeze", approver="bob")
    assert route(domain_db, "web-2") == "web-primary"
    decided = [e for e in done.events if e.type == "approval_decided"]
    assert decided and all(e.data["approver"] == "bob" and e.data["approved"] is False
                           and e.data["reason"] == "change freeze" for e in decided)


def test_the_cli_records_who_approved(orchestrator_home: Path) -> None:
    from tests.support.processes import run_cli

    env = crash_env()
    paused = json.loads(run_cli("run", "planned failover for web-2", "--json", env=env).stdout)
    done = run_cli("approve", paused["thread_id"], "--as", "carol", "--reason", "CR-9",
                   "--json", env=env)
    assert done.returncode == 0, done.stderr
    events = RunStore(orchestrator_home / "runs.sqlite").events(paused["run_id"])
    decided = [e.data for e in events if e.type == "approval_decided"]
    assert [(d["approver"], d["reason"], d["approved"]) for d in decided] == [
        ("carol", "CR-9", True)]


def test_what_is_shown_for_approval_is_complete_and_sanitised() -> None:
    step = {"key": "t1:refund_order:ab", "subtask_id": "t1", "agent": "billing[/bold]",
            "goal": f"Refund {HOSTILE}", "tool": "refund_order",
            "args": {"order": "o-1", "note": HOSTILE}, "why": "[bold]over $100[/bold]",
            "preview": "refund $299.00 to card ending 4242\x1b[8m (hidden)"}
    console = Console(record=True, width=160, force_terminal=True)
    console.print(approval_details(step))  # markup in the data must not crash the prompt
    raw = console.export_text(styles=True, clear=False)
    shown = console.export_text()
    for text in ("refund_order", "billing[/bold]", "[bold]over $100[/bold]",
                 "refund $299.00 to card ending 4242 (hidden)", '"order": "o-1"',
                 "[/bold][red]HIDDENTEXT", r"\u001b[2J", r"\u202e"):
        assert text in shown, text
    assert "\x1b[2J" not in raw and "\x1b]0;" not in raw and "\x1b[8m" not in raw
    assert "\r" not in raw and "\u202e" not in raw

    assert safe_text(HOSTILE, one_line=True) == "web-2 [/bold][red]HIDDENTEXTevil"


def test_hostile_text_prints_in_the_answer_runs_and_trace(domain_db: Path,
                                                          tmp_path: Path) -> None:
    from orchestrator.cli.trace import runs_table, trace_view

    store = RunStore(tmp_path / "runs.sqlite")
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, runs=store,
                        checkpointer=tmp_path / "c.sqlite")
    paused = orch.fire_event("maintenance_failover", {"service": HOSTILE})
    assert paused.status == "paused"
    console = Console(record=True, width=200, force_terminal=True)
    print_answer(console, paused)
    console.print(runs_table(store.list_runs()))
    console.print(trace_view(store.run(paused.run_id), store.events(paused.run_id)))
    shown = console.export_text(styles=True, clear=False)
    assert "\x1b[2J" not in shown and "\x1b]0;" not in shown
    assert "[/bold][red]HIDDEN" in console.export_text()


def test_the_terminal_prompt_survives_hostile_event_data(orchestrator_home: Path) -> None:
    args = ["event", "maintenance_failover", "--data", json.dumps({"service": HOSTILE})]
    code, out = run_on_terminal(args, [(b"[y/N]", b"n\n"), (b"Reason", b"looks odd\n")],
                                env=crash_env())
    text = out.decode(errors="replace")
    assert "Traceback" not in text and "MarkupError" not in text, text[-1500:]
    assert "approval needed" in text and "[/bold][red]HIDDEN" in text
    assert b"\x1b[2J" not in out and b"\x1b]0;owned" not in out
    assert code == 1, text[-800:]  # denied: the run did not do everything
    assert "looks odd" in text
    assert route(orchestrator_home / "domain.sqlite", "web-2") == "web-primary"
