"""Nothing lost on a crash: kill -9 and SIGTERM mid-run, then resume, with real processes.

The crash drill (tests/fixtures/crash) pages the on-call (``alert``), then runs a tool that
pages the drill channel and holds (``hold``): the test stops the process while it holds, so
one write is done and checkpointed, one is done inside a subtask that never finished.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.errors import RequestError
from orchestrator.runs import HOST, Owner, RunStore
from tests.support.processes import (
    crash_env,
    dead_pid,
    make_gate,
    run_cli,
    start_cli,
    wait_for_marker,
)

DRILL = ("event", "crash_drill", "--data", '{"service": "web-3"}', "--json")


def alerts(home: Path) -> dict[str, int]:
    """Alerts on web-3 by team: the on-call page (web-platform) and the drill's (drill)."""
    db = sqlite3.connect(home / "domain.sqlite")
    rows = db.execute("SELECT team, count(*) FROM alerts WHERE service = 'web-3' "
                      "GROUP BY team").fetchall()
    return dict(rows)


def stored(home: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return sqlite3.connect(home / "runs.sqlite").execute(sql, args).fetchall()


def crash_at_hold(home: Path, tmp_path: Path, *args: str, how: int = signal.SIGKILL
                  ) -> tuple[int, str]:
    """Start the drill, stop the process while its second subtask holds; exit code, stderr."""
    gate = make_gate(tmp_path / "gate")
    proc = start_cli(*(args or DRILL), env=crash_env(gate))
    wait_for_marker(gate / "reached", proc)
    os.kill(proc.pid, how)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_kill_9_mid_run_leaves_the_record_and_resume_finishes_each_write_once(
        orchestrator_home: Path, tmp_path: Path) -> None:
    code, _ = crash_at_hold(orchestrator_home, tmp_path)
    assert code == -signal.SIGKILL

    # On record although nothing was saved at the end: the run, its plan, the tool calls.
    listed = json.loads(run_cli("runs", "--json", env=crash_env()).stdout)
    (run,) = listed
    assert run["status"] == "interrupted" and run["mode"] == "playbook:crash_drill"
    run_id = run["run_id"]
    types = [t for (t,) in stored(orchestrator_home, "SELECT type FROM events WHERE run_id = ? "
                                  "ORDER BY seq", run_id)]
    assert types[:2] == ["run_started", "plan_made"]
    assert "answer" not in types
    called = stored(orchestrator_home, "SELECT subtask_id, data FROM events WHERE run_id = ? "
                    "AND type = 'tool_called'", run_id)
    assert [(s, json.loads(d)["tool"]) for s, d in called] == [("alert", "alert_oncall")]
    # the write cut off mid-call is on record too: it was announced before it ran
    started = stored(orchestrator_home, "SELECT subtask_id, data FROM events WHERE run_id = ? "
                     "AND type = 'tool_started'", run_id)
    assert [(s, json.loads(d)["tool"]) for s, d in started] == [
        ("alert", "alert_oncall"), ("hold", "page_and_hold")]
    (plan,) = stored(orchestrator_home, "SELECT plan FROM runs WHERE run_id = ?", run_id)[0]
    assert [s["id"] for s in json.loads(plan)["subtasks"]] == ["alert", "hold"]
    assert alerts(orchestrator_home) == {"web-platform": 1, "drill": 1}  # both writes ran

    resumed = run_cli("resume", run_id[:10], "--json", env=crash_env())
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    done = json.loads(resumed.stdout)
    assert done["run_id"] == run_id and done["status"] == "ok"
    assert alerts(orchestrator_home) == {"web-platform": 1, "drill": 1}  # each write once
    # The finished subtask was not redone; the cut-off one ran again and its write, which
    # had happened, returned its earlier result instead of paging twice.
    calls = stored(orchestrator_home, "SELECT subtask_id, data FROM events WHERE run_id = ? "
                   "AND type = 'tool_called' ORDER BY seq", run_id)
    assert [(s, json.loads(d)["tool"], json.loads(d).get("replayed", False))
            for s, d in calls] == [("alert", "alert_oncall", False),
                                   ("hold", "page_and_hold", True)]
    # Statistics: each finished attempt counted once.
    attempts = stored(orchestrator_home, "SELECT subtask_id, count(*) FROM attempts WHERE "
                      "run_id = ? GROUP BY subtask_id", run_id)
    assert dict(attempts) == {"alert": 1, "hold": 1}
    again = json.loads(run_cli("runs", "--json", env=crash_env()).stdout)
    assert [(r["run_id"], r["status"]) for r in again] == [(run_id, "ok")]
    nothing = run_cli("resume", run_id, env=crash_env())
    assert nothing.returncode == 2 and "has finished (ok)" in nothing.stderr


def test_sigterm_stops_the_run_like_ctrl_c_and_says_how_to_resume(
        orchestrator_home: Path, tmp_path: Path) -> None:
    code, err = crash_at_hold(orchestrator_home, tmp_path, how=signal.SIGTERM)
    assert code == 143, err
    (line,) = [x for x in err.splitlines() if "interrupted" in x]
    run_id = line.rsplit(" ", 1)[-1]
    assert f"orchestrator resume {run_id}" in line
    # Written by the stopping process itself, not inferred from a dead owner.
    assert stored(orchestrator_home, "SELECT status, owner FROM runs") == [
        ("interrupted", None)]
    assert stored(orchestrator_home, "SELECT count(*) FROM thread_leases") == [(0,)]

    resumed = run_cli("resume", run_id, "--json", env=crash_env())
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "ok"
    assert alerts(orchestrator_home) == {"web-platform": 1, "drill": 1}


def test_sending_the_same_request_id_after_a_crash_does_not_repeat_side_effects(
        orchestrator_home: Path, tmp_path: Path) -> None:
    command = (*DRILL, "--request-id", "drill-42")
    crash_at_hold(orchestrator_home, tmp_path, *command)
    (first,) = stored(orchestrator_home, "SELECT run_id FROM runs")

    again = run_cli(*command, env=crash_env())  # "send it again": it resumes that run
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["run_id"] == first[0] and result["status"] == "ok"
    assert alerts(orchestrator_home) == {"web-platform": 1, "drill": 1}

    third = run_cli(*command, env=crash_env())  # finished: the stored result, no new work
    assert json.loads(third.stdout)["run_id"] == first[0]
    assert json.loads(third.stdout)["answer"] == result["answer"]
    assert stored(orchestrator_home, "SELECT count(*) FROM runs") == [(1,)]
    assert alerts(orchestrator_home) == {"web-platform": 1, "drill": 1}

    other = run_cli("event", "crash_drill", "--data", '{"service": "web-4"}',
                    "--request-id", "drill-42", env=crash_env())
    assert other.returncode == 2 and "was used for another request" in other.stderr


def test_a_crash_while_resuming_an_approval_does_not_block_the_run(
        orchestrator_home: Path) -> None:
    env = crash_env()
    paused = json.loads(run_cli("run", "planned failover for web-2", "--json", env=env).stdout)
    assert paused["status"] == "paused"
    run_id, thread = paused["run_id"], paused["thread_id"]

    # The approver's process dies once the approved reroute has written and its agent is
    # writing its report (a slow model). Killing it at the start of the subtask instead
    # could land inside the write, whose outcome is then rightly unknown.
    proc = start_cli("approve", thread, "--as", "alice", "--model", "fake:latency=60",
                     env=env)
    wait_for_event(orchestrator_home / "runs.sqlite", run_id, "tool_called", "reroute",
                   proc, tool="reroute_traffic", status="ok")
    proc.kill()
    proc.wait()

    listed = json.loads(run_cli("runs", "--json", env=env).stdout)
    assert listed[0]["status"] == "interrupted"  # not 'resuming' forever
    approve = run_cli("approve", thread, env=env)
    assert approve.returncode == 2
    assert f"was interrupted; continue it with `orchestrator resume {run_id[:12]}`" in \
        approve.stderr
    resumed = run_cli("resume", run_id, "--json", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    done = json.loads(resumed.stdout)
    assert done["status"] == "ok"
    db = sqlite3.connect(orchestrator_home / "domain.sqlite")
    assert db.execute("SELECT pool FROM routes WHERE service = 'web-2'").fetchone()[0] != \
        "web-primary"
    assert db.execute("SELECT count(*) FROM incidents WHERE service = 'web-2'"
                      ).fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM write_ledger WHERE tool = 'reroute_traffic'"
                      ).fetchone()[0] == 1  # the write before the crash was not run again
    decided = stored(orchestrator_home, "SELECT data FROM events WHERE run_id = ? AND type = "
                     "'approval_decided'", run_id)
    assert [json.loads(d)["approver"] for (d,) in decided] == ["alice"]


def wait_for_event(runs_db: Path, run_id: str, kind: str, subtask: str,
                   proc: subprocess.Popen[str], **data: Any) -> None:
    """Wait until the child has stored this event (the row is the marker it writes)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            rows = sqlite3.connect(runs_db).execute(
                "SELECT data FROM events WHERE run_id = ? AND type = ? AND subtask_id = ?",
                (run_id, kind, subtask)).fetchall()
            if any(data.items() <= json.loads(d).items() for (d,) in rows):
                return
        except sqlite3.OperationalError:  # the child is creating the store
            pass
        time.sleep(0.02)  # polling the child's record, not timing it
    pytest.fail(f"no {kind} event for {subtask} (exit code {proc.poll()})")


def test_resume_refuses_runs_that_are_not_interrupted(orchestrator_home: Path) -> None:
    env = crash_env()
    paused = json.loads(run_cli("run", "planned failover for web-2", "--json", env=env).stdout)
    waiting = run_cli("resume", paused["run_id"], env=env)
    assert waiting.returncode == 2
    assert f"waiting for approval, not interrupted: orchestrator approve " \
           f"{paused['thread_id']}" in waiting.stderr
    unknown = run_cli("resume", "feedbeef", env=env)
    assert unknown.returncode == 2 and "no run 'feedbeef'" in unknown.stderr


def api(domain_db: Path, tmp_path: Path) -> tuple[Orchestrator, RunStore]:
    store = RunStore(tmp_path / "runs.sqlite")
    return Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, runs=store,
                        checkpointer=tmp_path / "c.sqlite"), store


def test_resume_run_starts_again_a_run_stopped_before_its_first_checkpoint(
        domain_db: Path, tmp_path: Path) -> None:
    orch, store = api(domain_db, tmp_path)
    gone = Owner("crashed", dead_pid(), HOST)  # it recorded the run, then died
    store.start_run("r-early", "t-early", "page the on-call engineer for web-3: disk full",
                    owner=gone, lease_s=60)
    assert store.run("r-early")["status"] == "interrupted"

    done = orch.resume_run("r-early")
    assert done.run_id == "r-early" and done.status == "ok", done.answer
    assert store.run("r-early")["status"] == "ok"
    db = sqlite3.connect(domain_db)
    assert db.execute("SELECT count(*) FROM alerts WHERE service = 'web-3'").fetchone()[0] == 1

    # A thread that went on without it: that run cannot be resumed any more.
    store.start_run("r-old", "t-early", "check web-1", owner=gone, lease_s=60)
    with sqlite3.connect(tmp_path / "runs.sqlite") as conn:
        conn.execute("UPDATE runs SET started_at = 0 WHERE run_id = 'r-old'")
    with pytest.raises(RequestError, match="its thread 't-early' went on with run r-early"):
        orch.resume_run("r-old")


def test_resume_run_of_a_run_that_finished_before_its_record_only_writes_the_record(
        domain_db: Path, tmp_path: Path) -> None:
    orch, store = api(domain_db, tmp_path)
    result = orch.run("check the health of web-2")
    with sqlite3.connect(tmp_path / "runs.sqlite") as conn:  # as if killed before the end
        conn.execute("UPDATE runs SET status = 'running', owner = 'x', pid = ?, host = ?, "
                     "lease_until = 1e12", (dead_pid(), HOST))
    events = len(store.events(result.run_id))
    done = orch.resume_run(result.run_id[:8])
    assert done.status == "ok" and done.answer == result.answer
    assert len(store.events(result.run_id)) == events  # nothing ran again
    assert store.run(result.run_id)["status"] == "ok"


def test_a_crash_before_a_decision_was_applied_leaves_the_run_paused(
        domain_db: Path, tmp_path: Path) -> None:
    orch, store = api(domain_db, tmp_path)
    paused = orch.run("planned failover for web-2")
    approver = Owner("approver", dead_pid(), HOST)  # claimed it, then died at once
    assert store.claim_paused(paused.run_id, approver, lease_s=60)
    assert store.run(paused.run_id)["status"] == "interrupted"

    again = orch.resume_run(paused.run_id)  # the decision was lost: it waits for one again
    assert again.status == "paused" and again.pending_approvals
    assert store.run(paused.run_id)["status"] == "paused"
    done = orch.resume(paused.thread_id, True, approver="dana")
    assert done.status == "ok", done.answer
