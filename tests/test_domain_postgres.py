"""The business database in PostgreSQL (issue 15): the packs' seeds, a request end to end,
writes exactly once across processes, and ``demo reset``, on a real server.

Each test has a database of its own in the session's throwaway cluster (``postgres_url``);
what PostgreSQL holds is compared with what SQLite holds after the same seed or run.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import tools as it_tools
from orchestrator.config import Settings
from orchestrator.domain_db import connect, open_domain_db, reset_domain_db, use_domain_db
from orchestrator.domain_pg import close_pools
from orchestrator.effects import AlreadyApplied, WriteCall, write_call
from tests.conftest import INCIDENT_REQUEST
from tests.support.pack_calls import EVERY_TOOL, Tables, call_every_tool, normalised, sqlite_tables

ROOT = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def closed_pools() -> Iterator[None]:
    """Each test's connection pools closed after it (the cluster stops once no one is
    connected)."""
    yield
    close_pools()


def postgres_tables(url: str, skip: frozenset[str] = frozenset()) -> Tables:
    with psycopg.connect(url) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'business' "
            "ORDER BY table_name")]
        return {name: sorted((tuple(normalised(v) for v in row) for row in conn.execute(
            f"SELECT * FROM business.{name}")), key=repr)  # type: ignore[arg-type]
            for name in names if name not in skip}


def ledger(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT tool, args FROM business.write_ledger ORDER BY tool, args")]


def count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])


def test_every_pack_seed_loads_with_the_same_rows_as_sqlite(postgres_url: str,
                                                            domain_db: Path) -> None:
    assert reset_domain_db(postgres_url) == postgres_url
    seeded = postgres_tables(postgres_url)
    assert seeded == sqlite_tables(domain_db)
    assert {"routes", "alerts", "products", "transactions", "patients", "campaigns",
            "write_ledger"} <= set(seeded)
    assert seeded["services"] and seeded["orders"] and not seeded["write_ledger"]


def test_tools_read_rows_by_name_and_sql_keeps_question_marks_in_strings(
        postgres_url: str) -> None:
    reset_domain_db(postgres_url)
    with use_domain_db(postgres_url), connect() as conn:
        row = conn.execute("SELECT '?' AS mark, 'a%b' AS pct, ? AS n -- really?\n", (5,)
                           ).fetchone()
        assert (row["mark"], row["pct"], row["n"], row[2], tuple(row)) == (
            "?", "a%b", 5, 5, ("?", "a%b", 5))
        assert row.keys() == ["mark", "pct", "n"]
        first = conn.execute("INSERT INTO alerts (service, team, person, severity, message) "
                             "VALUES ('web-1', 't', 'p', 'low', 'one')")
        second = conn.execute("INSERT INTO alerts (service, team, person, severity, message) "
                              "VALUES ('web-1', 't', 'p', 'low', 'two');")
        assert (first.lastrowid, second.lastrowid) == (1, 2)
        assert [r[0] for r in conn.execute("SELECT message FROM alerts ORDER BY id")] == [
            "one", "two"]
    conn.close()  # closed twice, as sqlite3 allows
    assert it_tools.check_service_health.invoke({"service": "web-3"}).startswith(
        "web-3 is down (team web-platform, pool web-primary); cpu 12%")


def test_a_connection_closed_inside_a_read_is_rolled_back_quietly(
        postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    reset_domain_db(postgres_url)
    with use_domain_db(postgres_url):
        for _ in range(3):  # the pool hands the same connection out again
            conn = open_domain_db(postgres_url)
            assert conn.execute("SELECT COUNT(*) FROM incidents").fetchone()[0] == 0
            conn.close()  # no commit, as a sqlite3 reader does
    assert not [r for r in caplog.records if "rolling back" in r.getMessage()], caplog.text


def test_the_incident_run_leaves_the_same_business_rows_as_sqlite(
        postgres_url: str, domain_db: Path, tmp_path: Path) -> None:
    reset_domain_db(postgres_url)
    on_sqlite = Orchestrator("fake", domain_db=domain_db,
                             settings=Settings(home=tmp_path / "a")).run(INCIDENT_REQUEST)
    on_postgres = Orchestrator("fake", domain_db=postgres_url,
                               settings=Settings(home=tmp_path / "b")).run(INCIDENT_REQUEST)

    assert on_sqlite.ok and on_postgres.ok
    assert on_postgres.answer == on_sqlite.answer
    assert "web-backup-b" in on_postgres.answer
    keyed = frozenset({"write_ledger"})  # its keys name the run
    after = postgres_tables(postgres_url, keyed)
    assert after == sqlite_tables(domain_db, keyed)
    assert after != postgres_tables_seeded(tmp_path)  # the run wrote: the check can fail
    assert [r[1] for r in after["routes"] if r[0] == "web-3"] == ["web-backup-b"]
    assert len(after["alerts"]) == len(after["incidents"]) == 1
    with sqlite3.connect(domain_db) as conn:
        sqlite_ledger = [(r[0], r[1]) for r in conn.execute(
            "SELECT tool, args FROM write_ledger ORDER BY tool, args")]
    conn.close()
    assert ledger(postgres_url) == sqlite_ledger
    assert {tool for tool, _ in sqlite_ledger} == {"reroute_traffic", "alert_oncall",
                                                   "log_incident"}


def test_every_pack_tool_returns_and_writes_the_same_on_both(postgres_url: str,
                                                             domain_db: Path) -> None:
    reset_domain_db(postgres_url)
    on_postgres = call_every_tool(postgres_url)
    assert on_postgres == call_every_tool(domain_db)
    assert postgres_tables(postgres_url) == sqlite_tables(domain_db)
    said = dict(zip([name for _, name, _ in EVERY_TOOL], on_postgres, strict=False))
    assert said["show_route"] == "web-3 routes to web-backup-b (since <now>, failover)."
    assert said["log_incident"] == "Logged incident #1 (high) for web-3."
    assert "tx-1007" in said["list_suspicious_transactions"]  # two payments two minutes apart
    assert said["forecast_demand"].startswith("Forecast for sku-5: demand 0.5 units/week")
    assert said["analyze_campaign"] == ("cmp-4: open rate 15.4%, click rate 1.3%; next send: "
                                        "send at 19:00 (history 33% opens); lead with one "
                                        "product benefit and a single call to action.")


def postgres_tables_seeded(tmp_path: Path) -> Tables:
    return sqlite_tables(reset_domain_db(tmp_path / "fresh.sqlite"), frozenset({"write_ledger"}))


def test_one_write_key_sent_twice_writes_once(postgres_url: str) -> None:
    reset_domain_db(postgres_url)
    page = {"service": "api-1", "message": "latency"}
    with use_domain_db(postgres_url):
        with write_call(WriteCall("w-twice", "alert_oncall", page)) as call:
            first = it_tools.alert_oncall.invoke(page)
        assert call.save_output is not None
        call.save_output(first)  # as the engine does once the tool returned
        with pytest.raises(AlreadyApplied) as again, write_call(
                WriteCall("w-twice", "alert_oncall", page)):
            it_tools.alert_oncall.invoke(page)
    assert again.value.output == first == (
        "Paged Lee Tanaka (api-core on-call, #api-oncall) with a high alert #1 about api-1.")
    assert count(postgres_url, "SELECT count(*) FROM business.alerts") == 1
    assert ledger(postgres_url) == [("alert_oncall", '{"service": "api-1", "message": '
                                     '"latency"}')]


def test_a_write_that_changed_nothing_or_failed_does_not_spend_its_key(
        postgres_url: str) -> None:
    reset_domain_db(postgres_url)
    with use_domain_db(postgres_url):
        with write_call(WriteCall("w-noop", "reroute_traffic", {"service": "web-1"})):
            it_tools.reroute_traffic.invoke({"service": "web-1", "backup_pool": "web-backup-b"})
        # web-1 already routes there: nothing changes, the key stays free.
        with write_call(WriteCall("w-same", "reroute_traffic", {"service": "web-1"})):
            said = it_tools.reroute_traffic.invoke({"service": "web-1",
                                                    "backup_pool": "web-backup-b"})
        with write_call(WriteCall("w-bad", "log_incident", {"service": "web-9"})), \
                pytest.raises(ValueError, match="unknown service 'web-9'"):
            it_tools.log_incident.invoke({"service": "web-9", "summary": "x"})
        with write_call(WriteCall("w-bad", "log_incident", {"service": "web-1"})):
            it_tools.log_incident.invoke({"service": "web-1", "summary": "slow"})
    assert said == "web-1 already routes to web-backup-b; nothing changed."
    with psycopg.connect(postgres_url) as conn:
        keys = [r[0] for r in conn.execute("SELECT key FROM business.write_ledger ORDER BY key")]
    assert keys == ["w-bad", "w-noop"]


def test_processes_racing_one_write_key_write_once(postgres_url: str,
                                                   postgres_cluster: Any) -> None:
    reset_domain_db(postgres_url)
    script = textwrap.dedent(f"""
        from orchestrator.agents.it_ops import tools as t
        from orchestrator.domain_db import use_domain_db
        from orchestrator.effects import AlreadyApplied, WriteCall, write_call
        with use_domain_db({postgres_url!r}):
            try:
                with write_call(WriteCall("w-race", "log_incident", {{"service": "db-1"}})):
                    t.log_incident.invoke({{"service": "db-1", "summary": "replica lag"}})
                print("wrote")
            except AlreadyApplied:
                print("already applied")
    """)
    with psycopg.connect(postgres_url) as holder:
        # Hold back every insert into incidents, so all three are inside their transaction,
        # key claimed or waiting on the claim, at the same time.
        holder.execute("LOCK TABLE business.incidents IN EXCLUSIVE MODE")
        procs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE) for _ in range(3)]
        database = postgres_url.rsplit("/", 1)[1]
        deadline = time.monotonic() + 90
        while postgres_cluster.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                f"AND datname = '{database}'") != "3":
            assert time.monotonic() < deadline, "the three writers never met"
            assert all(p.poll() is None for p in procs)
            time.sleep(0.05)  # polling for the three to be blocked, not timing them
        holder.rollback()
    said = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert said == ["already applied", "already applied", "wrote"]
    assert count(postgres_url, "SELECT count(*) FROM business.incidents "
                               "WHERE service = 'db-1'") == 1
    assert count(postgres_url, "SELECT count(*) FROM business.write_ledger") == 1


def cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "COLUMNS": "200", **env})


def test_demo_reset_on_postgres_reseeds_only_the_packs_tables(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:  # someone else's tables, same names
        conn.execute("CREATE TABLE public.alerts (note TEXT)")
        conn.execute("INSERT INTO public.alerts VALUES ('keep me')")
        conn.execute("CREATE SCHEMA orchestrator")
        conn.execute("CREATE TABLE orchestrator.runs (id TEXT)")
    env = {"ORCHESTRATOR_DOMAIN_DB": postgres_url, "ORCHESTRATOR_KNOWLEDGE": "false"}
    first = cli("demo", "reset", env=env)
    assert first.wait(timeout=120) == 0, first.communicate()[1]
    with use_domain_db(postgres_url):
        it_tools.log_incident.invoke({"service": "web-1", "summary": "drill"})
    assert count(postgres_url, "SELECT count(*) FROM business.incidents") == 1

    both = [cli("demo", "reset", env=env) for _ in range(2)]  # at once: they take turns
    outputs = [p.communicate(timeout=120) for p in both]
    assert [p.returncode for p in both] == [0, 0], outputs
    host = postgres_url.split("@", 1)[1]
    assert all(f"Demo database reset: 'postgresql://postgres@{host}'" in out
               for out, _ in outputs)
    assert count(postgres_url, "SELECT count(*) FROM business.incidents") == 0
    assert count(postgres_url, "SELECT count(*) FROM business.services") == 7
    assert count(postgres_url, "SELECT count(*) FROM public.alerts") == 1
    assert count(postgres_url, "SELECT count(*) FROM orchestrator.runs") == 0


def test_the_business_database_follows_the_database_url_unless_set(tmp_path: Path) -> None:
    url = "postgresql://orch@db.internal/orchestrator"
    assert Settings(home=tmp_path).domain_db_url == tmp_path / "domain.sqlite"
    assert Settings(home=tmp_path, database_url=url).domain_db_url == url
    assert Settings(home=tmp_path, database_url=url,
                    domain_db=str(tmp_path / "own.sqlite")).domain_db_url == str(
                        tmp_path / "own.sqlite")


def test_with_only_the_database_url_the_run_writes_the_business_rows_there(
        postgres_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", database_url=postgres_url)
    orch = Orchestrator("fake", settings=settings)
    try:
        result = orch.run(INCIDENT_REQUEST)
    finally:
        orch.close()
    assert result.ok
    assert not (tmp_path / "home" / "domain.sqlite").exists()
    assert count(postgres_url, "SELECT count(*) FROM business.incidents "
                               "WHERE service = 'web-3'") == 1
    assert count(postgres_url, "SELECT count(*) FROM business.write_ledger") == 3
    with psycopg.connect(postgres_url) as conn:  # the run store, next to it
        assert conn.execute("SELECT count(*) FROM orchestrator.runs").fetchone() == (1,)


def test_a_block_that_changes_its_session_does_not_hand_the_change_to_the_next(
        postgres_url: str) -> None:
    # As on SQLite: TEMP tables and settings a tool leaves on its pooled connection are
    # gone when the next block (another run's tool, maybe) gets that connection.
    reset_domain_db(postgres_url)
    with use_domain_db(postgres_url):
        with connect() as conn:
            conn.execute("CREATE TEMP TABLE seen (n INTEGER)")
            conn.execute("SET default_transaction_read_only = on")
            conn.execute("SET search_path = public")
        sessions = set()
        for _ in range(4):  # the pool hands its connections out in turn
            with connect() as conn:
                sessions.add(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
                assert conn.execute("SELECT to_regclass('pg_temp.seen') IS NULL").fetchone()[0]
                assert conn.execute("SHOW search_path").fetchone()[0] == "business"
                conn.execute("INSERT INTO alerts (service, team, person, severity, message) "
                             "VALUES ('web-1', 't', 'p', 'low', 'after')")  # not read-only
    assert count(postgres_url, "SELECT COUNT(*) FROM business.alerts WHERE message = 'after'"
                 ) == 4
    assert len(sessions) <= 2  # the changed connection was cleaned, not thrown away
