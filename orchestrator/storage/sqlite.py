"""The SQLite backend: the files in the data folder, the checkpointer and the write journal.

Every file is opened the same way (:func:`connect`): WAL with ``synchronous=NORMAL`` (what is
committed survives a killed process; a power cut may lose the last commits, never corrupt the
file) and a busy timeout of :data:`BUSY_TIMEOUT_S`, so writers in other processes wait for
each other instead of failing with ``database is locked``. Within a process each store keeps
one connection for its life, so its own writers queue instead of contending.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from langgraph.checkpoint.sqlite import SqliteSaver

from orchestrator.errors import ConfigError
from orchestrator.storage.group_commit import GroupCommitter
from orchestrator.storage.threaded_saver import ThreadedAsyncSaver
from orchestrator.write_journal import JournalEntry, JournalState

_T = TypeVar("_T")

BUSY_TIMEOUT_S = 60.0
"""How long a write waits for another connection's write to finish before it fails."""
MEMORY = ":memory:"


def connect(path: Path) -> sqlite3.Connection:
    """A connection for a store's life (opening one per call costs milliseconds), shared
    across threads under the store's own lock; ``:memory:`` for a private in-memory file."""
    if str(path) == MEMORY:
        return sqlite3.connect(MEMORY, check_same_thread=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    _tune(conn)
    return conn


def _tune(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")


class SqliteCheckpointSaver(ThreadedAsyncSaver, SqliteSaver):
    """LangGraph's ``SqliteSaver`` with its async methods run on one thread of its own,
    which commits the writes waiting together at once (:mod:`.group_commit`).

    ``AsyncSqliteSaver`` (aiosqlite) makes three or four thread hops per checkpoint (execute,
    commit, cursor) and belongs to the event loop that opened it; this saver makes one hop
    per call, and works from any event loop, so one instance serves a process (the
    synchronous API runs each call in a loop of its own, committed at once). A call returns
    once its write is committed. Statements are serialised on the one connection; other
    processes wait for the file up to :data:`BUSY_TIMEOUT_S`.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self.lock = threading.RLock()  # type: ignore[assignment]  # held by a whole batch
        self._worker = GroupCommitter(conn, self.lock, name="checkpoints")

    @contextmanager
    def cursor(self, transaction: bool = True) -> Iterator[sqlite3.Cursor]:
        """The saver's cursor; inside a batch of the worker the batch commits, not each
        statement."""
        with super().cursor(transaction=transaction and not self._worker.in_batch()) as cur:
            yield cur

    async def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return await self._worker.call(fn, *args, **kwargs)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep only each thread's latest checkpoint (``keep_latest``) or none (``delete``)."""
        if strategy == "delete":
            for thread_id in thread_ids:
                self.delete_thread(thread_id)
            return
        if strategy != "keep_latest":
            raise ValueError(f"unknown prune strategy {strategy!r}")
        with self.cursor() as cur:
            for thread_id in thread_ids:
                for table in ("writes", "checkpoints"):
                    cur.execute(
                        f"DELETE FROM {table} WHERE thread_id = ?1 AND checkpoint_id < (SELECT "
                        "MAX(checkpoint_id) FROM checkpoints c WHERE c.thread_id = ?1 AND "
                        f"c.checkpoint_ns = {table}.checkpoint_ns)", (str(thread_id),))

    def close(self) -> None:
        """Finish the queued statements, then close the connection."""
        self._worker.close()
        self.conn.close()


class SqliteCheckpointer:
    """``with`` or ``async with SqliteCheckpointer(path) as saver``: a
    :class:`SqliteCheckpointSaver` on one connection tuned like the other files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saver: SqliteCheckpointSaver | None = None

    def __enter__(self) -> SqliteCheckpointSaver:
        try:
            conn = connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot use the checkpoint store {self.path}: {exc}") from None
        saver = SqliteCheckpointSaver(conn)
        try:
            saver.setup()
        except sqlite3.Error as exc:
            saver.close()
            raise ConfigError(f"cannot use the checkpoint store {self.path}: {exc}") from None
        self._saver = saver
        return saver

    def __exit__(self, *exc: object) -> None:
        saver, self._saver = self._saver, None
        if saver is not None:
            saver.close()

    async def __aenter__(self) -> SqliteCheckpointSaver:
        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.__exit__)


class SqliteWriteJournal:
    """SQLite journal of write calls (``writes.sqlite`` in the data folder); safe to share
    across threads. Implements :class:`orchestrator.write_journal.WriteJournal`."""

    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS write_journal (
        key TEXT PRIMARY KEY, tool TEXT NOT NULL, args TEXT NOT NULL, state TEXT NOT NULL,
        output TEXT, started_at REAL NOT NULL, settled_at REAL);
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._conn = connect(self.path)  # survives a killed process, what it is for
            with self._lock, self._conn:
                self._conn.executescript(self._SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot use the write journal {self.path}: {exc}") from None

    def begin(self, key: str, tool: str, args: dict[str, Any]) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO write_journal (key, tool, args, state, started_at) "
                "VALUES (?, ?, ?, 'started', ?) ON CONFLICT(key) DO UPDATE SET "
                "state = 'started', started_at = excluded.started_at, output = NULL "
                "WHERE write_journal.state = 'failed'",
                (key, tool, json.dumps(args, default=str), time.time()))

    def mark_ledger(self, key: str) -> None:
        self._settle(key, "ledger", None, only_from="started")

    def finish(self, key: str, output: str) -> None:
        self._settle(key, "done", output)

    def fail(self, key: str, error: str) -> None:
        self._settle(key, "failed", error)

    def lookup(self, key: str) -> JournalEntry | None:
        with self._lock:
            row = self._conn.execute("SELECT state, output FROM write_journal WHERE key = ?",
                                     (key,)).fetchone()
        return JournalEntry(row[0], row[1]) if row else None

    def close(self) -> None:
        self._conn.close()

    def _settle(self, key: str, state: JournalState, output: str | None,
                only_from: str | None = None) -> None:
        where = " AND state = ?" if only_from else ""
        params: tuple[Any, ...] = (state, output, time.time(), key,
                                   *((only_from,) if only_from else ()))
        with self._lock, self._conn:
            self._conn.execute(f"UPDATE write_journal SET state = ?, output = ?, "
                               f"settled_at = ? WHERE key = ?{where}", params)
