"""The demo business systems: one database that the domain packs' tools read and write.

Which database a tool uses is a context variable, so parallel runs (and eval cases)
can each use their own copy without passing paths through every tool. Every connection is
opened by :func:`open_domain_db`, from a path or URL: SQLite (a path or ``sqlite:///path``)
today; another backend is one module that adds its URL scheme to ``BACKENDS``.

Its tables come from the installed domain packs (each pack's ``seed.sql``); the engine
finds the packs through their entry points and names none of them.

It is also a write ledger (``orchestrator.effects``): a transaction opened while the engine
runs a write call records the call's idempotency key in ``write_ledger`` together with its
effect, and a call whose key is already there raises ``AlreadyApplied`` before it writes.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from orchestrator.config import load_settings
from orchestrator.effects import AlreadyApplied, current_write, register_ledger
from orchestrator.errors import ConfigError
from orchestrator.storage.urls import parse_store_url

#: What tools get from :func:`connect`: a DB-API connection whose rows read by column name.
Connection = sqlite3.Connection
Row = sqlite3.Row

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS write_ledger (
    key TEXT PRIMARY KEY, tool TEXT NOT NULL, args TEXT NOT NULL, output TEXT,
    applied_at TEXT NOT NULL DEFAULT (datetime('now')));
"""

_create_lock = threading.Lock()
_current_path: ContextVar[Path | None] = ContextVar("domain_db_path", default=None)


def _open_sqlite(path: Path, timeout: float) -> Connection:
    conn = sqlite3.connect(path, timeout=timeout)
    conn.row_factory = sqlite3.Row
    return conn


#: URL scheme -> the function that opens that kind of business database.
BACKENDS: dict[str, Callable[[Path, float], Connection]] = {"sqlite": _open_sqlite}


def _backend(location: str | Path) -> tuple[str, Path]:
    # One reading of store URLs for every store (orchestrator.storage.urls).
    url = parse_store_url(location, what="business database")
    if url.backend not in BACKENDS or url.path is None:
        raise ConfigError(f"the business database needs a file: a path or sqlite:///path "
                          f"(known backends: {', '.join(BACKENDS)}), not {location!s}")
    return url.backend, url.path


def domain_db_location(location: str | Path) -> Path:
    """Where a path or URL points; ConfigError for a scheme no backend opens."""
    return _backend(location)[1]


def open_domain_db(location: str | Path, *, timeout: float = 30) -> Connection:
    """The one place a business database is opened (not created or seeded: see
    :func:`connect`)."""
    scheme, where = _backend(location)
    return BACKENDS[scheme](where, timeout)


def domain_db_path() -> Path:
    """The database file tools use in the current context."""
    return _current_path.get() or load_settings().domain_db_path


@contextmanager
def use_domain_db(path: str | Path) -> Iterator[Path]:
    """Point the domain tools at ``path`` inside this block (and tasks it starts)."""
    target = domain_db_location(path)
    token = _current_path.set(target)
    try:
        yield target
    finally:
        _current_path.reset(token)


@contextmanager
def connect(path: str | Path | None = None) -> Iterator[Connection]:
    """A transaction on the domain database (created and seeded on first use).

    Commits when the block ends, rolls back if it raises, and always closes.
    """
    target = domain_db_location(path) if path is not None else domain_db_path()
    if not target.exists():
        _create_once(target)
    conn = open_domain_db(target)
    call = current_write()
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        with conn:
            if call is not None and not call.checked:
                call.checked = True
                conn.execute("BEGIN IMMEDIATE")  # two processes cannot both miss the key
                earlier = _ledger_row(conn, call.key)
                if earlier is not None:
                    raise AlreadyApplied(call.key, earlier["output"])
                if call.on_ledger is not None:  # whether it happens is now on record here
                    call.on_ledger()
            before = conn.total_changes
            yield conn
            if call is not None and call.save_output is None and conn.total_changes > before:
                # The key goes in with the effect, in the same transaction.
                conn.execute("INSERT INTO write_ledger (key, tool, args) VALUES (?, ?, ?)",
                             (call.key, call.tool, json.dumps(call.args, default=str)))
                call.save_output = functools.partial(_save_output, target, call.key)
    finally:
        conn.close()


def _ledger_row(conn: Connection, key: str) -> Row | None:
    try:
        row: Row | None = conn.execute(
            "SELECT output FROM write_ledger WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:  # a database from before the ledger: add it
        conn.execute(LEDGER_SCHEMA)
        return None
    return row


def _save_output(path: Path, key: str, output: str) -> None:
    with open_domain_db(path) as conn:
        conn.execute("UPDATE write_ledger SET output = ? WHERE key = ?", (output, key))
    conn.close()


def _lookup_effect(key: str) -> tuple[bool, str | None]:
    """The ledger lookup the engine uses before asking for approval of a write."""
    target = domain_db_path()
    if not target.exists():
        return False, None
    conn = open_domain_db(target)
    try:
        row = conn.execute("SELECT output FROM write_ledger WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:
        return False, None
    finally:
        conn.close()
    return (True, row[0]) if row is not None else (False, None)


register_ledger(_lookup_effect)


def fetch_row(conn: Connection, sql: str, key: str, what: str) -> Row:
    """The one row ``sql`` finds for ``key``; ValueError "unknown <what> '<key>'" (a tool's
    rejection of bad input) when there is none."""
    row: Row | None = conn.execute(sql, (key,)).fetchone()
    if row is None:
        raise ValueError(f"unknown {what} {key!r}")
    return row


def _create_once(target: Path) -> None:
    # Parallel tools may all find the file missing; only the first creates it.
    target.parent.mkdir(parents=True, exist_ok=True)
    with _create_lock, open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            reset_domain_db(target)


def reset_domain_db(path: str | Path | None = None) -> Path:
    """Recreate the database from every installed domain pack's seed; returns its path.

    A pack's seed that fails is a ConfigError naming the pack; the old database stays.
    """
    from orchestrator.agents.domains import installed_packs

    target = domain_db_location(path) if path is not None else domain_db_path()
    seeds = [(pack.name, sql) for pack in installed_packs()
             if (sql := pack.seed_sql()) is not None]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    conn = open_domain_db(tmp)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        for name, sql in seeds:
            try:
                conn.executescript(sql)
            except sqlite3.Error as exc:
                conn.close()
                tmp.unlink(missing_ok=True)
                raise ConfigError(f"domain pack {name!r}: its seed SQL failed: {exc}") from None
        conn.executescript(LEDGER_SCHEMA)
        conn.commit()
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    # An atomic rename: a crash mid-reset never leaves a half-seeded database.
    shutil.move(tmp, target)
    return target
