"""Whole runs on PostgreSQL (``ORCHESTRATOR_DATABASE_URL``): what one replica starts another
reads, approves or resumes; a thread runs one request at a time across processes; a killed
process's run resumes from the database's checkpoints with each write done once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.config import Settings
from orchestrator.errors import RequestError
from orchestrator.results import RunResult
from orchestrator.storage import open_run_store
from tests.support.postgres import Cluster
from tests.support.processes import crash_env, make_gate, run_cli, start_cli, wait_for_marker

SQLITE_STORES = ("runs.sqlite", "checkpoints.sqlite", "writes.sqlite", "keys.sqlite")


@pytest.fixture
def database_url(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", postgres_url)
    return postgres_url


def replica(domain_db: Path) -> Orchestrator:
    """An orchestrator with connections of its own, as another server replica has."""
    return Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db,
                        settings=Settings(knowledge=False))


def psql(cluster: Cluster, url: str, sql: str) -> list[str]:
    return cluster.psql(sql, url.rsplit("/", 1)[1]).splitlines()


def route(db: Path, service: str) -> str:
    return str(sqlite3.connect(db).execute("SELECT pool FROM routes WHERE service = ?",
                                           (service,)).fetchone()[0])


def test_a_request_keeps_its_run_events_and_checkpoints_in_postgres(
        database_url: str, postgres_cluster: Cluster, domain_db: Path,
        orchestrator_home: Path) -> None:
    with replica(domain_db) as first:
        result = first.run("check the health of web-3", thread_id="conv")
    assert result.ok

    rows = psql(postgres_cluster, database_url, "SELECT run_id, thread_id, status, answer "
                f"FROM orchestrator.runs WHERE run_id = '{result.run_id}'")
    assert rows == [f"{result.run_id}|conv|ok|{result.answer}"]
    types = psql(postgres_cluster, database_url, "SELECT type FROM orchestrator.events "
                 f"WHERE run_id = '{result.run_id}' ORDER BY seq")
    assert types[0] == "run_started" and types[-1] == "answer"
    assert psql(postgres_cluster, database_url, "SELECT count(*) FROM orchestrator.checkpoints "
                "WHERE thread_id = 'conv'") == ["1"]  # pruned to the latest when the run ended

    with replica(domain_db) as second:  # another replica continues the conversation
        later = second.run("and web-1?", thread_id="conv")
        assert later.ok
        assert [r.run_id for r in second.records.store.thread_runs("conv")] == [
            result.run_id, later.run_id]
        assert [e.type for e in second.records.store.events(result.run_id)] == types
    assert not [name for name in SQLITE_STORES if (orchestrator_home / name).exists()]


def test_an_approval_started_on_one_replica_is_decided_once_on_another(
        database_url: str, domain_db: Path) -> None:
    with replica(domain_db) as starter:
        paused = starter.run("planned failover for web-2")
    assert paused.status == "paused" and route(domain_db, "web-2") == "web-primary"

    async def two_approvers() -> list[RunResult | BaseException]:
        async with replica(domain_db) as bob, replica(domain_db) as carol:
            return await asyncio.gather(
                bob.aresume(paused.thread_id, True, approver="bob"),
                carol.aresume(paused.thread_id, True, approver="carol"),
                return_exceptions=True)

    outcomes = asyncio.run(two_approvers())
    done = [o for o in outcomes if isinstance(o, RunResult)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(done) == 1 and done[0].ok, outcomes
    assert len(refused) == 1 and isinstance(refused[0], RequestError), outcomes
    assert route(domain_db, "web-2") != "web-primary"  # the failover ran, once

    store = open_run_store(database_url)
    assert store.run(paused.run_id)["status"] == "ok"
    approvers = {e.data["approver"] for e in store.events(paused.run_id)
                 if e.type == "approval_decided"}
    assert len(approvers) == 1  # one decision, by whoever won


def test_a_thread_runs_one_request_at_a_time_across_processes(
        database_url: str, orchestrator_home: Path, tmp_path: Path) -> None:
    gate = make_gate(tmp_path / "gate")
    env = crash_env(gate, ORCHESTRATOR_DATABASE_URL=database_url)
    holder = start_cli("run", "crash drill for web-3", "--thread", "ops", "--json", env=env)
    try:
        wait_for_marker(gate / "reached", holder)
        busy = run_cli("run", "check the health of web-1", "--thread", "ops",
                       env=crash_env(ORCHESTRATOR_DATABASE_URL=database_url))
        assert busy.returncode == 2
        (line,) = [x for x in busy.stderr.splitlines() if x.startswith("error:")]
        assert line.startswith("error: thread 'ops' is busy with run ")
        assert f"by pid {holder.pid}); wait for it to finish" in line
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    after = run_cli("run", "check the health of web-1", "--thread", "ops", "--json",
                    env=crash_env(ORCHESTRATOR_DATABASE_URL=database_url))
    assert after.returncode == 0, after.stderr  # a dead owner's lease does not block
    assert json.loads(after.stdout)["answer"].startswith("web-1 is up")
    assert not [name for name in SQLITE_STORES if (orchestrator_home / name).exists()]


def test_kill_9_mid_run_resumes_from_postgres_with_each_write_once(
        database_url: str, postgres_cluster: Cluster, orchestrator_home: Path,
        tmp_path: Path) -> None:
    gate = make_gate(tmp_path / "gate")
    # The business database stays the SQLite file: this test is about the engine's stores.
    stores = {"ORCHESTRATOR_DATABASE_URL": database_url,
              "ORCHESTRATOR_DOMAIN_DB": str(orchestrator_home / "domain.sqlite")}
    env = crash_env(**stores)
    proc = start_cli("event", "crash_drill", "--data", '{"service": "web-3"}', "--json",
                     env=crash_env(gate, **stores))
    wait_for_marker(gate / "reached", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)

    def alerts() -> dict[str, int]:
        db = sqlite3.connect(orchestrator_home / "domain.sqlite")
        return dict(db.execute("SELECT team, count(*) FROM alerts WHERE service = 'web-3' "
                               "GROUP BY team").fetchall())

    (run,) = json.loads(run_cli("runs", "--json", env=env).stdout)
    assert run["status"] == "interrupted"
    assert alerts() == {"web-platform": 1, "drill": 1}  # both writes ran before the kill
    assert int(psql(postgres_cluster, database_url,
                    "SELECT count(*) FROM orchestrator.checkpoints")[0]) > 0

    resumed = run_cli("resume", run["run_id"][:10], "--json", env=env)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert json.loads(resumed.stdout)["status"] == "ok"
    assert alerts() == {"web-platform": 1, "drill": 1}  # each write once
    calls = psql(postgres_cluster, database_url, "SELECT subtask_id, data FROM "
                 f"orchestrator.events WHERE run_id = '{run['run_id']}' AND "
                 "type = 'tool_called' ORDER BY seq")
    replayed = [(line.split("|", 1)[0], json.loads(line.split("|", 1)[1]).get("replayed",
                                                                             False))
                for line in calls]
    assert replayed == [("alert", False), ("hold", True)]
    journal = psql(postgres_cluster, database_url, "SELECT tool, state FROM "
                   "orchestrator.write_journal ORDER BY started_at")
    assert "page_and_hold|ledger" in journal or "page_and_hold|done" in journal
    assert not [name for name in SQLITE_STORES if (orchestrator_home / name).exists()]
