"""The SQLite run store (``runs.sqlite``): runs, events, agent attempts and claims.

The default backend of :class:`orchestrator.runs.BaseRunStore`; ``:memory:`` keeps the same
tables in memory. One connection per store, shared across threads under a lock, in WAL with
``synchronous=NORMAL`` and a long busy timeout, so concurrent runs and other processes wait
for each other instead of failing (see :func:`orchestrator.storage.sqlite.connect`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError, RequestError, ThreadBusyError
from orchestrator.events import Event
from orchestrator.leases import ACTIVE_STATUSES, HOST, Owner, effective_status, owner_gone
from orchestrator.results import RunResult
from orchestrator.routing import Outcome
from orchestrator.runs import (
    AgentStats,
    Burst,
    RunDriver,
    RunSummary,
    ThreadSummary,
    append_each,
)
from orchestrator.storage import run_rows
from orchestrator.storage.sqlite import connect
from orchestrator.truncation import cap_json, cap_text

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, thread_id TEXT, request TEXT, event TEXT, mode TEXT,
    status TEXT, started_at REAL, elapsed_s REAL, llm_calls INTEGER, input_tokens INTEGER,
    output_tokens INTEGER, answer TEXT, error TEXT, plan TEXT, owner TEXT, pid INTEGER,
    host TEXT, lease_until REAL, request_id TEXT, results TEXT, budget_hit TEXT,
    driver TEXT NOT NULL DEFAULT 'local');
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT, seq INTEGER, type TEXT, time REAL, subtask_id TEXT, agent TEXT,
    data TEXT, usage TEXT, PRIMARY KEY (run_id, seq));
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT, subtask_id TEXT, agent TEXT, ok INTEGER, kind TEXT, elapsed_s REAL,
    tokens INTEGER, time REAL);
CREATE INDEX IF NOT EXISTS attempts_agent ON attempts (agent, time);
CREATE TABLE IF NOT EXISTS thread_leases (
    thread_id TEXT PRIMARY KEY, run_id TEXT, owner TEXT, pid INTEGER, host TEXT,
    started_at REAL, lease_until REAL);
"""
_RUN_COLUMNS = {"owner": "TEXT", "pid": "INTEGER", "host": "TEXT", "lease_until": "REAL",
                "request_id": "TEXT", "results": "TEXT", "budget_hit": "TEXT",
                "driver": "TEXT NOT NULL DEFAULT 'local'"}
"""Columns added to ``runs`` after its first release (stores made before get them; their
runs read as driven locally, as they were)."""

_SUMMARY_COLUMNS = ("run_id, thread_id, request, mode, status, started_at, elapsed_s, "
                    "llm_calls, input_tokens + output_tokens, pid, host, lease_until")
"""What a :class:`RunSummary` is read from (see :func:`_summaries`)."""


def _summaries(rows: list[Any]) -> list[RunSummary]:
    """Rows of :data:`_SUMMARY_COLUMNS` as summaries; a run whose owner is gone reads
    ``interrupted``."""
    now = time.time()
    return [RunSummary(row[0], row[1], row[2], row[3],
                       effective_status(row[4], row[9], row[10], row[11], now),
                       row[5], row[6], row[7], row[8]) for row in rows]


def _add_column(conn: sqlite3.Connection, name: str, kind: str) -> None:
    try:
        conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    except sqlite3.OperationalError as exc:  # another process added it first
        if "duplicate column" not in str(exc):
            raise


class SqliteRunStore:
    """SQLite store of runs, events and agent attempts; safe to share across threads.

    Args:
        path: The SQLite file (created with its folder), or ``:memory:``.
        max_text: Longest text one stored field keeps; longer is cut with a marker.
    """

    one_connection = True
    """Its calls share one connection and lock: the orchestrator makes a run's start and
    end calls on the event thread, where they wait for neither (``BurstQueue.call``)."""

    def __init__(self, path: str | Path, *, max_text: int = 20_000) -> None:
        self.path = Path(path)
        self.max_text = max_text
        self._lock = threading.Lock()
        try:
            self._conn = connect(self.path)
            with self._lock, self._conn:
                self._conn.executescript(_SCHEMA)
                have = {row[1] for row in self._conn.execute("PRAGMA table_info(runs)")}
                for name, kind in _RUN_COLUMNS.items():
                    if name not in have:
                        _add_column(self._conn, name, kind)
                self._conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS runs_request ON runs "
                                   "(request_id) WHERE request_id IS NOT NULL")
                self._conn.execute("CREATE INDEX IF NOT EXISTS runs_thread ON runs "
                                   "(thread_id, started_at)")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot use the run store {self.path}: {exc} (move it aside, "
                              "or set ORCHESTRATOR_RECORD_RUNS=0)") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._conn:
            yield self._conn

    def close(self) -> None:
        self._conn.close()

    def capped(self, text: str | None) -> str | None:
        """``text`` as this store keeps it: cut to ``max_text`` with a marker."""
        return cap_text(text, self.max_text)

    # --- writing as a run goes ----------------------------------------------------------

    def start_run(self, run_id: str, thread_id: str, request: str, *, owner: Owner,
                  lease_s: float, event: dict[str, Any] | None = None,
                  request_id: str | None = None, driver: RunDriver = "local") -> None:
        """Record a run as it starts: status ``running``, owned by ``owner``, driven by
        ``driver``.

        Raises RequestError when ``request_id`` already names another run.
        """
        now = time.time()
        try:
            with self._connect() as conn:
                conn.execute(
                    "INSERT INTO runs (run_id, thread_id, request, event, mode, status, "
                    "started_at, elapsed_s, llm_calls, input_tokens, output_tokens, owner, pid, "
                    "host, lease_until, request_id, driver) "
                    "VALUES (?,?,?,?,'','running',?,0,0,0,0,?,?,?,?,?,?)",
                    (run_id, thread_id, self.capped(request), self._json(event) if event else
                     None, now, owner.token, owner.pid, owner.host, now + lease_s, request_id,
                     driver))
        except sqlite3.IntegrityError:
            raise RequestError(f"request id {request_id!r} is already in use by another "
                               "run; send it again to get that run's result") from None

    def append_events(self, run_id: str, events: Sequence[Event], owner: Owner | None = None
                      ) -> bool:
        """Append events as they arrive (the plan and the attempts are kept from them: each
        attempt is counted once, when its ``attempt_finished`` event is stored).

        With ``owner``, only while it holds the run: False (nothing stored) once another
        process has taken it over, so a stale owner adds nothing to the new owner's record.
        """
        if not events:
            return True
        with self._connect() as conn:
            return self._append(conn, run_id, events, owner)

    def append_bursts(self, bursts: Sequence[Burst]) -> list[bool | Exception]:
        """Append the bursts of several runs in one transaction (one commit for them all);
        when it fails, each burst again in its own, so only the failing one fails."""
        try:
            with self._connect() as conn:
                return [self._append(conn, b.run_id, b.events, b.owner) for b in bursts]
        except Exception:  # rolled back whole: which burst it was, each one's own try says
            return append_each(self, bursts)

    def _append(self, conn: sqlite3.Connection, run_id: str, events: Sequence[Event],
                owner: Owner | None) -> bool:
        if not events:
            return True
        if owner is not None and not self._held(conn, run_id, owner):
            return False
        first = conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM events WHERE run_id = ?",
                             (run_id,)).fetchone()[0]
        conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)", [
            (run_id, first + i, e.type, e.time, e.subtask_id, e.agent, self._json(e.data),
             json.dumps(e.usage) if e.usage else None)
            for i, e in enumerate(events)])
        conn.executemany("INSERT INTO attempts VALUES (?,?,?,?,?,?,?,?)",
                         run_rows.attempt_rows(run_id, events))
        for e in events:
            plan, mode = run_rows.plan_of(e)
            if plan:
                conn.execute("UPDATE runs SET plan = ?, mode = COALESCE(?, mode) "
                             "WHERE run_id = ?", (self._json(plan), mode, run_id))
            if (usage := run_rows.usage_of(e)) is not None:
                conn.execute("UPDATE runs SET llm_calls = llm_calls + ?, input_tokens = "
                             "input_tokens + ?, output_tokens = output_tokens + ? "
                             "WHERE run_id = ?", (*usage, run_id))
        return True

    def finish_run(self, result: RunResult, *, status: str, owner: Owner, mode: str = "",
                   event: dict[str, Any] | None = None) -> bool:
        """Write a run's outcome (or this part's, for a resumed run) and end ``owner``'s claim.

        ``status`` is what the record says (``interrupted`` when the process was stopped).
        Nothing is written, and False returned, when another process has taken the run over
        meanwhile (its record stands; checked in the same statement as the write).
        """
        results = {k: v.to_dict() for k, v in result.results.items()}
        with self._connect() as conn:
            written = conn.execute(
                "UPDATE runs SET status = ?, mode = COALESCE(NULLIF(?, ''), mode), "
                "event = COALESCE(?, event), elapsed_s = COALESCE(elapsed_s, 0) + ?, "
                "llm_calls = ?, input_tokens = ?, output_tokens = ?, answer = ?, error = ?, "
                "plan = COALESCE(?, plan), results = ?, budget_hit = ?, owner = NULL, "
                "lease_until = NULL WHERE run_id = ? AND owner IS ?",
                (status, mode, self._json(event) if event else None, result.elapsed_s,
                 result.usage.llm_calls, result.usage.input_tokens, result.usage.output_tokens,
                 self.capped(result.answer), self.capped(result.error),
                 self._json(result.plan.model_dump()) if result.plan else None,
                 self._json(results), result.budget_hit, result.run_id, owner.token)).rowcount
            return written == 1 or not self._known(conn, result.run_id)

    # --- claims (leases) ------------------------------------------------------------------

    def claim_paused(self, run_id: str, owner: Owner | None = None, lease_s: float = 30.0
                     ) -> bool:
        """Claim a paused run to apply a decision (status ``resuming``); False when another
        process holds it. A claim whose owner is gone (it crashed while resuming) is taken
        over; one decision wins."""
        owner = owner or Owner.here()
        row = self._claim_row(run_id)
        if row is None:
            return True  # a run this store never saw: no claim
        status = row[0]
        if status != "paused" and not (status in ACTIVE_STATUSES | {"interrupted"}
                                       and owner_gone(row[2], row[3], row[4])):
            return False
        return self._swap(run_id, row, "resuming", owner, lease_s)

    def claim_interrupted(self, run_id: str, owner: Owner, lease_s: float) -> bool:
        """Take over an interrupted run to resume it (status ``resuming``); False when it is
        not interrupted or another process got it first."""
        row = self._claim_row(run_id)
        if row is None:
            return False
        status = row[0]
        if not (status == "interrupted" or (status in ACTIVE_STATUSES
                                            and owner_gone(row[2], row[3], row[4]))):
            return False
        return self._swap(run_id, row, "resuming", owner, lease_s)

    def set_status(self, run_id: str, status: str, owner: Owner) -> None:
        """Set the status of a run ``owner`` holds and end the claim (e.g. back to paused)."""
        with self._connect() as conn:
            conn.execute("UPDATE runs SET status = ?, owner = NULL, lease_until = NULL "
                         "WHERE run_id = ? AND owner IS ?", (status, run_id, owner.token))

    def renew(self, run_id: str, thread_id: str, owner: Owner, lease_s: float) -> bool:
        """Extend ``owner``'s claims on the run and its thread; False when either is no
        longer its (another process took it over once the lease ran out): the run must stop.
        Atomic with the claims of others: a renewal after the lease ran out holds only if
        nobody claimed meanwhile."""
        until = time.time() + lease_s
        with self._connect() as conn:
            kept = conn.execute("UPDATE runs SET lease_until = ? WHERE run_id = ? AND owner = ?",
                                (until, run_id, owner.token)).rowcount == 1
            thread = conn.execute("UPDATE thread_leases SET lease_until = ? WHERE thread_id = ? "
                                  "AND owner = ?", (until, thread_id, owner.token)).rowcount
            return thread == 1 and (kept or not self._known(conn, run_id))

    def holds(self, run_id: str, owner: Owner) -> bool:
        """Whether ``owner`` still holds the run (a run this store never saw: True)."""
        with self._connect() as conn:
            return self._held(conn, run_id, owner)

    @staticmethod
    def _held(conn: sqlite3.Connection, run_id: str, owner: Owner) -> bool:
        row = conn.execute("SELECT owner FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return row is None or row[0] == owner.token

    @staticmethod
    def _known(conn: sqlite3.Connection, run_id: str) -> bool:
        """Whether the run is on record (a run this store never saw holds no claim)."""
        return conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None

    def acquire_thread(self, thread_id: str, run_id: str, owner: Owner, lease_s: float) -> None:
        """Claim ``thread_id`` for one run; RequestError naming the holder while another
        process's run holds it (a claim whose owner is gone is taken over)."""
        now = time.time()
        with self._connect() as conn:
            row = conn.execute("SELECT run_id, owner, pid, host, started_at, lease_until FROM "
                               "thread_leases WHERE thread_id = ?", (thread_id,)).fetchone()
            if row is not None and row[1] != owner.token and not owner_gone(row[2], row[3],
                                                                           row[5], now):
                when = time.strftime("%H:%M:%S", time.localtime(row[4]))
                where = "" if row[3] == HOST else f" on {row[3]}"
                raise ThreadBusyError(f"thread {thread_id!r} is busy with run {row[0][:12]} "
                                   f"(started {when} by pid {row[2]}{where}); wait for it to "
                                   "finish or use another thread")
            values = (run_id, owner.token, owner.pid, owner.host, now, now + lease_s)
            if row is None:
                taken = conn.execute("INSERT OR IGNORE INTO thread_leases VALUES (?,?,?,?,?,?,?)",
                                     (thread_id, *values)).rowcount
            else:  # compare-and-swap: a process that got there first keeps it
                taken = conn.execute(
                    "UPDATE thread_leases SET run_id = ?, owner = ?, pid = ?, host = ?, "
                    "started_at = ?, lease_until = ? WHERE thread_id = ? AND owner IS ? AND "
                    "lease_until IS ?", (*values, thread_id, row[1], row[5])).rowcount
        if taken != 1:
            self.acquire_thread(thread_id, run_id, owner, lease_s)  # raises with the winner

    def release_thread(self, thread_id: str, owner: Owner) -> None:
        with self._connect() as conn:
            conn.execute("DELETE FROM thread_leases WHERE thread_id = ? AND owner = ?",
                         (thread_id, owner.token))

    def _claim_row(self, run_id: str) -> tuple[Any, ...] | None:
        with self._connect() as conn:
            row: tuple[Any, ...] | None = conn.execute(
                "SELECT status, owner, pid, host, lease_until FROM runs WHERE run_id = ?",
                (run_id,)).fetchone()
        return row

    def _swap(self, run_id: str, row: tuple[Any, ...], status: str, owner: Owner,
              lease_s: float) -> bool:
        # Compare-and-swap on what was read: of two processes claiming at once, one wins.
        with self._connect() as conn:
            cursor = conn.execute(
                "UPDATE runs SET status = ?, owner = ?, pid = ?, host = ?, lease_until = ? "
                "WHERE run_id = ? AND status = ? AND owner IS ? AND lease_until IS ?",
                (status, owner.token, owner.pid, owner.host, time.time() + lease_s, run_id,
                 row[0], row[1], row[4]))
        return cursor.rowcount == 1

    def _json(self, value: Any) -> str:
        return cap_json(value, self.max_text)

    # --- reading ----------------------------------------------------------------------

    def list_runs(self, limit: int = 20) -> list[RunSummary]:
        """Recent runs, newest first; a run whose owner is gone reads ``interrupted``."""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {_SUMMARY_COLUMNS} FROM runs "
                                "ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall()
        return _summaries(rows)

    def resolve(self, run_id: str) -> str:
        """The full id of a run from its id or a unique prefix; RequestError otherwise."""
        prefix = run_id.strip().lower()
        if not prefix:
            raise RequestError("give a run id (see `orchestrator runs`)")
        with self._connect() as conn:
            rows = conn.execute("SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ? "
                                "LIMIT 3", (len(prefix), prefix)).fetchall()
        if not rows:
            raise RequestError(f"no run {run_id!r} in {self.path}; `orchestrator runs` "
                               "lists recent runs")
        if len(rows) > 1:
            raise RequestError(f"run id {run_id!r} is ambiguous: give more characters")
        return str(rows[0][0])

    def run(self, run_id: str) -> dict[str, Any]:
        """A run's record (see :func:`run_rows.record`); RequestError if unknown."""
        full = self.resolve(run_id)
        with self._connect() as conn:
            cursor = conn.execute("SELECT * FROM runs WHERE run_id = ?", (full,))
            names = [d[0] for d in cursor.description]
            row = cursor.fetchone()
        return run_rows.record(names, row)

    def find_request(self, request_id: str) -> dict[str, Any] | None:
        """The record of the run a caller's request id names, or None."""
        with self._connect() as conn:
            row = conn.execute("SELECT run_id FROM runs WHERE request_id = ?",
                               (request_id,)).fetchone()
        return self.run(row[0]) if row else None

    def later_run(self, thread_id: str, after: float) -> str | None:
        """The id of a run started on ``thread_id`` after ``after``, if any."""
        with self._connect() as conn:
            row = conn.execute("SELECT run_id FROM runs WHERE thread_id = ? AND started_at > ? "
                               "ORDER BY started_at LIMIT 1", (thread_id, after)).fetchone()
        return str(row[0]) if row else None

    def list_threads(self, prefix: str, limit: int) -> list[ThreadSummary]:
        """The threads whose id starts with ``prefix``, at most ``limit``, the one whose
        latest run started last first (read on the ``runs_thread`` index)."""
        where, bounds = "", tuple[str, ...]()
        if prefix:  # a range, not LIKE: the index serves it and _ or % in a prefix are text
            where = "WHERE thread_id >= ? AND thread_id < ?"
            bounds = (prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1))
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT t.thread_id, t.n, "
                "(SELECT request FROM runs f WHERE f.thread_id = t.thread_id "
                " ORDER BY started_at, rowid LIMIT 1), "
                "l.run_id, l.status, l.started_at, l.pid, l.host, l.lease_until, "
                "(SELECT MAX(time) FROM events e WHERE e.run_id = l.run_id) "
                "FROM (SELECT thread_id, COUNT(*) AS n, MAX(started_at) AS last FROM runs "
                f"{where} GROUP BY thread_id ORDER BY last DESC LIMIT ?) t "
                "JOIN runs l ON l.run_id = (SELECT run_id FROM runs r WHERE r.thread_id = "
                "t.thread_id ORDER BY started_at DESC, rowid DESC LIMIT 1) "
                "ORDER BY t.last DESC", (*bounds, limit)).fetchall()
        return run_rows.thread_summaries(rows, time.time())

    def thread_runs(self, thread_id: str) -> list[RunSummary]:
        """The runs of one thread, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {_SUMMARY_COLUMNS} FROM runs WHERE thread_id = ? "
                                "ORDER BY started_at, rowid", (thread_id,)).fetchall()
        return _summaries(rows)

    def events(self, run_id: str, start: int = 0) -> list[Event]:
        full = self.resolve(run_id)
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {run_rows.EVENT_COLUMNS} FROM events "
                                "WHERE run_id = ? AND seq >= ? ORDER BY seq",
                                (full, start)).fetchall()
        return run_rows.events(rows)

    def agent_stats(self) -> list[AgentStats]:
        """Per-agent statistics over every stored attempt."""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {run_rows.ATTEMPT_COLUMNS} FROM attempts "
                                "ORDER BY agent, time").fetchall()
        return run_rows.agent_stats(rows)

    def recent_outcomes(self, window: int) -> dict[str, list[Outcome]]:
        """The last ``window`` attempts per agent, oldest first (to seed routing)."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT agent, ok, elapsed_s FROM (SELECT agent, ok, elapsed_s, time, "
                "ROW_NUMBER() OVER (PARTITION BY agent ORDER BY time DESC) AS n FROM attempts) "
                "WHERE n <= ? ORDER BY agent, time", (window,)).fetchall()
        return run_rows.outcomes(rows)
