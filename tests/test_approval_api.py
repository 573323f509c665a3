"""Approvals at the API and the CLI: strict decisions checked before anything is claimed,
the approver on record, and what a person approves shown complete and sanitised."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.approvals import ApprovalRequest
from orchestrator.cli.view import approval_details, print_answer, safe_text
from orchestrator.errors import RequestError
from orchestrator.runs import RunStore
from orchestrator.traces import Trace
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
    step = ApprovalRequest(key="t1:refund_order:ab", subtask_id="t1", agent="billing[/bold]",
                           goal=f"Refund {HOSTILE}", tool="refund_order",
                           args={"order": "o-1", "note": HOSTILE}, why="[bold]over $100[/bold]",
                           preview="refund $299.00 to card ending 4242\x1b[8m (hidden)")
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
    console.print(trace_view(Trace.build(store.run(paused.run_id), store.events(paused.run_id))))
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


# --- the non-interactive CLI shows what it approves ----------------------------------------

FAILOVERS = {"double": "", "staged": "    depends_on: [first]\n"}
"""Two reroutes of healthy services (each needs an approval): at once, or one after the
other (the second pauses only once the first has run). The pool is named in the goals: the
fake model would otherwise take one from the first step's output."""


def failover_env(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    for name, depends in FAILOVERS.items():
        (folder / f"{name}.yaml").write_text(
            f"name: {name}_failover\ndescription: Move two services to their backup pools.\n"
            f"trigger:\n  pattern: \"\\\\b{name} failover for (?P<service>[a-z]+-\\\\d+) "
            "and (?P<other>[a-z]+-\\\\d+)\"\ninputs: [service, other]\nsteps:\n"
            "  - id: first\n    agent: traffic\n"
            "    goal: \"Reroute {service} traffic to the backup pool web-backup-b\"\n"
            "  - id: second\n    agent: traffic\n"
            f"    goal: \"Reroute {{other}} traffic to the backup pool web-backup-b\"\n{depends}")
    return crash_env(ORCHESTRATOR_PLAYBOOKS_DIR=str(folder))


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI with no terminal on stdin (a script, a CI job): it never prompts."""
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], text=True,
                          capture_output=True, env=env, timeout=120, stdin=subprocess.DEVNULL)


def shown(out: str) -> str:
    """What the terminal showed, with the panels' borders and line breaks taken out."""
    return " ".join(out.replace("│", " ").split())


def only_pending(env: dict[str, str], request: str) -> tuple[str, list[dict[str, object]]]:
    paused = json.loads(cli("run", request, "--json", env=env).stdout)
    assert paused["status"] == "paused"
    return paused["thread_id"], paused["pending_approvals"]


def test_the_paused_panel_shows_each_call_and_approve_shows_what_it_decides(
        orchestrator_home: Path) -> None:
    env = crash_env()
    ran = cli("run", "planned failover for web-1", env=env)
    assert ran.returncode == 1, ran.stderr
    text = shown(ran.stdout)
    thread = ran.stdout.split("orchestrator approve ")[1].split()[0]
    # the paused panel: the call's key, tool, full arguments and the effect it previews
    for part in ("reroute_traffic", '"service": "web-1"',
                 "web-1 traffic: web-primary -> web-backup-b",
                 "web-1 is up: moving a healthy service's traffic needs an approval"):
        assert part in text, part
    assert "reroute:reroute_traffic:" in text
    assert route(orchestrator_home / "domain.sqlite", "web-1") == "web-primary"

    approved = cli("approve", thread, "--as", "erin", env=env)
    assert approved.returncode == 0, approved.stderr
    text = shown(approved.stdout)
    deciding, answer = text.split("answer", 1)
    for part in ("approve", "reroute:reroute_traffic:", "reroute_traffic",
                 '"service": "web-1"', "web-1 traffic: web-primary -> web-backup-b",
                 "web-1 is up: moving a healthy service's traffic needs an approval"):
        assert part in deciding, part  # shown before it is applied
    assert "Rerouted web-1 traffic from web-primary to web-backup-b" in answer
    assert route(orchestrator_home / "domain.sqlite", "web-1") == "web-backup-b"


def test_approve_key_decides_only_the_named_calls_and_denies_the_rest(
        orchestrator_home: Path, tmp_path: Path) -> None:
    env = failover_env(tmp_path)
    thread, pending = only_pending(env, "double failover for web-1 and web-2")
    keys = {p["args"]["service"]: str(p["key"]) for p in pending}  # type: ignore[index]
    assert sorted(keys) == ["web-1", "web-2"]

    unknown = cli("approve", thread, "--key", "first:nope", env=env)
    assert unknown.returncode == 2
    (line,) = [x for x in unknown.stderr.splitlines() if x.startswith("error:")]
    assert "first:nope" in line and keys["web-1"] in line and keys["web-2"] in line
    assert route(orchestrator_home / "domain.sqlite", "web-1") == "web-primary"

    decided = cli("approve", thread, "--key", keys["web-1"], "--reason", "CR-7", env=env)
    assert decided.returncode == 1, decided.stderr  # the other reroute was denied
    text = shown(decided.stdout)
    assert "not named by --key" in text and keys["web-2"] in text
    assert route(orchestrator_home / "domain.sqlite", "web-1") == "web-backup-b"
    assert route(orchestrator_home / "domain.sqlite", "web-2") == "web-primary"
    run_id = RunStore(orchestrator_home / "runs.sqlite").list_runs()[0].run_id
    events = RunStore(orchestrator_home / "runs.sqlite").events(run_id)
    assert sorted((e.data["key"], e.data["approved"]) for e in events
                  if e.type == "approval_decided") == sorted(
        [(keys["web-1"], True), (keys["web-2"], False)])


def test_a_decision_never_covers_a_call_that_asks_later(orchestrator_home: Path,
                                                        tmp_path: Path) -> None:
    env = failover_env(tmp_path)
    thread, pending = only_pending(env, "staged failover for web-1 and web-2")
    assert [p["args"] for p in pending] == [{"service": "web-1",
                                             "backup_pool": "web-backup-b"}]

    first = cli("approve", thread, env=env)
    # web-1 moved; then the run paused again, for web-2: shown, not approved
    assert first.returncode == 1, first.stderr
    deciding, after = shown(first.stdout).split("paused", 1)
    assert '"service": "web-1"' in deciding and "web-2" not in deciding
    assert '"service": "web-2"' in after and "web-2 traffic: web-primary -> web-backup-b" in after
    assert route(orchestrator_home / "domain.sqlite", "web-1") == "web-backup-b"
    assert route(orchestrator_home / "domain.sqlite", "web-2") == "web-primary"

    second = cli("approve", thread, "--deny", "--reason", "one is enough", env=env)
    assert second.returncode == 1, second.stderr
    assert route(orchestrator_home / "domain.sqlite", "web-2") == "web-primary"


def test_a_keyed_decision_on_calls_no_longer_pending_is_refused(domain_db: Path,
                                                                 tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, runs=store,
                        checkpointer=tmp_path / "c.sqlite")
    paused = orch.run("planned failover for web-2")
    (shown_key,) = [p.key for p in orch.pending_approvals(paused.thread_id)]
    assert shown_key == paused.pending_approvals[0].key
    orch.resume(paused.thread_id, {shown_key: False})
    with pytest.raises(RequestError, match="no paused run"):
        orch.resume(paused.thread_id, {shown_key: True})
    assert orch.pending_approvals(paused.thread_id) == []
