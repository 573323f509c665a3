"""Runs on Temporal, with real processes: a dev server, `orchestrator worker` processes, CLI
clients and server replicas sharing the stores of one data folder (SQLite) or of one
PostgreSQL database (the handover and the replicas tests).

The crash drill (tests/fixtures/crash) pages the on-call, then runs a tool that pages the
drill channel and holds at a gate: a worker killed there has done both writes and not
finished the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError

from orchestrator.domain_db import open_domain_db
from orchestrator.leases import HOST, Owner
from orchestrator.storage import open_run_store
from orchestrator.temporal.types import Decision, Verdict
from tests.support.processes import crash_env, make_gate, run_cli, start_cli, wait_for_marker
from tests.support.temporal import DevServer

DRILL = ("event", "crash_drill", "--data", '{"service": "web-3"}', "--json")


@pytest.fixture
def env(temporal_server: DevServer) -> dict[str, str]:
    """The environment of this test's workers and clients: its own task queue, runs on
    Temporal, and a heartbeat timeout of 2 s (a killed worker is noticed after that)."""
    return crash_env(ORCHESTRATOR_TEMPORAL_ADDRESS=temporal_server.address,
                     ORCHESTRATOR_TEMPORAL_TASK_QUEUE=f"test-{uuid.uuid4().hex[:12]}",
                     ORCHESTRATOR_TEMPORAL_HEARTBEAT_S="2", ORCHESTRATOR_RUNS="temporal")


class Workers:
    """`orchestrator worker` processes of one test (those still running are killed at its
    end)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, gate: Path | None = None) -> subprocess.Popen[str]:
        env = crash_env(gate, **{k: v for k, v in self.env.items()
                                 if k.startswith(("ORCHESTRATOR_TEMPORAL",
                                                  "ORCHESTRATOR_DATABASE_URL"))})
        proc = start_cli("worker", env=env)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str]) -> tuple[int, str]:
        """SIGTERM: the worker stops cleanly (exit 0)."""
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err


@pytest.fixture
def workers(env: dict[str, str]) -> Iterator[Workers]:
    pool = Workers(env)
    yield pool
    for proc in pool.procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def alerts(home: Path) -> dict[str, int]:
    db = sqlite3.connect(home / "domain.sqlite")
    return dict(db.execute("SELECT team, count(*) FROM alerts WHERE service = 'web-3' "
                           "GROUP BY team").fetchall())


def stored(home: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return sqlite3.connect(home / "runs.sqlite").execute(sql, args).fetchall()


def events(home: Path, run_id: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    return [(t, s, json.loads(d)) for t, s, d in stored(
        home, "SELECT type, subtask_id, data FROM events WHERE run_id = ? ORDER BY seq", run_id)]


def finished_runs(home: Path) -> int:
    if not (home / "runs.sqlite").exists():
        return 0
    return len(stored(home, "SELECT 1 FROM runs WHERE status = 'ok'"))


def describe(server: DevServer, workflow_id: str) -> Any:
    async def go() -> Any:
        client = await Client.connect(server.address)
        return await client.get_workflow_handle(workflow_id).describe()

    return asyncio.run(go())


def test_a_request_runs_on_a_worker_and_its_record_is_in_the_shared_stores(
        env: dict[str, str], workers: Workers, orchestrator_home: Path,
        temporal_server: DevServer) -> None:
    worker = workers.start()
    done = run_cli("run", "crash drill for web-3", "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "ok" and result["mode"] == "playbook:crash_drill"
    assert alerts(orchestrator_home) == {"web-platform": 1, "drill": 1}
    # Run by the worker, not the client: its record names the worker's process; the run's
    # request id is the workflow's id.
    ((run_id, status, pid, request_id),) = stored(
        orchestrator_home, "SELECT run_id, status, pid, request_id FROM runs")
    assert (run_id, status, pid) == (result["run_id"], "ok", worker.pid)
    assert request_id.startswith("run-")
    types = [t for t, _, _ in events(orchestrator_home, run_id)]
    assert types[:2] == ["run_started", "plan_made"] and types[-1] == "answer"
    assert describe(temporal_server, request_id).status == WorkflowExecutionStatus.COMPLETED
    # A request the worker refuses is one line, and is not retried.
    refused = run_cli("event", "no_such_event", env=env)
    assert refused.returncode == 2 and "unknown event 'no_such_event'" in refused.stderr
    code, err = workers.stop(worker)
    assert code == 0 and "worker stopped" in err, err


def test_a_worker_killed_mid_run_hands_the_run_to_another_which_writes_nothing_twice(
        env: dict[str, str], workers: Workers, orchestrator_home: Path, tmp_path: Path,
        postgres_url: str) -> None:
    # Every store in PostgreSQL, as for workers on several machines: checkpoints, the run
    # store, the write journal and the business database.
    env["ORCHESTRATOR_DATABASE_URL"] = workers.env["ORCHESTRATOR_DATABASE_URL"] = postgres_url
    gate = make_gate(tmp_path / "gate")
    first = workers.start(gate)
    client = start_cli(*DRILL, "--request-id", "drill-handover", env=env)
    wait_for_marker(gate / "reached", first)  # both pages sent, the run not finished
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    second = workers.start()

    out, err = client.communicate(timeout=90)
    assert client.returncode == 0, err
    result = json.loads(out)
    assert result["status"] == "ok"
    business = open_domain_db(postgres_url)
    assert dict(business.execute("SELECT team, count(*) FROM alerts WHERE service = 'web-3' "
                                 "GROUP BY team").fetchall()) == {"web-platform": 1, "drill": 1}
    runs = open_run_store(postgres_url)
    seen = [(e.type, e.subtask_id, dict(e.data)) for e in runs.events(result["run_id"])]
    (handover,) = [data for t, _, data in seen if t == "run_handed_over"]
    assert handover == {"from_worker": f"{first.pid}@{HOST}",
                        "to_worker": f"{second.pid}@{HOST}", "attempt": 2}
    # The second worker went on from the checkpoint: the held page returned its earlier
    # result instead of paging again, and the on-call page was not sent again.
    calls = [(s, d["tool"], d.get("replayed", False)) for t, s, d in seen if t == "tool_called"]
    assert calls == [("alert", "alert_oncall", False), ("hold", "page_and_hold", True)]
    record = runs.run(result["run_id"])
    assert (record["status"], record["pid"]) == ("ok", second.pid)
    shown = run_cli("trace", result["run_id"], env=env)
    assert f"handed over: worker {first.pid}@{HOST} -> {second.pid}@{HOST}" in shown.stdout
    assert not list(orchestrator_home.glob("*.sqlite*"))  # nothing on this machine's disk


def test_a_worker_stopped_with_sigterm_mid_run_exits_and_another_goes_on(
        env: dict[str, str], workers: Workers, orchestrator_home: Path, tmp_path: Path) -> None:
    gate = make_gate(tmp_path / "gate")
    first = workers.start(gate)
    client = start_cli("run", "crash drill for web-3", "--json", env=env)
    wait_for_marker(gate / "reached", first)
    code, err = workers.stop(first)  # SIGTERM: the run is interrupted after --grace (5 s)
    assert code == 0 and "worker stopped" in err, err
    second = workers.start()
    out, err = client.communicate(timeout=90)
    assert client.returncode == 0, err
    result = json.loads(out)
    assert result["status"] == "ok"
    assert alerts(orchestrator_home) == {"web-platform": 1, "drill": 1}
    (handover,) = [d for t, _, d in events(orchestrator_home, result["run_id"])
                   if t == "run_handed_over"]
    assert handover == {"from_worker": f"{first.pid}@{HOST}",
                        "to_worker": f"{second.pid}@{HOST}", "attempt": 2}


def test_a_run_held_by_a_worker_on_another_host_is_taken_once_its_lease_runs_out(
        env: dict[str, str], workers: Workers, orchestrator_home: Path,
        temporal_server: DevServer) -> None:
    # A worker on another machine started the run and went silent: its process cannot be
    # seen from here, so only its lease running out frees the run.
    text = "crash drill for web-3"
    store = open_run_store(orchestrator_home / "runs.sqlite")
    gone = Owner(uuid.uuid4().hex, 4242, "elsewhere.example")
    held = uuid.uuid4().hex
    store.start_run(held, uuid.uuid4().hex, text, owner=gone, lease_s=600, request_id="moved-1")
    workers.start()
    client = start_cli("run", text, "--json", "--request-id", "moved-1", env=env)
    deadline = time.monotonic() + 60
    while not (failure := retried_because_held(temporal_server, "moved-1")):
        assert client.poll() is None and time.monotonic() < deadline, client.communicate()
        time.sleep(0.1)  # polling Temporal for the retried attempt
    assert "held by pid 4242 on elsewhere.example" in failure
    # The lease runs out (as 600 s would): the next attempt takes the run over.
    sqlite3.connect(orchestrator_home / "runs.sqlite", isolation_level=None).execute(
        "UPDATE runs SET lease_until = 0 WHERE run_id = ?", (held,))
    out, err = client.communicate(timeout=90)
    assert client.returncode == 0, err
    result = json.loads(out)
    assert result["status"] == "ok" and result["run_id"] == held
    (handover,) = [e.data for e in store.events(held) if e.type == "run_handed_over"]
    assert handover["from_worker"] == "4242@elsewhere.example" and handover["attempt"] > 1
    assert alerts(orchestrator_home) == {"web-platform": 1, "drill": 1}


def retried_because_held(server: DevServer, workflow_id: str) -> str:
    """The last failure of the workflow's activity once it is being retried, else ''."""
    try:
        pending = describe(server, workflow_id).raw_description.pending_activities
    except Exception:  # not started yet
        return ""
    if not pending or pending[0].attempt < 2:
        return ""
    return str(pending[0].last_failure.message)


def test_a_paused_run_holds_no_worker_and_takes_one_decision_from_another_process(
        env: dict[str, str], workers: Workers, orchestrator_home: Path,
        temporal_server: DevServer) -> None:
    worker = workers.start()
    paused = run_cli("run", "refund order o-1010", "--json", env=env)
    assert paused.returncode == 1, paused.stderr
    result = json.loads(paused.stdout)
    assert result["status"] == "paused" and len(result["pending_approvals"]) == 1
    ((request_id,),) = stored(orchestrator_home, "SELECT request_id FROM runs")
    waiting = describe(temporal_server, request_id)
    assert waiting.status == WorkflowExecutionStatus.RUNNING
    assert list(waiting.raw_description.pending_activities) == []  # no activity, no worker
    assert workers.stop(worker)[0] == 0  # no worker at all while it waits
    workers.start()

    # Two people decide at once from two other processes: one decision is taken.
    deciders = [start_cli("approve", result["thread_id"], "--json", "--as", who,
                          "--reason", "checked", env=env) for who in ("ana", "bob")]
    outcomes = [(p.wait(timeout=90), *p.communicate()) for p in deciders]
    assert sorted(code for code, _, _ in outcomes) == [0, 2], outcomes
    ((_, out, _),) = [o for o in outcomes if o[0] == 0]
    ((_, _, refused),) = [o for o in outcomes if o[0] == 2]
    assert "decided already" in refused or "no run waiting" in refused, refused
    assert json.loads(out)["status"] == "ok"
    db = sqlite3.connect(orchestrator_home / "domain.sqlite")
    assert db.execute("SELECT order_id, amount FROM refunds").fetchall() == [("o-1010", 299.0)]
    decided = [d for t, _, d in events(orchestrator_home, result["run_id"])
               if t == "approval_decided"]
    assert len(decided) == 1 and decided[0]["approved"] is True
    assert describe(temporal_server, request_id).status == WorkflowExecutionStatus.COMPLETED


def test_a_second_decision_while_the_first_is_applied_is_refused_by_the_workflow(
        env: dict[str, str], workers: Workers, orchestrator_home: Path, tmp_path: Path,
        temporal_server: DevServer) -> None:
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "approved_drill.yaml").write_text(json.dumps({
        "name": "approved_drill", "description": "Page the drill channel once approved.",
        "trigger": {"event": "approved_drill"}, "steps": [{
            "id": "hold", "agent": "drill", "kind": "act", "requires_approval": True,
            "goal": "Page the drill channel and hold for the web-3 crash drill"}]}))
    env["ORCHESTRATOR_PLAYBOOKS_DIR"] = str(books)
    gate = make_gate(tmp_path / "gate")
    worker = start_cli("worker", env=crash_env(gate, **env))
    workers.procs.append(worker)
    paused = json.loads(run_cli("event", "approved_drill", "--json", env=env).stdout)
    assert paused["status"] == "paused"
    first = start_cli("approve", paused["thread_id"], "--json", env=env)
    wait_for_marker(gate / "reached", worker)  # the first decision is being applied

    later = run_cli("approve", paused["thread_id"], "--json", env=env)
    assert later.returncode == 2 and "is deciding" in later.stderr, later.stderr
    ((request_id,),) = stored(orchestrator_home, "SELECT request_id FROM runs")
    key = paused["pending_approvals"][0]["key"]

    async def decide_again() -> str:
        client = await Client.connect(temporal_server.address)
        try:
            await client.get_workflow_handle(request_id).execute_update(
                "decide", Decision(verdicts={key: Verdict(False, "no")}, approver="bob"))
        except WorkflowUpdateFailedError as exc:
            return str(getattr(exc.cause, "message", exc))
        return "accepted"

    assert "decided already" in asyncio.run(decide_again())  # the validator's answer
    with open(gate / "release", "w") as release:
        release.write("go")
    out, err = first.communicate(timeout=90)
    assert first.returncode == 0, err
    assert json.loads(out)["status"] == "ok"
    assert alerts(orchestrator_home) == {"drill": 1}
    decided = [d for t, _, d in events(orchestrator_home, paused["run_id"])
               if t == "approval_decided"]
    assert [d["approved"] for d in decided] == [True]


def test_a_schedule_fires_its_event_as_a_workflow(
        env: dict[str, str], workers: Workers, orchestrator_home: Path) -> None:
    worker = workers.start()
    name = f"drill-{uuid.uuid4().hex[:8]}"
    typo = run_cli("schedule", "add", name, "--event", "crash_dril", "--every", "10m", env=env)
    assert typo.returncode == 2 and "unknown event 'crash_dril'" in typo.stderr, typo.stderr
    assert name not in {s["name"] for s in json.loads(  # refused before it reached Temporal
        run_cli("schedule", "list", "--json", env=env).stdout)}
    added = run_cli("schedule", "add", name, "--event", "crash_drill", "--data",
                    '{"service": "web-3"}', "--every", "10m", env=env)
    assert added.returncode == 0, added.stderr
    listed = json.loads(run_cli("schedule", "list", "--json", env=env).stdout)
    (mine,) = [s for s in listed if s["name"] == name]
    assert mine["event"] == "crash_drill" and mine["every_s"] == 600

    fired = run_cli("schedule", "trigger", name, env=env)
    assert fired.returncode == 0, fired.stderr
    deadline = time.monotonic() + 60
    while not finished_runs(orchestrator_home):
        assert worker.poll() is None, worker.communicate()[1][-2000:]
        assert time.monotonic() < deadline, (
            f"the scheduled run did not finish: {stored(orchestrator_home, 'SELECT * FROM runs')}"
            if (orchestrator_home / "runs.sqlite").exists() else "no run started")
        time.sleep(0.2)  # polling the shared run store for the worker's record
    ((request_id, mode),) = stored(orchestrator_home, "SELECT request_id, mode FROM runs")
    assert request_id.startswith(f"schedule-{name}-") and mode == "playbook:crash_drill"
    assert alerts(orchestrator_home) == {"web-platform": 1, "drill": 1}

    assert run_cli("schedule", "delete", name, env=env).returncode == 0
    assert name not in {s["name"] for s in json.loads(
        run_cli("schedule", "list", "--json", env=env).stdout)}
    again = run_cli("schedule", "delete", name, env=env)
    assert again.returncode == 2 and f"no schedule named {name!r}" in again.stderr


def test_an_unreachable_temporal_is_one_line(env: dict[str, str]) -> None:
    down = {**env, "ORCHESTRATOR_TEMPORAL_ADDRESS": "127.0.0.1:1"}
    for args in (("worker",), ("run", "check web-2"), ("schedule", "list")):
        out = run_cli(*args, env=down)
        assert out.returncode == 2, out.stderr
        (line,) = out.stderr.strip().splitlines()
        assert line.startswith("error: cannot reach Temporal at 127.0.0.1:1"), line


def test_server_replicas_submit_runs_as_workflows_and_either_takes_the_decision(
        env: dict[str, str], workers: Workers, orchestrator_home: Path,
        monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> None:
    """Two replicas of `orchestrator serve --runs temporal` and a worker, all sharing one
    PostgreSQL database (keys, checkpoints, run store, journal, business tables)."""
    import httpx

    from orchestrator import Orchestrator
    from orchestrator.config import load_settings
    from orchestrator.server import KeyStore, create_app
    from orchestrator.temporal.dispatcher import TemporalDispatcher
    from tests.test_server_openai import LiveServer

    env["ORCHESTRATOR_DATABASE_URL"] = postgres_url
    for name in ("ORCHESTRATOR_DATABASE_URL", "ORCHESTRATOR_TEMPORAL_ADDRESS",
                 "ORCHESTRATOR_TEMPORAL_TASK_QUEUE",
                 "ORCHESTRATOR_AGENTS_DIR", "ORCHESTRATOR_PLAYBOOKS_DIR", "NO_PROXY"):
        monkeypatch.setenv(name, env.get(name, "127.0.0.1"))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    worker = workers.start()
    with ExitStack() as stack:
        urls = []
        for _ in range(2):
            orch = Orchestrator.from_settings(load_settings(knowledge=False))
            stack.callback(orch.close)
            keys = stack.enter_context(KeyStore.from_settings())
            app = create_app(orch, keys, dispatcher=TemporalDispatcher(orch))
            urls.append(stack.enter_context(LiveServer(app)).url)
        key = keys.create("ana", "chat,approve", tenant="acme")
        first, second = (stack.enter_context(httpx.Client(
            base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}))
            for url in urls)

        paused = first.post("/api/runs", json={"request": "refund order o-1010",
                                               "thread_id": "t-1"}).json()
        assert paused["status"] == "paused", paused
        runs = open_run_store(postgres_url)
        assert runs.run(paused["run_id"])["pid"] == worker.pid  # the worker ran it
        done = second.post("/api/threads/t-1/approvals", json={"approve": True,
                                                               "reason": "checked"})
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "ok" and done.json()["run_id"] == paused["run_id"]
        again = first.post("/api/threads/t-1/approvals", json={"approve": True})
        assert again.status_code == 400, again.text
        business = open_domain_db(postgres_url)
        assert [tuple(r) for r in business.execute("SELECT order_id FROM refunds")] == [
            ("o-1010",)]

        chat = second.post("/v1/chat/completions", json={
            "model": "orchestrator", "stream": True,
            "messages": [{"role": "user", "content": "crash drill for web-3"}]})
        assert chat.status_code == 200
        assert '"type": "run_started"' in chat.text and "Paged the drill channel" in chat.text
        assert dict(business.execute("SELECT team, count(*) FROM alerts WHERE service = "
                                     "'web-3' GROUP BY team").fetchall()) == {
            "web-platform": 1, "drill": 1}
        cancel = first.post(f"/api/runs/{paused['run_id']}/cancel")
        assert cancel.status_code == 409 and "runs on a worker" in cancel.text
        workflow = runs.run(paused["run_id"])["request_id"]  # the message names it
        assert f"temporal workflow cancel --workflow-id {workflow}" in cancel.text
    assert not list(orchestrator_home.glob("*.sqlite*"))  # nothing on this machine's disk
