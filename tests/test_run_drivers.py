"""Who drives a run: its record says it (``driver``: local or temporal), and only that driver
decides or resumes it. With real processes: a Temporal dev server and `orchestrator worker`,
CLI clients, and the server under uvicorn (local dispatcher) over the same data folder; and
run stores made by the previous schema (SQLite, PostgreSQL) upgraded in place.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus

from orchestrator import Orchestrator
from orchestrator.config import load_settings
from orchestrator.errors import DrivenElsewhereError
from orchestrator.leases import HOST, Owner
from orchestrator.server import KeyStore, create_app
from orchestrator.storage import open_run_store
from orchestrator.storage.postgres import SCHEMA
from tests.support.postgres import Cluster
from tests.support.processes import dead_pid, run_cli
from tests.support.temporal import DevServer
from tests.test_server_openai import LiveServer
from tests.test_server_openai import no_proxy as no_proxy  # autouse: straight to 127.0.0.1
from tests.test_temporal_runs import Workers, describe, events, stored
from tests.test_temporal_runs import env as env  # fixture: this test's queue, runs on Temporal
from tests.test_temporal_runs import workers as workers  # fixture: worker processes

REFUND = "refund order o-1010"


def refunds(home: Path) -> list[tuple[str, float]]:
    return sqlite3.connect(home / "domain.sqlite").execute(
        "SELECT order_id, amount FROM refunds").fetchall()


def error_line(stderr: str) -> str:
    (line,) = stderr.strip().splitlines()
    return line


def workflow_refusal(run_id: str) -> str:
    return (f"run {run_id[:12]} is driven by a Temporal workflow; approve it with --runs "
            "temporal (or ORCHESTRATOR_RUNS=temporal)")


def local_refusal(run_id: str) -> str:
    return (f"run {run_id[:12]} is driven locally (by the process that runs it), not by a "
            "Temporal workflow; approve it with --runs local (or ORCHESTRATOR_RUNS=local)")


@pytest.fixture
def same_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """This process sees the agents, playbooks and data folder the CLI and workers do."""
    for name in ("ORCHESTRATOR_AGENTS_DIR", "ORCHESTRATOR_PLAYBOOKS_DIR"):
        monkeypatch.setenv(name, env[name])


@pytest.fixture
def local_server(same_settings: None) -> Iterator[tuple[Orchestrator, httpx.Client]]:
    """The server with local runs (no dispatcher) over this test's data folder, and a
    client of tenant acme that may approve."""
    orch = Orchestrator.from_settings(load_settings(knowledge=False))
    try:
        with KeyStore.from_settings() as keys, LiveServer(create_app(orch, keys)) as live:
            key = keys.create("ana", "chat,approve", tenant="acme")
            with httpx.Client(base_url=live.url, timeout=60,
                              headers={"Authorization": f"Bearer {key}"}) as client:
                yield orch, client
    finally:
        orch.close()


def test_a_workflow_run_is_refused_by_local_approvals_and_decided_once_by_its_workflow(
        env: dict[str, str], workers: Workers, orchestrator_home: Path,
        temporal_server: DevServer, local_server: tuple[Orchestrator, httpx.Client]) -> None:
    workers.start()
    paused = run_cli("run", REFUND, "--thread", "acme:t-1", "--json", env=env)
    assert paused.returncode == 1, paused.stderr
    run_id = json.loads(paused.stdout)["run_id"]
    ((request_id,),) = stored(orchestrator_home, "SELECT request_id FROM runs")
    before = events(orchestrator_home, run_id)

    # The CLI with local runs: one line, before any decision is shown.
    local = run_cli("approve", "acme:t-1", "--runs", "local", env=env)
    assert local.returncode == 2, local.stderr
    assert error_line(local.stderr) == f"error: {workflow_refusal(run_id)}"
    assert "Deciding" not in local.stdout
    # The Python API, and the HTTP API of a server with local runs: the same, as a 409.
    orch, client = local_server
    with pytest.raises(DrivenElsewhereError) as refused:
        orch.resume("acme:t-1", True, approver="ana")
    assert str(refused.value) == workflow_refusal(run_id)
    answer = client.post("/api/threads/t-1/approvals", json={"approve": True})
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == {"message": workflow_refusal(run_id),
                                      "type": "invalid_request_error", "param": None,
                                      "code": "driven_elsewhere"}
    # Nothing was written: no refund, no event, the run still paused in its workflow.
    assert refunds(orchestrator_home) == []
    assert events(orchestrator_home, run_id) == before
    assert stored(orchestrator_home, "SELECT status, owner FROM runs") == [("paused", None)]
    assert describe(temporal_server, request_id).status == WorkflowExecutionStatus.RUNNING
    # The record says so, and so does the trace.
    assert stored(orchestrator_home, "SELECT driver FROM runs") == [("temporal",)]
    shown = json.loads(run_cli("trace", run_id, "--json", env=env).stdout)
    assert shown["run"]["driver"] == "temporal"

    # Its workflow takes the decision, once.
    done = run_cli("approve", "acme:t-1", "--json", "--as", "bob", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "ok"
    assert refunds(orchestrator_home) == [("o-1010", 299.0)]
    decided = [d for t, _, d in events(orchestrator_home, run_id) if t == "approval_decided"]
    assert [(d["approved"], d["approver"]) for d in decided] == [(True, "bob")]
    assert describe(temporal_server, request_id).status == WorkflowExecutionStatus.COMPLETED
    again = run_cli("approve", "acme:t-1", "--json", env=env)
    assert again.returncode == 2 and refunds(orchestrator_home) == [("o-1010", 299.0)]


def test_a_local_run_is_refused_by_temporal_approvals_and_decided_locally(
        env: dict[str, str], orchestrator_home: Path) -> None:
    # Without a request id (no workflow could have it) and with one (Temporal has none).
    threads = []
    for extra in ((), ("--request-id", f"local-{uuid.uuid4().hex[:8]}")):
        thread = uuid.uuid4().hex
        paused = run_cli("run", REFUND, "--thread", thread, "--runs", "local", "--json",
                         *extra, env=env)
        assert paused.returncode == 1, paused.stderr
        run_id = json.loads(paused.stdout)["run_id"]
        refused = run_cli("approve", thread, "--runs", "temporal", "--json", env=env)
        assert refused.returncode == 2, refused.stderr
        assert error_line(refused.stderr) == f"error: {local_refusal(run_id)}"
        threads.append(thread)
    assert stored(orchestrator_home, "SELECT driver, status FROM runs") == [
        ("local", "paused"), ("local", "paused")]
    assert refunds(orchestrator_home) == []
    done = run_cli("approve", threads[0], "--runs", "local", "--json", env=env)
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "ok", done.stderr
    assert refunds(orchestrator_home) == [("o-1010", 299.0)]


def test_a_workflow_run_recorded_before_runs_had_a_driver_is_still_decided_by_its_workflow(
        env: dict[str, str], workers: Workers, orchestrator_home: Path) -> None:
    # A run paused under the previous release reads as local after the upgrade (the column's
    # default); its workflow exists, so the decision still goes to it.
    workers.start()
    paused = run_cli("run", REFUND, "--json", env=env)
    assert paused.returncode == 1, paused.stderr
    thread = json.loads(paused.stdout)["thread_id"]
    sqlite3.connect(orchestrator_home / "runs.sqlite", isolation_level=None).execute(
        "UPDATE runs SET driver = 'local'")
    done = run_cli("approve", thread, "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "ok"
    assert refunds(orchestrator_home) == [("o-1010", 299.0)]


def test_an_interrupted_workflow_run_is_left_to_its_workers(
        orchestrator_home: Path, local_server: tuple[Orchestrator, httpx.Client],
        env: dict[str, str]) -> None:
    """A worker died mid-run: Temporal gives the run to another worker; a local resume
    (CLI or HTTP) is refused and takes nothing over."""
    store = open_run_store(orchestrator_home / "runs.sqlite")
    run_id = uuid.uuid4().hex
    gone = Owner(uuid.uuid4().hex, dead_pid(), HOST)
    store.start_run(run_id, "acme:t-2", "crash drill for web-3", owner=gone, lease_s=600,
                    request_id=f"run-{uuid.uuid4().hex}", driver="temporal")
    assert store.run(run_id)["status"] == "interrupted"
    why = (f"run {run_id[:12]} is driven by a Temporal workflow, which continues it on a "
           "worker: start `orchestrator worker` instead of resuming it here")
    local = {**env, "ORCHESTRATOR_RUNS": "local"}
    refused = run_cli("resume", run_id[:12], env=local)
    assert refused.returncode == 2 and error_line(refused.stderr) == f"error: {why}"
    _, client = local_server
    answer = client.post(f"/api/runs/{run_id}/resume")
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "driven_elsewhere"
    assert answer.json()["error"]["message"] == why
    record = store.run(run_id)
    assert (record["status"], record["owner"], record["pid"]) == ("interrupted", gone.token,
                                                                  gone.pid)
    assert store.events(run_id) == []


# --- stores made by the previous schema ---------------------------------------------------

_SQLITE_BEFORE = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, thread_id TEXT, request TEXT, event TEXT, mode TEXT,
    status TEXT, started_at REAL, elapsed_s REAL, llm_calls INTEGER, input_tokens INTEGER,
    output_tokens INTEGER, answer TEXT, error TEXT, plan TEXT, owner TEXT, pid INTEGER,
    host TEXT, lease_until REAL, request_id TEXT, results TEXT, budget_hit TEXT);
CREATE UNIQUE INDEX runs_request ON runs (request_id) WHERE request_id IS NOT NULL;
INSERT INTO runs (run_id, thread_id, request, mode, status, started_at, elapsed_s, llm_calls,
                  input_tokens, output_tokens, answer, request_id)
VALUES ('old-run', 't-old', 'refund order o-1010', 'supervisor', 'paused', 1.0, 0.5, 2, 10,
        5, '', 'run-old');
"""
"""``runs.sqlite`` as the release before ``driver`` left it, with one paused run."""


def test_a_sqlite_run_store_of_the_previous_schema_gets_the_driver_and_its_runs_read_local(
        tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript(_SQLITE_BEFORE)
    store = open_run_store(path)
    record = store.run("old-run")
    assert (record["driver"], record["status"], record["request_id"]) == (
        "local", "paused", "run-old")
    assert sqlite3.connect(path).execute("SELECT driver FROM runs").fetchall() == [("local",)]
    store.start_run("new-run", "t-new", "check web-2", owner=Owner.here(), lease_s=30,
                    driver="temporal")
    assert store.run("new-run")["driver"] == "temporal"
    store.close()
    assert open_run_store(path).run("old-run")["driver"] == "local"  # opened again: as is


def test_a_postgres_run_store_of_the_previous_schema_is_migrated_and_its_runs_read_local(
        postgres_url: str, postgres_cluster: Cluster) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    open_run_store(postgres_url).close()
    # Back to version 1, as the previous release left it, with one run of its own.
    postgres_cluster.psql(
        f"ALTER TABLE {SCHEMA}.runs DROP COLUMN driver; UPDATE {SCHEMA}.schema_versions SET "
        f"version = 1 WHERE component = 'runs'; INSERT INTO {SCHEMA}.runs (run_id, "
        "thread_id, request, mode, status, started_at, elapsed_s, llm_calls, input_tokens, "
        "output_tokens, request_id) VALUES ('old-run', 't-old', 'refund order o-1010', "
        "'supervisor', 'paused', 1.0, 0.5, 2, 10, 5, 'run-old')", database)
    store = open_run_store(postgres_url)
    assert store.run("old-run")["driver"] == "local"
    store.start_run("new-run", "t-new", "check web-2", owner=Owner.here(), lease_s=30,
                    driver="temporal")
    assert store.run("new-run")["driver"] == "temporal"
    store.close()
    assert postgres_cluster.psql(f"SELECT version FROM {SCHEMA}.schema_versions WHERE "
                                 "component = 'runs'", database) == "2"
    assert postgres_cluster.psql(f"SELECT run_id, driver FROM {SCHEMA}.runs ORDER BY run_id",
                                 database).splitlines() == ["new-run|temporal", "old-run|local"]
