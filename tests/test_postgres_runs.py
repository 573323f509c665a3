"""Whole runs on PostgreSQL (``ORCHESTRATOR_DATABASE_URL``): what one replica starts another
reads, approves or resumes; a thread runs one request at a time across processes; a killed
process's run resumes from the database's checkpoints with each write done once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.config import Settings
from orchestrator.errors import RequestError
from orchestrator.events import Event
from orchestrator.leases import Owner
from orchestrator.results import RunResult
from orchestrator.storage import open_run_store, parse_store_url
from orchestrator.storage.postgres_checkpoints import PooledPostgresSaver
from orchestrator.storage.postgres_runs import PostgresRunStore
from tests.conftest import INCIDENT_REQUEST
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


class CheckpointsAheadOfEvents:
    """What a slow network would show: each event transaction waits (up to a moment) for a
    checkpoint write to begin, and each checkpoint write first counts its run's events on
    record, from a connection of its own."""

    WAIT_S = 0.2  # how long a burst holds back for a checkpoint (bounds the test's time)

    def __init__(self, url: str) -> None:
        self.url = url
        self.puts = 0
        self.changed = threading.Condition()
        self.seen: list[tuple[float, int]] = []  # (when a checkpoint was written, events)

    def hold_back(self) -> None:
        with self.changed:
            started = self.puts
            self.changed.wait_for(lambda: self.puts > started, timeout=self.WAIT_S)

    def count_then_release(self, run_id: str) -> None:
        with psycopg.connect(self.url) as conn:
            count = conn.execute("SELECT count(*) FROM orchestrator.events WHERE run_id = %s",
                                 (run_id,)).fetchone()
        self.seen.append((time.time(), count[0] if count else 0))
        with self.changed:
            self.puts += 1
            self.changed.notify_all()


def test_a_checkpoint_is_written_only_once_the_events_before_it_are_on_record(
        database_url: str, domain_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A step's checkpoint committed before its events would lose them to a kill -9: the
    # resumed run does not repeat the step. Here every event burst is slow to commit.
    probe = CheckpointsAheadOfEvents(database_url)
    put = PooledPostgresSaver.put

    def counted_put(self: PooledPostgresSaver, config: Any, checkpoint: Any, metadata: Any,
                    new_versions: Any) -> Any:
        probe.count_then_release(config["metadata"]["orchestrator_run_id"])
        return put(self, config, checkpoint, metadata, new_versions)

    class SlowEvents(PostgresRunStore):
        def append_events(self, run_id: str, events: Sequence[Event],
                          owner: Owner | None = None) -> bool:
            probe.hold_back()
            return super().append_events(run_id, events, owner)

    monkeypatch.setattr(PooledPostgresSaver, "put", counted_put)
    store = SlowEvents(parse_store_url(database_url, what="run store"))
    try:
        with Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, runs=store,
                          settings=Settings(knowledge=False)) as orch:
            result = orch.run(INCIDENT_REQUEST)
    finally:
        store.close()
    assert result.ok
    assert len(probe.seen) > 3  # a checkpoint per step
    behind = [(sum(e.time <= when for e in result.events), on_record)
              for when, on_record in probe.seen
              if on_record < sum(e.time <= when for e in result.events)]
    assert behind == []  # (events emitted before a checkpoint, of them on record)


def test_event_transactions_of_two_processes_over_the_same_runs_do_not_deadlock(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A batch locked its runs' rows in the order its bursts came: two processes writing
    # the same runs in the other order (one took them over, the other's bursts were still
    # queued) deadlocked; PostgreSQL broke it after a second and the batch went again,
    # burst by burst, while the runs of both processes waited.
    from orchestrator.runs import Burst
    from orchestrator.storage import postgres_runs

    fallbacks: list[int] = []
    real = postgres_runs.append_each

    def append_each(store: PostgresRunStore, bursts: Sequence[Burst]) -> list[bool | Exception]:
        fallbacks.append(len(bursts))  # a spy: the real one still does the work
        return real(store, bursts)

    monkeypatch.setattr(postgres_runs, "append_each", append_each)
    url = parse_store_url(postgres_url)
    one, other = PostgresRunStore(url), PostgresRunStore(url)
    runs = ["run-aaaaaaaa", "run-bbbbbbbb"]
    for run in runs:
        one.start_run(run, f"t-{run}", "a request", owner=Owner.here(), lease_s=60)
    done: list[bool | Exception] = []

    def write(store: PostgresRunStore, order: list[str]) -> None:
        for _ in range(80):
            done.extend(store.append_bursts(
                [Burst(run, [Event(type="run_started", run_id=run)] * 3) for run in order]))

    writers = [threading.Thread(target=write, args=(one, runs)),
               threading.Thread(target=write, args=(other, runs[::-1]))]
    try:
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()
        assert done == [True] * 320
        assert [len(one.events(run)) for run in runs] == [480, 480]
        assert fallbacks == []
    finally:
        one.close()
        other.close()
