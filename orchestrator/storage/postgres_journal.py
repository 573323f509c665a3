"""The write journal in PostgreSQL: each write call noted before it runs, shared by every
process that points at the database (a worker resuming another's run reads its notes).

Same semantics as :class:`~orchestrator.storage.sqlite.SqliteWriteJournal`; each note is
one autocommitted statement, durable once the method returns.
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.storage.postgres import NOW, SCHEMA, PostgresStore
from orchestrator.write_journal import JournalEntry, JournalState

_TABLE = f"{SCHEMA}.write_journal"
_V1 = (f"CREATE TABLE {_TABLE} (key TEXT PRIMARY KEY, tool TEXT NOT NULL, args TEXT NOT NULL, "
       "state TEXT NOT NULL, output TEXT, started_at DOUBLE PRECISION NOT NULL, "
       "settled_at DOUBLE PRECISION)",)


def _text(value: str) -> str:
    return value.replace("\x00", "\ufffd")  # PostgreSQL text holds no NUL


class PostgresWriteJournal(PostgresStore):
    """Implements :class:`orchestrator.write_journal.WriteJournal`; thread-safe."""

    component = "write_journal"
    migrations = (_V1,)
    what = "write journal"

    def begin(self, key: str, tool: str, args: dict[str, Any]) -> None:
        with self._connection() as conn:
            conn.execute(
                f"INSERT INTO {_TABLE} (key, tool, args, state, started_at) "
                f"VALUES (%s, %s, %s, 'started', {NOW}) ON CONFLICT (key) DO UPDATE SET "
                "state = 'started', started_at = excluded.started_at, output = NULL "
                f"WHERE {_TABLE}.state = 'failed'",
                (key, _text(tool), _text(json.dumps(args, default=str))))

    def mark_ledger(self, key: str) -> None:
        self._settle(key, "ledger", None, only_from="started")

    def finish(self, key: str, output: str) -> None:
        self._settle(key, "done", output)

    def fail(self, key: str, error: str) -> None:
        self._settle(key, "failed", error)

    def lookup(self, key: str) -> JournalEntry | None:
        with self._connection() as conn:
            row = conn.execute(f"SELECT state, output FROM {_TABLE} WHERE key = %s",
                               (key,)).fetchone()
        return JournalEntry(row[0], row[1]) if row else None

    def _settle(self, key: str, state: JournalState, output: str | None,
                only_from: str | None = None) -> None:
        where = " AND state = %s" if only_from else ""
        params: tuple[Any, ...] = (state, _text(output) if output is not None else None, key,
                                   *((only_from,) if only_from else ()))
        with self._connection() as conn:
            conn.execute(f"UPDATE {_TABLE} SET state = %s, output = %s, settled_at = {NOW} "
                         f"WHERE key = %s{where}", params)
