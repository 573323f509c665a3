"""The coordination commands as a user runs them: event, approve, runs, trace, stats."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.test_cli import cli


def test_event_fires_the_playbook_and_runs_and_trace_show_it(orchestrator_home: Path) -> None:
    proc = cli("event", "service_down", "--data", '{"service": "web-3"}', "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["mode"] == "playbook:service_down" and out["status"] == "ok"
    db = sqlite3.connect(orchestrator_home / "domain.sqlite")
    assert db.execute("SELECT count(*) FROM alerts WHERE service = 'web-3'").fetchone()[0] == 1

    listed = json.loads(cli("runs", "--json").stdout)
    assert listed[0]["run_id"] == out["run_id"] and listed[0]["mode"] == "playbook:service_down"

    shown = cli("trace", out["run_id"][:10])
    assert shown.returncode == 0, shown.stderr
    for text in ("plan", "diagnose", "reroute", "alert", "log", "timeline", "waited",
                 "(also needs reroute)", "playbook:service_down"):
        assert text in shown.stdout, text
    traced = json.loads(cli("trace", out["run_id"], "--json").stdout)
    spans = {s["id"]: s for s in traced["subtasks"]}
    assert set(spans) == {"diagnose", "reroute", "alert", "log"}
    # the alert waited for both the root cause and the reroute
    assert spans["alert"]["started_at"] >= max(spans["diagnose"]["finished_at"],
                                               spans["reroute"]["finished_at"])
    assert all(s["tokens"] > 0 for s in spans.values())

    stats = json.loads(cli("agents", "--stats", "--json").stdout)
    assert {s["agent"] for s in stats} == {"diagnostics", "traffic", "notifications",
                                           "incident_log"}
    assert all(s["success_rate"] == 1.0 and s["runs"] == 1 for s in stats)
    table = cli("agents", "--stats").stdout
    assert "success" in table and "p95" in table


def test_a_paused_run_is_approved_from_another_process(orchestrator_home: Path) -> None:
    paused = json.loads(cli("run", "planned failover for web-2", "--json").stdout)
    assert paused["status"] == "paused"
    assert [p["subtask_id"] for p in paused["pending_approvals"]] == ["reroute"]
    db = sqlite3.connect(orchestrator_home / "domain.sqlite")
    assert db.execute("SELECT pool FROM routes WHERE service='web-2'").fetchone()[0] == \
        "web-primary"

    proc = cli("approve", paused["thread_id"], "--reason", "CR-7", "--json")
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout)
    assert done["status"] == "ok" and done["run_id"] == paused["run_id"]
    assert db.execute("SELECT pool FROM routes WHERE service='web-2'").fetchone()[0] != \
        "web-primary"


def test_denying_from_the_cli_leaves_the_route(orchestrator_home: Path) -> None:
    paused = json.loads(cli("run", "planned failover for web-2", "--json").stdout)
    typo = cli("approve", paused["thread_id"], "--step", "reroot")
    assert typo.returncode == 2 and "no pending approval named reroot" in typo.stderr
    assert "waiting: reroute" in typo.stderr
    proc = cli("approve", paused["thread_id"], "--deny", "--reason", "freeze week")
    assert proc.returncode == 1  # the run did not do everything
    assert "freeze week" in proc.stdout
    db = sqlite3.connect(orchestrator_home / "domain.sqlite")
    assert db.execute("SELECT pool FROM routes WHERE service='web-2'").fetchone()[0] == \
        "web-primary"


def test_coordination_user_mistakes_are_one_line_errors() -> None:
    bad_json = cli("event", "service_down", "--data", "{service: web-3}")
    assert bad_json.returncode == 2 and "--data is not valid JSON" in bad_json.stderr
    assert "Traceback" not in bad_json.stderr
    not_object = cli("event", "service_down", "--data", "[1]")
    assert not_object.returncode == 2 and "must be a JSON object" in not_object.stderr
    unknown = cli("trace", "nope")
    assert unknown.returncode == 2 and "no run 'nope'" in unknown.stderr
    assert cli("run", "check the health of web-2").returncode == 0
    wildcard = cli("trace", "_")  # not a pattern: no run id starts with '_'
    assert wildcard.returncode == 2 and "no run '_'" in wildcard.stderr
    nothing = cli("approve", "no-such-thread")
    assert nothing.returncode == 2 and "no paused run" in nothing.stderr
    mode = cli("run", "check web-2", "--coordination", "chaos")
    assert mode.returncode == 2 and "ORCHESTRATOR_COORDINATION" in mode.stderr
    rules = cli("run", "check the health of web-2", "--coordination", "rules", "--json")
    assert rules.returncode == 1
    assert "no playbook handles this request" in json.loads(rules.stdout)["error"]


def test_the_cli_asks_for_the_approval_on_a_terminal(orchestrator_home: Path) -> None:
    import os

    from tests.support.processes import run_on_terminal

    env = {**os.environ, "ORCHESTRATOR_KNOWLEDGE": "0", "COLUMNS": "120"}
    code, out = run_on_terminal(["run", "release transaction tx-1010"],
                                [(b"[y/N]", b"y\n"), (b"Reason", b"client called\n")], env)
    text = out.decode(errors="replace")
    assert "Approve t1 (transaction_monitoring)" in text
    assert code == 0, text[-800:]
    assert "Transaction tx-1010 released." in text
    db = sqlite3.connect(orchestrator_home / "domain.sqlite")
    assert db.execute("SELECT status FROM transactions WHERE id = 'tx-1010'").fetchone()[0] == \
        "released"
