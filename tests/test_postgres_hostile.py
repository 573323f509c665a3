"""The PostgreSQL backend (issue 15) used the way a hostile or unlucky user would: SQL text
and values the placeholder translation must leave alone, URLs that must not show their
password, a database that already holds tables of our names, and connections the server
dropped. Each test is a defect found in review (it failed before its fix).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.api_key_rows import open_key_rows
from orchestrator.config import Settings
from orchestrator.domain_db import connect, open_domain_db, reset_domain_db
from orchestrator.domain_pg import close_pools
from orchestrator.errors import ConfigError
from orchestrator.results import RunResult
from orchestrator.storage import open_run_store
from orchestrator.storage.factory import open_checkpointer
from orchestrator.storage.postgres import describe
from orchestrator.storage.urls import parse_store_url, redact_url
from tests.conftest import INCIDENT_REQUEST


@pytest.fixture(autouse=True)
def closed_pools() -> Iterator[None]:
    yield
    close_pools()


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _terminate_backends(cluster: Any, url: str) -> int:
    """Drop every connection to ``url``'s database from the server side (as a restart, a
    failover or an idle timeout does); how many there were."""
    return int(cluster.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = '{_database(url)}' AND pid <> pg_backend_pid()"))


def test_question_marks_in_dollar_quotes_and_escape_strings_are_text(postgres_url: str
                                                                     ) -> None:
    reset_domain_db(postgres_url)
    conn = open_domain_db(postgres_url)
    try:
        cases = {
            "SELECT $$a?b$$, ?": ("a?b", "v"),
            "SELECT $tag$ it's ? $tag$, ?": (" it's ? ", "v"),
            "SELECT E'it\\'s ?', ?": ("it's ?", "v"),
            "SELECT e'back\\\\slash?', ?": ("back\\slash?", "v"),
            "SELECT 'a\\', ?": ("a\\", "v"),  # standard strings: a backslash is text
        }
        for sql, expected in cases.items():
            assert tuple(conn.execute(sql, ("v",)).fetchone()) == expected, sql
    finally:
        conn.close()


def test_values_are_parameters_never_sql(postgres_url: str) -> None:
    reset_domain_db(postgres_url)
    hostile = ["'; DROP TABLE incidents; --", "%s %% %(x)s ?", "$$ ? $$", "E'\\''",
               "/* ? */", "\\", "é中😀" * 50_000]
    with connect(postgres_url) as conn:
        for value in hostile:
            assert conn.execute("SELECT ?, ?", (value, 1)).fetchone()[0] == value
        conn.execute("INSERT INTO services (name, family, team, tier, status, rps) "
                     "VALUES (?, ?, ?, 1, 'up', 1)", (hostile[0], hostile[1], hostile[2]))
    with connect(postgres_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM incidents").fetchone()[0] == 0
        row = conn.execute("SELECT family, team FROM services WHERE name = ?",
                           (hostile[0],)).fetchone()
    assert tuple(row) == (hostile[1], hostile[2])


@pytest.mark.parametrize("password", ["s3cr%zzet", "s3cr/et", "s3cr?et", "s3cr#et"])
def test_a_malformed_url_never_shows_its_password(postgres_cluster: Any, password: str
                                                  ) -> None:
    """A password not percent-encoded (``/``, ``?``, ``#``, a bad ``%``) breaks the URL; the
    message must still hide it, from every store and the business database."""
    url = f"postgresql://bob:{password}@127.0.0.1:{postgres_cluster.port}/orch"
    assert password not in redact_url(url)
    location = parse_store_url(url)
    assert password not in describe(location, ValueError(f'bad token "{password}"'))
    for open_store in (lambda: open_run_store(url),
                       lambda: open_checkpointer(url).__enter__(),
                       lambda: connect(url).__enter__()):
        with pytest.raises((ConfigError, ConnectionError)) as caught:
            open_store()
        message = str(caught.value)
        assert password not in message and "\n" not in message, message
        assert "s3cr" not in message, message  # nor the part a parser cut off


def test_a_business_schema_holding_other_tables_is_refused_not_dropped(
        postgres_cluster: Any, postgres_url: str) -> None:
    """A database whose ``business`` schema already holds the company's own ``orders`` is
    not seeded over (the packs' seeds drop and recreate their tables)."""
    database = _database(postgres_url)
    postgres_cluster.psql("CREATE SCHEMA business; CREATE TABLE business.orders "
                          "(id INT, note TEXT); INSERT INTO business.orders VALUES "
                          "(1, 'precious')", database)
    with pytest.raises(ConfigError) as caught, connect(postgres_url) as conn:
        conn.execute("SELECT 1")
    message = str(caught.value)
    assert "business" in message and "orders" in message and "\n" not in message
    assert postgres_cluster.psql("SELECT note FROM business.orders", database) == "precious"
    reset_domain_db(postgres_url)  # asked for explicitly, a reset replaces them
    with connect(postgres_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] > 1


def test_stores_recover_from_connections_the_server_dropped(postgres_cluster: Any,
                                                            postgres_url: str) -> None:
    """After a server restart or failover every pooled connection is dead; the next call
    gets a live one instead of failing once per dead connection."""
    store = open_run_store(postgres_url)
    try:
        assert store.list_runs() == []
        with open_checkpointer(postgres_url) as saver:
            config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
            assert saver.get_tuple(config) is None
            assert _terminate_backends(postgres_cluster, postgres_url) >= 2
            assert store.list_runs() == []
            assert saver.get_tuple(config) is None
    finally:
        store.close()


def _run_with_a_statement_dropped(url: str, table: str, request: str, orch: Orchestrator
                                  ) -> RunResult | BaseException:
    """Run ``request`` while ``table`` is locked; the first statement that waits on the lock
    has its connection terminated by the server (mid-transaction); then the lock goes. What
    the caller got: the result, or what was raised."""
    got: list[RunResult | BaseException] = []

    def run() -> None:
        try:
            got.append(orch.run(request))
        except BaseException as exc:  # what the caller got is the subject
            got.append(exc)

    with psycopg.connect(url) as admin:
        admin.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=run)
        worker.start()
        with psycopg.connect(url, autocommit=True) as watcher:
            waiting: list[Any] = []
            while not waiting and worker.is_alive():  # polling for the waiter, not timing
                waiting = watcher.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'").fetchall()
            assert waiting, "the run never waited on the lock"
            watcher.execute("SELECT pg_terminate_backend(%s)", (waiting[0][0],))
        admin.rollback()
    worker.join(120)
    assert not worker.is_alive()
    return got[0]


def test_a_checkpoint_connection_dropped_mid_run_is_one_line_and_the_next_run_works(
        postgres_url: str, domain_db: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", postgres_url)
    with Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db,
                      settings=Settings(knowledge=False)) as orch:
        assert orch.run("check the health of web-1").ok  # the tables are there
        got = _run_with_a_statement_dropped(postgres_url, "orchestrator.checkpoints",
                                            INCIDENT_REQUEST, orch)
        # no traceback (it was psycopg's AdminShutdown): the run stopped, resumable
        assert isinstance(got, RunResult) and got.status == "interrupted", repr(got)
        assert got.error is not None and "\n" not in got.error
        assert "the checkpoint store at 'postgresql://" in got.error, got.error
        assert "orchestrator resume" in got.error
        assert orch.runs is not None
        assert orch.runs.run(got.run_id)["status"] == "interrupted"
        resumed = orch.resume_run(got.run_id)  # the database answers again
        assert resumed.status == "ok", resumed
        with sqlite3.connect(domain_db) as db:  # nothing written twice
            tools = [row[0] for row in db.execute("SELECT tool FROM write_ledger")]
        assert len(tools) == len(set(tools))
        assert orch.run("check the health of web-2").ok  # the pool recovered


def test_a_user_without_create_rights_uses_schemas_an_administrator_made(
        postgres_cluster: Any, postgres_url: str) -> None:
    """Least privilege: the application's user may not create schemas in the database; the
    stores work in the schemas an administrator made for it, and without them the error
    says what to grant."""
    database = _database(postgres_url)
    role = f"app_{database}"
    postgres_cluster.psql(f"CREATE ROLE {role} LOGIN")
    postgres_cluster.psql(f"REVOKE CREATE ON DATABASE {database} FROM PUBLIC", database)
    url = postgres_url.replace("postgres@", f"{role}@")
    with pytest.raises(ConfigError) as caught:
        open_run_store(url)
    message = str(caught.value)
    assert "permission denied" in message and "CREATE" in message and "\n" not in message
    with pytest.raises(ConfigError, match="CREATE SCHEMA business AUTHORIZATION"), \
            connect(url):
        pass

    postgres_cluster.psql(f"CREATE SCHEMA orchestrator AUTHORIZATION {role}; "
                          f"CREATE SCHEMA business AUTHORIZATION {role}", database)
    store = open_run_store(url)
    store.close()
    open_key_rows(url).close()
    with connect(url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM services").fetchone()[0] > 0


def test_a_runs_start_is_the_databases_time_not_a_skewed_clients(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resume asks which of a thread's runs came later; machines whose clocks disagree
    must not reorder them, so a run's start is taken from the database's clock."""
    import time as clock

    from orchestrator.leases import Owner

    store = open_run_store(postgres_url)
    try:
        real = clock.time()
        monkeypatch.setattr(clock, "time", lambda: real + 3600.0)  # this machine runs ahead
        store.start_run("run-ahead", "th", "hello", owner=Owner.here(), lease_s=60)
        monkeypatch.undo()
        started = store.run("run-ahead")["started_at"]
        assert abs(started - clock.time()) < 60, started - clock.time()
        store.start_run("run-next", "th", "again", owner=Owner.here(), lease_s=60)
        assert store.later_run("th", started) == "run-next"
    finally:
        store.close()
