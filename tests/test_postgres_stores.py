"""The stores on PostgreSQL: the run-store and journal contracts (the same tests on SQLite
and PostgreSQL), API keys shared by replicas, schema set-up, and clear errors for a bad or
unreachable ``ORCHESTRATOR_DATABASE_URL``. A real server: ``postgres_url`` (tests/conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.config import Settings, load_settings
from orchestrator.errors import ConfigError, RequestError
from orchestrator.events import Event
from orchestrator.results import RunResult, Usage
from orchestrator.runs import HOST, BaseRunStore, Owner
from orchestrator.server.keys import KeyStore
from orchestrator.storage import open_checkpointer, open_run_store, open_write_journal
from orchestrator.storage.postgres import SCHEMA
from tests.support.postgres import Cluster, free_port
from tests.support.processes import dead_pid


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(location: str) -> Iterator[BaseRunStore]:
    opened = open_run_store(location, max_text=200)
    yield opened
    opened.close()


def database(url: str) -> str:
    return url.rsplit("/", 1)[1]


def attempt(run_id: str, agent: str, ok: bool, at: float) -> Event:
    return Event(type="attempt_finished", run_id=run_id, time=at, subtask_id="s1",
                 agent=agent, data={"attempt": 1, "status": "done" if ok else "failed",
                                    "kind": "" if ok else "timeout", "elapsed_s": 0.5,
                                    "error": ""},
                 usage={"llm_calls": 1, "input_tokens": 10, "output_tokens": 5})


# --- the run store contract, on both backends ----------------------------------------------

def test_a_run_is_recorded_as_it_goes_and_read_back(store: BaseRunStore) -> None:
    owner = Owner.here()
    store.start_run("run-1", "th", "check web-1\x00 health", owner=owner, lease_s=60,
                    request_id="req-1")
    with pytest.raises(RequestError, match="request id 'req-1' is already in use"):
        store.start_run("run-2", "th", "again", owner=owner, lease_s=60, request_id="req-1")
    assert store.append_events("run-1", [attempt("run-1", "probe", True, 1.0),
                                         attempt("run-1", "probe", False, 2.0)], owner)
    assert not store.append_events("run-1", [attempt("run-1", "x", True, 3.0)],
                                   Owner("someone-else", 1, HOST))  # not the holder
    result = RunResult(run_id="run-1", thread_id="th", request="check web-1",
                       answer="web-1 is up", status="ok", plan=None, results={},
                       usage=Usage(llm_calls=3, input_tokens=30, output_tokens=12),
                       elapsed_s=1.5)
    assert store.finish_run(result, status="ok", owner=owner, mode="adaptive")
    assert not store.finish_run(result, status="failed", owner=owner)  # the claim ended

    record = store.run("run-1"[:4])
    assert (record["status"], record["answer"], record["mode"], record["owner"]) == (
        "ok", "web-1 is up", "adaptive", None)
    assert record["request"].startswith("check web-1") and record["llm_calls"] == 3
    assert store.find_request("req-1")["run_id"] == "run-1"  # type: ignore[index]
    assert [e.data["status"] for e in store.events("run-1")] == ["done", "failed"]
    # a follower asks only for the events after those it has
    assert [e.data["status"] for e in store.events("run-1", 1)] == ["failed"]
    assert store.events("run-1", 2) == []
    (stats,) = store.agent_stats()
    assert (stats.agent, stats.attempts, stats.successes, stats.failures) == (
        "probe", 2, 1, {"timeout": 1})
    assert [o.ok for o in store.recent_outcomes(5)["probe"]] == [True, False]
    assert [r.run_id for r in store.thread_runs("th")] == ["run-1"]
    (thread,) = store.list_threads("t", 10)
    assert (thread.thread_id, thread.last_status, thread.runs) == ("th", "ok", 1)
    assert store.later_run("th", record["started_at"] - 1) == "run-1"
    with pytest.raises(RequestError, match="no run 'nope'"):
        store.run("nope")


def test_one_decision_per_approval_and_a_dead_claim_is_taken_over(
        store: BaseRunStore) -> None:
    approver = Owner("approver", dead_pid(), HOST)
    store.start_run("r1", "t1", "planned failover", owner=approver, lease_s=60)
    store.set_status("r1", "paused", approver)
    assert store.claim_paused("r1", approver, lease_s=60)  # resuming, then it died
    assert store.run("r1")["status"] == "interrupted"
    assert store.claim_paused("r1", Owner.here(), lease_s=60)  # a new decision may win
    assert not store.claim_paused("r1", Owner.here(), lease_s=60)  # but only one

    far = Owner("far", 99, "other-host")  # alive or not, only its lease says
    store.start_run("r2", "t2", "x", owner=far, lease_s=60)
    assert store.run("r2")["status"] == "running"
    assert not store.claim_interrupted("r2", Owner.here(), lease_s=60)
    store.start_run("r3", "t3", "x", owner=far, lease_s=-1)  # it stopped renewing
    mine = Owner.here()
    assert store.claim_interrupted("r3", mine, lease_s=60)
    assert not store.claim_interrupted("r3", Owner.here(), lease_s=60)
    assert store.holds("r3", mine) and not store.holds("r3", far)


def test_a_thread_lease_of_another_host_is_taken_over_only_once_it_expires(
        store: BaseRunStore) -> None:
    far = Owner("far-away", 4242, "other-host")
    store.acquire_thread("t", "run-far", far, lease_s=60)
    with pytest.raises(RequestError, match=r"thread 't' is busy with run run-far \(started "
                                           r".* by pid 4242 on other-host\)"):
        store.acquire_thread("t", "run-here", Owner.here(), lease_s=60)

    store.acquire_thread("u", "run-far", far, lease_s=1.0)
    expires = time.time() + 1.0
    mine = Owner.here()
    refused = 0
    while True:  # refused while the lease holds, taken once it has run out
        try:
            store.acquire_thread("u", "run-here", mine, lease_s=60)
            break
        except RequestError:
            refused += 1
            assert time.time() < expires + 5, "the expired lease was never taken over"
            time.sleep(0.05)  # polling for the expiry, not timing anything
    assert refused > 0 and time.time() >= expires - 0.2  # held until (about) its expiry
    assert not store.renew("run-far", "u", far, lease_s=60)  # the old owner lost it
    store.release_thread("u", far)  # and coming back releases nothing
    with pytest.raises(RequestError, match="busy with run run-here"):
        store.acquire_thread("u", "another", Owner("x", 1, "other-host"), lease_s=60)
    store.release_thread("u", mine)
    store.acquire_thread("u", "another", Owner("x", 1, "other-host"), lease_s=60)


def test_renewing_keeps_the_claims_and_a_takeover_ends_them(store: BaseRunStore) -> None:
    owner = Owner.here()
    store.start_run("r", "t", "x", owner=owner, lease_s=60)
    store.acquire_thread("t", "r", owner, lease_s=60)
    assert store.renew("r", "t", owner, lease_s=60)
    store.set_status("r", "interrupted", owner)
    assert not store.renew("r", "t", owner, lease_s=60)  # the run is no longer its


def test_the_write_journal_notes_and_settles_writes(location: str) -> None:
    journal = open_write_journal(location)
    assert journal.lookup("k1") is None
    journal.begin("k1", "reroute", {"service": "web-2"})
    assert journal.lookup("k1").state == "started"  # type: ignore[union-attr]
    journal.mark_ledger("k1")
    journal.finish("k1", "rerouted\x00")
    assert journal.lookup("k1").state == "done"  # type: ignore[union-attr]
    journal.begin("k1", "reroute", {})  # a settled write is not started again
    assert journal.lookup("k1").state == "done"  # type: ignore[union-attr]
    journal.begin("k2", "page", {})
    journal.fail("k2", "timeout")
    journal.begin("k2", "page", {})  # a failed one may be retried
    assert journal.lookup("k2").state == "started"  # type: ignore[union-attr]
    journal.close()


# --- PostgreSQL only -----------------------------------------------------------------------

def test_two_store_objects_see_one_claim(postgres_url: str) -> None:
    """Two replicas (two stores, two pools) race for one paused run: one decision wins."""
    first, second = open_run_store(postgres_url), open_run_store(postgres_url)
    owner = Owner.here()
    first.start_run("p", "t", "x", owner=owner, lease_s=60)
    first.set_status("p", "paused", owner)
    wins = [second.claim_paused("p", Owner.here(), 60), first.claim_paused("p", Owner.here(), 60)]
    assert wins == [True, False]
    assert first.run("p")["status"] == second.run("p")["status"] == "resuming"


def test_api_keys_are_shared_and_a_revoke_is_seen_by_every_replica(
        postgres_url: str, orchestrator_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", postgres_url)
    with KeyStore.from_settings() as one, KeyStore.from_settings() as two:
        key = one.create("ci-bot", "chat,approve", tenant="payments")
        seen = two.verify(key)
        assert seen is not None and seen.tenant == "payments" and seen.allows("approve")
        with pytest.raises(RequestError, match="a key named 'ci-bot' exists"):
            two.create("ci-bot", "chat")
        two.revoke("ci-bot")
        assert one.verify(key) is None  # the next request on the other replica
        assert [(k.name, k.revoked) for k in one.list()] == [("ci-bot", True)]
    assert not (orchestrator_home / "keys.sqlite").exists()


def test_tables_are_set_up_once_with_their_versions(postgres_url: str,
                                                    postgres_cluster: Cluster) -> None:
    for _ in range(2):  # idempotent
        open_run_store(postgres_url).close()
        open_write_journal(postgres_url).close()
        KeyStore(postgres_url).close()
        with open_checkpointer(postgres_url):
            pass
    versions = postgres_cluster.psql(f"SELECT component, version FROM {SCHEMA}."
                                     "schema_versions ORDER BY component",
                                     database(postgres_url))
    assert versions.splitlines() == ["api_keys|1", "runs|2", "write_journal|1"]
    # LangGraph's checkpoint tables too are in our schema, not the user's default one
    assert postgres_cluster.psql(f"SELECT count(*) > 0 FROM {SCHEMA}.checkpoint_migrations",
                                 database(postgres_url)) == "t"
    assert postgres_cluster.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
                                 database(postgres_url)) == "0"


_SET_UP = """
import sys, time
from pathlib import Path
from orchestrator.server.keys import KeyStore
from orchestrator.storage import open_checkpointer, open_run_store, open_write_journal
url, folder = sys.argv[1], Path(sys.argv[2])
(folder / f"ready-{sys.argv[3]}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
with open_checkpointer(url):
    open_run_store(url).close(); open_write_journal(url).close(); KeyStore(url).close()
print("ok")
"""


def test_schema_set_up_racing_from_several_processes_succeeds_once(
        postgres_url: str, postgres_cluster: Cluster, tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", _SET_UP, postgres_url, str(tmp_path),
                               str(i)], text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for i in range(4)]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < len(procs):  # all imported: start at once
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    (tmp_path / "go").touch()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "ok", err[-2000:]
    assert postgres_cluster.psql(f"SELECT count(*) FROM {SCHEMA}.schema_versions",
                                 database(postgres_url)) == "3"


def test_a_database_of_a_newer_release_is_refused(postgres_url: str,
                                                  postgres_cluster: Cluster) -> None:
    open_run_store(postgres_url).close()
    postgres_cluster.psql(f"UPDATE {SCHEMA}.schema_versions SET version = 99 "
                          "WHERE component = 'runs'", database(postgres_url))
    with pytest.raises(ConfigError) as caught:
        open_run_store(postgres_url)
    message = str(caught.value)
    assert "\n" not in message and "schema version 99 of 'runs', newer than this release " \
        "knows (2): upgrade the orchestrator" in message
    assert "ORCHESTRATOR_DATABASE_URL" in message
    open_write_journal(postgres_url).close()  # other components are not affected


def test_an_unreachable_server_is_one_line_naming_the_variable(
        orchestrator_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql://bob:s3cret@127.0.0.1:{free_port()}/orch"
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", url)
    with pytest.raises(ConfigError) as caught:
        Orchestrator("fake", agents=it_ops_agents(), settings=Settings(knowledge=False))
    message = str(caught.value)
    assert message.startswith("cannot use the run store at 'postgresql://bob:***@127.0.0.1:")
    assert "(ORCHESTRATOR_DATABASE_URL)" in message and "s3cret" not in message
    assert "\n" not in message

    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", "mysql://bob:s3cret@db/orch")
    with pytest.raises(ConfigError, match="ORCHESTRATOR_DATABASE_URL must be postgresql://") \
            as bad:
        load_settings().stores  # noqa: B018 - the property checks the URL
    assert "s3cret" not in str(bad.value)


def test_without_the_variable_the_stores_stay_in_the_data_folder(
        orchestrator_home: Path) -> None:
    stores = load_settings().stores
    assert (stores.runs, stores.checkpoints, stores.writes, stores.keys) == (
        orchestrator_home / "runs.sqlite", orchestrator_home / "checkpoints.sqlite",
        orchestrator_home / "writes.sqlite", orchestrator_home / "keys.sqlite")
    assert "s3cret" not in repr(Settings(database_url="postgresql://u:s3cret@h/db"))
