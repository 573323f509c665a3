"""The demo business systems: one database that the domain packs' tools read and write.

Which database a tool uses is a context variable, so parallel runs (and eval cases)
can each use their own copy without passing paths through every tool. Every connection is
opened by :func:`open_domain_db`, from a path or URL: SQLite (a path or ``sqlite:///path``)
or PostgreSQL (``postgresql://...``, see ``orchestrator.domain_pg``); each backend is one
entry in ``BACKENDS``. Tools write SQL that both engines accept (``?`` placeholders, standard
upserts, ``CURRENT_TIMESTAMP``) and read rows by column name.

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol, overload

from orchestrator.config import load_settings
from orchestrator.effects import AlreadyApplied, WriteCall, current_write, register_ledger
from orchestrator.errors import ConfigError
from orchestrator.storage.urls import StoreURL, parse_store_url

NOW_SQL = "substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19)"
"""The time now as ``YYYY-MM-DD HH:MM:SS`` (UTC) in SQLite and PostgreSQL alike (the
PostgreSQL backend's sessions run in UTC with ISO dates)."""

LEDGER_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS write_ledger (
    key TEXT PRIMARY KEY, tool TEXT NOT NULL, args TEXT NOT NULL, output TEXT,
    applied_at TEXT NOT NULL DEFAULT ({NOW_SQL}));
"""


class Row(Protocol):
    """A result row: by column name (``row["pool"]``) or position (``row[0]``)."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    """What ``Connection.execute`` returns (the DB-API subset tools use)."""

    @property
    def lastrowid(self) -> int | None: ...

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What tools get from :func:`connect`: ``sqlite3.Connection`` or its PostgreSQL twin."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Any, /) -> Cursor: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


class DomainBackend(Protocol):
    """One kind of business database: how it is opened, seeded and kept as a ledger."""

    @property
    def location(self) -> str | Path:
        """The path or URL (what :func:`use_domain_db` and the context hold)."""
        ...

    def open(self, timeout: float) -> Connection: ...

    def transaction(self, call: WriteCall | None) -> AbstractContextManager[Connection]:
        """A transaction that commits when the block ends, rolls back if it raises, closes
        (or keeps for this thread's next block, never in a transaction),
        and records ``call``'s key with its effect (AlreadyApplied when already there);
        creates and seeds the database on first use."""
        ...

    def reset(self, seeds: Sequence[tuple[str, str]]) -> None: ...

    def lookup(self, key: str) -> tuple[bool, str | None]: ...

    def save_output(self, key: str, output: str) -> None: ...


_create_lock = threading.Lock()


class SqliteDomain:
    """The business database in one SQLite file (the default, in the data folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def location(self) -> Path:
        return self.path

    def open(self, timeout: float) -> Connection:
        return _open_sqlite(self.path, timeout)

    @contextmanager
    def transaction(self, call: WriteCall | None) -> Iterator[Connection]:
        if not self.path.exists():
            self._create_once()
        # A write call's block waits for this process's other writers of the file in line
        # (see _writers_of); a read does not wait.
        with (_in_line(self.path) if call is not None else nullcontext()), \
                _held_connection(self.path) as conn:
            conn.execute("PRAGMA foreign_keys = ON")
            with conn:
                if call is not None and not call.checked:
                    call.checked = True
                    conn.execute("BEGIN IMMEDIATE")  # two processes cannot both miss the key
                    earlier = self._ledger_row(conn, call.key)
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
                    call.save_output = functools.partial(self.save_output, call.key)

    @staticmethod
    def _ledger_row(conn: sqlite3.Connection, key: str) -> sqlite3.Row | None:
        try:
            row: sqlite3.Row | None = conn.execute(
                "SELECT output FROM write_ledger WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:  # a database from before the ledger: add it
            conn.execute(LEDGER_SCHEMA)
            return None
        return row

    def save_output(self, key: str, output: str) -> None:
        with _in_line(self.path), _held_connection(self.path) as conn, conn:
            conn.execute("UPDATE write_ledger SET output = ? WHERE key = ?", (output, key))

    def lookup(self, key: str) -> tuple[bool, str | None]:
        if not self.path.exists():
            return False, None
        with _held_connection(self.path) as conn:
            try:
                row = conn.execute("SELECT output FROM write_ledger WHERE key = ?",
                                   (key,)).fetchone()
            except sqlite3.OperationalError:
                return False, None
            finally:
                conn.rollback()  # no read transaction left open on the kept connection
        return (True, row[0]) if row is not None else (False, None)

    def _create_once(self) -> None:
        # Parallel tools may all find the file missing; only the first creates it.
        target = self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        with _create_lock, open(target.with_name(target.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not target.exists():
                self.reset(_pack_seeds())

    def reset(self, seeds: Sequence[tuple[str, str]]) -> None:
        target = self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.unlink(missing_ok=True)
        conn = _open_sqlite(tmp, 30)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            for name, sql in seeds:
                try:
                    conn.executescript(sql)
                except sqlite3.Error as exc:
                    conn.close()
                    tmp.unlink(missing_ok=True)
                    raise ConfigError(f"domain pack {name!r}: its seed SQL failed: {exc}"
                                      ) from None
            conn.executescript(LEDGER_SCHEMA)
            conn.commit()
        finally:
            conn.close()
        for suffix in ("-wal", "-shm"):
            Path(str(target) + suffix).unlink(missing_ok=True)
        # An atomic rename: a crash mid-reset never leaves a half-seeded database.
        shutil.move(tmp, target)


def _open_sqlite(path: Path, timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=timeout)
    conn.row_factory = sqlite3.Row
    return conn


BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for the file (SQLite's busy timeout, and the in-process line)."""

_writer_locks: dict[str, threading.RLock] = {}
_writer_locks_lock = threading.Lock()


@contextmanager
def _in_line(path: Path) -> Iterator[None]:
    """Wait for this process's other writers of ``path`` (see :func:`_writers_of`), at most
    as long as SQLite's own wait: a writer stuck holding the file fails the next one with
    "database is locked", as SQLite would, instead of holding it up for good."""
    lock = _writers_of(path)
    if not lock.acquire(timeout=BUSY_TIMEOUT_S):
        raise sqlite3.OperationalError(
            f"database is locked: another write of this process has held {path.name} for "
            f"{BUSY_TIMEOUT_S:.0f} s")
    try:
        yield
    finally:
        lock.release()


def _writers_of(path: Path) -> threading.RLock:
    """The lock this process's writers of ``path`` take before they begin: SQLite lets one
    write at a time, and a writer that finds the file locked sleeps and tries again (1, 2,
    5, 10 ... 100 ms) rather than waiting in line. Under load (many runs writing at once, a
    busy event loop holding up the writer with the lock) the write calls of a run waited
    57 ms on average that way; in line, each starts as the one before ends. Writers in
    other processes still meet SQLite's own wait (the busy timeout)."""
    key = str(path)
    with _writer_locks_lock:
        lock = _writer_locks.get(key)
        if lock is None:
            lock = _writer_locks[key] = threading.RLock()
        return lock


class _KeptConnection(threading.local):
    """This thread's open connection to the last business database file it used.

    Opening a connection costs a parse of the whole schema (every domain pack's tables)
    on its first statement: two or three times a tool call, most of a tool's CPU. So each
    thread keeps one, for the file it was opened on: the file's identity (device, inode)
    is checked on every use, and a file replaced since (a reset renames a fresh one into
    place) or another path gets a new connection, the old one closed. A block that changed
    the connection itself (see :func:`_changes_connection`) has it closed when it ends.
    """

    conn: sqlite3.Connection | None = None
    file: tuple[str, int, int] | None = None
    busy = False
    changed = False
    """The block under way changed the kept connection: it is not kept after."""


_kept = _KeptConnection()


@contextmanager
def _held_connection(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to ``path`` for one block: this thread's kept one when it is free and
    still on the same file (a block inside another block gets its own, closed after)."""
    if _kept.busy:
        conn = _open_sqlite(path, 30)
        try:
            yield conn
        finally:
            conn.close()
        return
    conn = _kept_connection(path)
    _kept.busy, _kept.changed = True, False
    try:
        yield conn
    finally:
        _kept.busy = False
        try:
            if conn.in_transaction:  # a block that left its transaction open
                conn.rollback()
        except sqlite3.Error:  # closed by the block, or broken: not kept
            _forget_kept()
        if _kept.changed:
            _forget_kept()


def _kept_connection(path: Path) -> sqlite3.Connection:
    found = os.stat(path)
    file = (str(path), found.st_dev, found.st_ino)
    conn = _kept.conn
    if conn is not None and _kept.file == file:
        try:
            if conn.in_transaction:
                conn.rollback()
        except sqlite3.Error:
            _forget_kept()
        else:
            # As opened, whatever the last block set on the Python side (a block's own SQL
            # functions stay: SQLite cannot list them; see _changes_connection for SQL).
            conn.row_factory, conn.text_factory, conn.isolation_level = sqlite3.Row, str, "DEFERRED"
            return conn
    _forget_kept()
    conn = _open_sqlite(path, 30)
    conn.set_authorizer(_watch_kept)
    _kept.conn, _kept.file = conn, file
    return conn


_READING_PRAGMAS = frozenset({
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check"})
"""Pragmas that take an argument and only read."""


def _changes_connection(action: int, name: str | None, value: str | None,
                        database: str | None) -> bool:
    """Whether a statement changes the connection rather than the database: a TEMP object
    (made, dropped or written), an attached file, a pragma set (the foreign keys switched
    on, which every block does, aside)."""
    if action == sqlite3.SQLITE_PRAGMA:
        return value is not None and name not in _READING_PRAGMAS and not (
            name == "foreign_keys" and value.upper() in ("ON", "1", "TRUE", "YES"))
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return True
    return database == "temp" and action not in (sqlite3.SQLITE_READ, sqlite3.SQLITE_SELECT)


def _watch_kept(action: int, name: str | None, value: str | None, database: str | None,
                _trigger: str | None) -> int:
    """The kept connection's authorizer (SQLite asks it as it prepares each statement):
    notes a change to the connection, allows everything."""
    if _changes_connection(action, name, value, database):
        _kept.changed = True
    return sqlite3.SQLITE_OK


def _forget_kept() -> None:
    conn, _kept.conn, _kept.file = _kept.conn, None, None
    if conn is not None:
        conn.close()


def _postgres(url: StoreURL) -> DomainBackend:
    try:
        from orchestrator.domain_pg import PostgresDomain
    except ImportError as exc:
        raise ConfigError(f"the business database {url.redacted} needs psycopg: "
                          f"pip install 'agent-orchestrator[postgres]' ({exc})") from None
    return PostgresDomain(url)


def _sqlite(url: StoreURL) -> DomainBackend:
    assert url.path is not None
    return SqliteDomain(url.path)


#: Store backend (``orchestrator.storage.urls``) -> the business database of that kind.
BACKENDS: dict[str, Callable[[StoreURL], DomainBackend]] = {
    "sqlite": _sqlite, "postgres": _postgres}

_current: ContextVar[str | Path | None] = ContextVar("domain_db_location", default=None)


def domain_backend(location: str | Path) -> DomainBackend:
    """The backend for a path or URL; ConfigError for a location no backend opens."""
    # One reading of store URLs for every store (orchestrator.storage.urls).
    url = parse_store_url(location, what="business database")
    if url.backend not in BACKENDS:
        raise ConfigError(f"the business database needs a file or a server: a path, "
                          f"sqlite:///path or postgresql://user@host/db, not {url.redacted}")
    return BACKENDS[url.backend](url)


def domain_db_location(location: str | Path) -> str | Path:
    """Where a path or URL points (a Path for SQLite, the URL for PostgreSQL); ConfigError
    for a scheme no backend opens."""
    return domain_backend(location).location


def open_domain_db(location: str | Path, *, timeout: float = 30) -> Connection:
    """The one place a business database is opened (not created or seeded: see
    :func:`connect`)."""
    return domain_backend(location).open(timeout)


def current_domain_db() -> str | Path:
    """The business database tools use in the current context: the one set by
    :func:`use_domain_db`, else the settings' (``ORCHESTRATOR_DOMAIN_DB``)."""
    return _current.get() or load_settings().domain_db_url


@contextmanager
def use_domain_db(location: str | Path) -> Iterator[str | Path]:
    """Point the domain tools at ``location`` (a path or URL) inside this block (and tasks
    it starts)."""
    target = domain_db_location(location)
    token = _current.set(target)
    try:
        yield target
    finally:
        _current.reset(token)


@contextmanager
def connect(location: str | Path | None = None) -> Iterator[Connection]:
    """A transaction on the domain database (created and seeded on first use).

    Commits when the block ends and rolls back if it raises; the connection is closed, or
    kept for this thread's next block (SQLite: opening one parses the whole schema).
    """
    backend = domain_backend(location if location is not None else current_domain_db())
    with backend.transaction(current_write()) as conn:
        yield conn


def _lookup_effect(key: str) -> tuple[bool, str | None]:
    """The ledger lookup the engine uses before asking for approval of a write."""
    return domain_backend(current_domain_db()).lookup(key)


register_ledger(_lookup_effect)


def fetch_row(conn: Connection, sql: str, key: str, what: str) -> Row:
    """The one row ``sql`` finds for ``key``; ValueError "unknown <what> '<key>'" (a tool's
    rejection of bad input) when there is none."""
    row: Row | None = conn.execute(sql, (key,)).fetchone()
    if row is None:
        raise ValueError(f"unknown {what} {key!r}")
    return row


def _pack_seeds() -> list[tuple[str, str]]:
    from orchestrator.agents.domains import installed_packs

    return [(pack.name, sql) for pack in installed_packs() if (sql := pack.seed_sql()) is not None]


@overload
def reset_domain_db(path: Path) -> Path: ...


@overload
def reset_domain_db(path: str | None = None) -> str | Path: ...


def reset_domain_db(path: str | Path | None = None) -> str | Path:
    """Recreate the database from every installed domain pack's seed; returns its location
    (a Path for SQLite).

    A pack's seed that fails is a ConfigError naming the pack; the old database stays.
    """
    backend = domain_backend(path if path is not None else current_domain_db())
    backend.reset(_pack_seeds())
    return backend.location
