"""The SQLite business database keeps one connection per thread between tool calls (opening
one parses the whole schema): these tests check that reuse never shows a tool stale or
half-done state."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from orchestrator import domain_db as domain_db_module
from orchestrator.domain_db import connect, reset_domain_db, use_domain_db
from orchestrator.effects import WriteCall, write_call


def _alerts(path: Path) -> int:
    with connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM alerts").fetchone()[0])


def _add_alert(conn: sqlite3.Connection | object) -> None:
    conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO alerts (service, team, person, severity, message) VALUES (?, ?, ?, ?, ?)",
        ("web-3", "sre", "ana", "high", "test"))


def test_a_reset_database_is_read_fresh_not_through_the_kept_connection(
        domain_db: Path) -> None:
    seeded = _alerts(domain_db)
    with connect(domain_db) as conn:
        _add_alert(conn)
    assert _alerts(domain_db) == seeded + 1
    reset_domain_db(domain_db)  # a new file renamed into place
    assert _alerts(domain_db) == seeded
    with connect(domain_db) as conn:  # and writes go to the new file
        _add_alert(conn)
    outside = sqlite3.connect(domain_db)
    try:
        assert outside.execute("SELECT count(*) FROM alerts").fetchone()[0] == seeded + 1
    finally:
        outside.close()


def test_a_change_committed_elsewhere_is_seen_by_the_next_call(domain_db: Path) -> None:
    seeded = _alerts(domain_db)
    outside = sqlite3.connect(domain_db)
    try:
        with outside:
            _add_alert(outside)
    finally:
        outside.close()
    assert _alerts(domain_db) == seeded + 1


def test_each_database_gets_its_own_rows(tmp_path: Path) -> None:
    first = reset_domain_db(tmp_path / "a.sqlite")
    second = reset_domain_db(tmp_path / "b.sqlite")
    seeded = _alerts(first)
    with use_domain_db(first), connect() as conn:
        _add_alert(conn)
    assert (_alerts(first), _alerts(second)) == (seeded + 1, seeded)


def test_a_failed_block_rolls_back_and_the_next_call_works(domain_db: Path) -> None:
    seeded = _alerts(domain_db)
    with pytest.raises(sqlite3.IntegrityError), connect(domain_db) as conn:
        _add_alert(conn)
        conn.execute("INSERT INTO alerts (service, team, person, severity, message) "
                     "VALUES ('no-such-service', 'sre', 'ana', 'low', 'x')")  # foreign key
    assert _alerts(domain_db) == seeded


def test_a_tool_that_closes_its_connection_does_not_break_the_next_call(
        domain_db: Path) -> None:
    seeded = _alerts(domain_db)
    with pytest.raises(sqlite3.ProgrammingError), connect(domain_db) as conn:
        conn.close()  # the block's end cannot commit on a closed connection
    with connect(domain_db) as conn:
        _add_alert(conn)
    assert _alerts(domain_db) == seeded + 1


def test_a_block_inside_a_block_has_its_own_connection(domain_db: Path) -> None:
    seeded = _alerts(domain_db)
    with connect(domain_db) as outer:
        _add_alert(outer)
        with connect(domain_db) as inner:  # a read inside: it does not commit the outer
            assert inner is not outer
            assert inner.execute("SELECT count(*) FROM alerts").fetchone()[0] == seeded
        outer.rollback()
    assert _alerts(domain_db) == seeded


def test_a_writer_stuck_holding_the_file_fails_the_next_one_as_sqlite_would(
        domain_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Writers of this process wait in line, but no longer than SQLite's own busy timeout.
    monkeypatch.setattr(domain_db_module, "BUSY_TIMEOUT_S", 0.3)
    inside, leave = threading.Event(), threading.Event()

    def stuck() -> None:
        with write_call(WriteCall("k-stuck", "alert_oncall", {})), connect(domain_db) as conn:
            _add_alert(conn)
            inside.set()
            leave.wait(10)

    holder = threading.Thread(target=stuck)
    holder.start()
    try:
        assert inside.wait(10)
        with pytest.raises(sqlite3.OperationalError, match="database is locked"), \
                write_call(WriteCall("k-next", "alert_oncall", {})), connect(domain_db) as conn:
            _add_alert(conn)
    finally:
        leave.set()
        holder.join(10)
    with write_call(WriteCall("k-after", "alert_oncall", {})), connect(domain_db) as conn:
        _add_alert(conn)  # once it let go, the next writer goes ahead


def test_a_block_that_changes_its_connection_does_not_hand_the_change_to_the_next(
        domain_db: Path) -> None:
    # A tool that makes TEMP objects, sets a PRAGMA or attaches a file changes the
    # connection itself, not the database: the next block (another run's tool, maybe)
    # must not meet a trigger it never made, a read-only connection or another file.
    seeded = _alerts(domain_db)
    with connect(domain_db) as conn:
        conn.execute("CREATE TEMP TABLE seen (n INTEGER)")
        conn.execute("CREATE TEMP TRIGGER spy AFTER INSERT ON main.alerts "
                     "BEGIN INSERT INTO seen VALUES (NEW.id); END")
    with connect(domain_db) as conn:
        _add_alert(conn)
        temp = conn.execute("SELECT name FROM sqlite_temp_master").fetchall()
    assert temp == []
    with connect(domain_db) as conn:
        conn.execute("PRAGMA query_only = 1")
    with connect(domain_db) as conn:
        _add_alert(conn)  # would fail: "attempt to write a readonly database"
    with connect(domain_db) as conn:
        conn.execute("ATTACH DATABASE ':memory:' AS side")
    with connect(domain_db) as conn:
        assert [row[1] for row in conn.execute("PRAGMA database_list")] == ["main"]
    assert _alerts(domain_db) == seeded + 2


def test_reading_the_schema_keeps_the_connection(domain_db: Path) -> None:
    # Pragmas that only read (a table's columns, the foreign keys switched on) and plain
    # statements are no change: the next block gets the same connection, not a new one.
    with connect(domain_db) as conn:
        conn.execute("PRAGMA table_info(alerts)").fetchall()
        conn.execute("PRAGMA foreign_keys").fetchone()
        first = conn
    with connect(domain_db) as conn:
        _add_alert(conn)
        assert conn is first


def test_a_block_that_switches_autocommit_off_leaves_the_next_one_transactional(
        domain_db: Path) -> None:
    seeded = _alerts(domain_db)
    with connect(domain_db) as conn:
        conn.isolation_level = None  # type: ignore[attr-defined]  # autocommit, Python side
    with pytest.raises(sqlite3.IntegrityError), connect(domain_db) as conn:
        _add_alert(conn)
        conn.execute("INSERT INTO alerts (service, team, person, severity, message) "
                     "VALUES ('no-such-service', 'sre', 'ana', 'low', 'x')")  # foreign key
    assert _alerts(domain_db) == seeded  # the first insert was rolled back with the block
