"""The write journal: each write call's key is noted before the call runs and settled after.

A write whose process died mid-call leaves a ``started`` note. When the run is resumed and
the agent makes the same call again, the engine reads the note: if the call went through a
store that records its key with its effect (the demo business database's ledger, which
marks the note), the ledger says whether it happened; otherwise nobody can know, and the
subtask is reported ``unknown`` instead of running the write a second time.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from orchestrator.errors import ConfigError
from orchestrator.sqlite_files import open_store

JournalState = Literal["started", "ledger", "done", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS write_journal (
    key TEXT PRIMARY KEY, tool TEXT NOT NULL, args TEXT NOT NULL, state TEXT NOT NULL,
    output TEXT, started_at REAL NOT NULL, settled_at REAL);
"""


@dataclass(frozen=True)
class JournalEntry:
    state: JournalState
    output: str | None


class WriteJournal:
    """SQLite journal of write calls (``writes.sqlite`` in the data folder)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._conn = open_store(self.path)  # survives a killed process, what it is for
            with self._lock, self._conn:
                self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot use the write journal {self.path}: {exc}") from None

    def begin(self, key: str, tool: str, args: dict[str, Any]) -> None:
        """Note a write about to run (a retry of a settled-as-failed one starts it again)."""
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO write_journal (key, tool, args, state, started_at) "
                "VALUES (?, ?, ?, 'started', ?) ON CONFLICT(key) DO UPDATE SET "
                "state = 'started', started_at = excluded.started_at, output = NULL "
                "WHERE write_journal.state = 'failed'",
                (key, tool, json.dumps(args, default=str), time.time()))

    def mark_ledger(self, key: str) -> None:
        """The call writes through a store that records its key with its effect."""
        self._settle(key, "ledger", None, only_from="started")

    def finish(self, key: str, output: str) -> None:
        self._settle(key, "done", output)

    def fail(self, key: str, error: str) -> None:
        """The call raised: it did not take effect (a tool that raises changed nothing)."""
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
