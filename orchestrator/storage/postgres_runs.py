"""The PostgreSQL run store: runs, events, agent attempts and claims, shared by every server
replica and worker that points at the database.

Same contract and record as :class:`~orchestrator.storage.sqlite_runs.SqliteRunStore`. The
claims are decided inside one transaction on the locked row (``SELECT ... FOR UPDATE``, and
``INSERT ... ON CONFLICT`` for a thread's first claim), so of two processes on any machines
one wins. Leases are set and judged by the database's clock; a claim whose owner runs on
another host is judged by its expiry only (:func:`orchestrator.leases.owner_gone`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from orchestrator.errors import RequestError, ThreadBusyError
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
from orchestrator.storage.postgres import NOW, SCHEMA, PostgresStore
from orchestrator.storage.urls import StoreURL
from orchestrator.truncation import cap_json, cap_text

_RUNS, _EVENTS, _ATTEMPTS, _THREADS = (f"{SCHEMA}.{name}" for name in
                                       ("runs", "events", "attempts", "thread_leases"))
_V1 = (
    f"CREATE TABLE {_RUNS} (run_id TEXT PRIMARY KEY, thread_id TEXT, request TEXT, "
    "event TEXT, mode TEXT, status TEXT, started_at DOUBLE PRECISION, "
    "elapsed_s DOUBLE PRECISION, llm_calls BIGINT, input_tokens BIGINT, "
    "output_tokens BIGINT, answer TEXT, error TEXT, plan TEXT, owner TEXT, pid INTEGER, "
    "host TEXT, lease_until DOUBLE PRECISION, request_id TEXT UNIQUE, results TEXT, "
    "budget_hit TEXT, seq BIGINT GENERATED ALWAYS AS IDENTITY)",
    f"CREATE INDEX runs_started ON {_RUNS} (started_at)",
    f"CREATE INDEX runs_thread ON {_RUNS} (thread_id, started_at)",
    f"CREATE TABLE {_EVENTS} (run_id TEXT, seq INTEGER, type TEXT, "
    "time DOUBLE PRECISION, subtask_id TEXT, agent TEXT, data TEXT, usage TEXT, "
    "PRIMARY KEY (run_id, seq))",
    f"CREATE TABLE {_ATTEMPTS} (run_id TEXT, subtask_id TEXT, agent TEXT, ok INTEGER, "
    "kind TEXT, elapsed_s DOUBLE PRECISION, tokens BIGINT, time DOUBLE PRECISION)",
    f"CREATE INDEX attempts_agent ON {_ATTEMPTS} (agent, time)",
    f"CREATE TABLE {_THREADS} (thread_id TEXT PRIMARY KEY, run_id TEXT, owner TEXT, "
    "pid INTEGER, host TEXT, started_at DOUBLE PRECISION, lease_until DOUBLE PRECISION)",
)
_V2 = (f"ALTER TABLE {_RUNS} ADD COLUMN driver TEXT NOT NULL DEFAULT 'local'",)
"""Who drives each run (runs stored before read as driven locally, as they were)."""
_RECORD_COLUMNS = ("run_id", "thread_id", "request", "event", "mode", "status", "started_at",
                   "elapsed_s", "llm_calls", "input_tokens", "output_tokens", "answer",
                   "error", "plan", "owner", "pid", "host", "lease_until", "request_id",
                   "results", "budget_hit", "driver")
"""A run's record, as the SQLite store returns it."""
_SUMMARY_COLUMNS = ("run_id, thread_id, request, mode, status, started_at, elapsed_s, "
                    "llm_calls, input_tokens + output_tokens, pid, host, lease_until")
_CLAIM = f"SELECT status, owner, pid, host, lease_until, {NOW} FROM {_RUNS} WHERE run_id = %s"
_SWAP = (f"UPDATE {_RUNS} SET status = %s, owner = %s, pid = %s, host = %s, "
         f"lease_until = {NOW} + %s WHERE run_id = %s")

Conn = psycopg.Connection[Any]


def _summaries(rows: Sequence[Any], now: float) -> list[RunSummary]:
    return [RunSummary(row[0], row[1], row[2], row[3],
                       effective_status(row[4], row[9], row[10], row[11], now),
                       row[5], row[6], row[7], row[8]) for row in rows]


def _now(conn: Conn) -> float:
    row = conn.execute(f"SELECT {NOW}").fetchone()
    assert row is not None
    return float(row[0])


class PostgresRunStore(PostgresStore):
    """PostgreSQL store of runs, events and agent attempts; safe to share across threads
    and processes. Implements :class:`orchestrator.runs.BaseRunStore`.

    Args:
        location: A ``postgres://`` / ``postgresql://`` location (the tables are set up on
            first use).
        max_text: Longest text one stored field keeps; longer is cut with a marker.
    """

    component = "runs"
    migrations = (_V1, _V2)
    what = "run store"

    def __init__(self, location: StoreURL, *, max_text: int = 20_000) -> None:
        self.max_text = max_text
        super().__init__(location)

    def capped(self, text: str | None) -> str | None:
        """``text`` as this store keeps it: cut to ``max_text`` with a marker (NUL, which
        PostgreSQL text cannot hold, becomes U+FFFD)."""
        capped = cap_text(text, self.max_text)
        return capped.replace("\x00", "\ufffd") if capped else capped

    def _json(self, value: Any) -> str:
        return cap_json(value, self.max_text)

    # --- writing as a run goes ----------------------------------------------------------

    def start_run(self, run_id: str, thread_id: str, request: str, *, owner: Owner,
                  lease_s: float, event: dict[str, Any] | None = None,
                  request_id: str | None = None, driver: RunDriver = "local") -> None:
        try:
            with self._connection() as conn:
                conn.execute(
                    f"INSERT INTO {_RUNS} (run_id, thread_id, request, event, mode, status, "
                    "started_at, elapsed_s, llm_calls, input_tokens, output_tokens, owner, "
                    "pid, host, lease_until, request_id, driver) VALUES (%s, %s, %s, %s, '', "
                    f"'running', {NOW}, 0, 0, 0, 0, %s, %s, %s, {NOW} + %s, %s, %s)",
                    # the database's clock: the order of a thread's runs started on
                    # machines whose clocks disagree (a resume asks which came later)
                    (run_id, thread_id, self.capped(request),
                     self._json(event) if event else None, owner.token,
                     owner.pid, owner.host, lease_s, request_id, driver))
        except psycopg.errors.UniqueViolation:
            raise RequestError(f"request id {request_id!r} is already in use by another "
                               "run; send it again to get that run's result") from None

    def append_events(self, run_id: str, events: Sequence[Event], owner: Owner | None = None
                      ) -> bool:
        if not events:
            return True
        with self._connection() as conn, conn.pipeline(), conn.transaction():
            return self._append(conn, run_id, events, owner)

    def append_bursts(self, bursts: Sequence[Burst]) -> list[bool | Exception]:
        """Append the bursts of several runs in one transaction (one commit for them all);
        when it fails, each burst again in its own, so only the failing one fails."""
        try:
            with self._connection() as conn, conn.pipeline(), conn.transaction():
                # Every run's row locked first, in one order: a process writing the same
                # runs in another order (after a takeover) would deadlock with this one.
                conn.execute(f"SELECT 1 FROM {_RUNS} WHERE run_id = ANY(%s) ORDER BY run_id "
                             "FOR UPDATE", (sorted({b.run_id for b in bursts}),))
                return [self._append(conn, b.run_id, b.events, b.owner) for b in bursts]
        except Exception:  # rolled back whole: which burst it was, each one's own try says
            return append_each(self, bursts)

    def _append(self, conn: Conn, run_id: str, events: Sequence[Event], owner: Owner | None
                ) -> bool:
        if not events:
            return True
        # The run's row, locked: the owner check, the sequence numbers and the totals
        # are one step against claims and other appenders. In a pipeline: BEGIN and
        # this read are one round trip, the writes and COMMIT another.
        row = conn.execute(f"SELECT owner FROM {_RUNS} WHERE run_id = %s FOR UPDATE",
                           (run_id,)).fetchone()
        if owner is not None and row is not None and row[0] != owner.token:
            return False
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {_EVENTS} VALUES (%s, (SELECT COALESCE(MAX(seq) + 1, 0) "
                f"FROM {_EVENTS} WHERE run_id = %s), %s, %s, %s, %s, %s, %s)",
                [(run_id, run_id, e.type, e.time, e.subtask_id, e.agent,
                  self._json(e.data), json.dumps(e.usage) if e.usage else None)
                 for e in events])
            cur.executemany(
                f"INSERT INTO {_ATTEMPTS} VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                run_rows.attempt_rows(run_id, events))
        for e in events:
            plan, mode = run_rows.plan_of(e)
            if plan:
                conn.execute(f"UPDATE {_RUNS} SET plan = %s, mode = COALESCE(%s, mode) "
                             "WHERE run_id = %s", (self._json(plan), mode, run_id))
            if (usage := run_rows.usage_of(e)) is not None:
                conn.execute(f"UPDATE {_RUNS} SET llm_calls = llm_calls + %s, input_tokens = "
                             "input_tokens + %s, output_tokens = output_tokens + %s "
                             "WHERE run_id = %s", (*usage, run_id))
        return True

    def finish_run(self, result: RunResult, *, status: str, owner: Owner, mode: str = "",
                   event: dict[str, Any] | None = None) -> bool:
        results = {k: v.to_dict() for k, v in result.results.items()}
        with self._transaction() as conn:
            written = conn.execute(
                f"UPDATE {_RUNS} SET status = %s, mode = COALESCE(NULLIF(%s, ''), mode), "
                "event = COALESCE(%s, event), elapsed_s = COALESCE(elapsed_s, 0) + %s, "
                "llm_calls = %s, input_tokens = %s, output_tokens = %s, answer = %s, "
                "error = %s, plan = COALESCE(%s, plan), results = %s, budget_hit = %s, "
                "owner = NULL, lease_until = NULL "
                "WHERE run_id = %s AND owner IS NOT DISTINCT FROM %s",
                (status, mode, self._json(event) if event else None, result.elapsed_s,
                 result.usage.llm_calls, result.usage.input_tokens, result.usage.output_tokens,
                 self.capped(result.answer), self.capped(result.error),
                 self._json(result.plan.model_dump()) if result.plan else None,
                 self._json(results), result.budget_hit, result.run_id, owner.token)).rowcount
            return written == 1 or not self._known(conn, result.run_id)

    # --- claims (leases) ------------------------------------------------------------------

    def claim_paused(self, run_id: str, owner: Owner | None = None, lease_s: float = 30.0
                     ) -> bool:
        """Claim a paused run to apply a decision (``resuming``); False while another
        process holds it. One decision wins: the row is locked while it is judged."""
        owner = owner or Owner.here()
        with self._transaction() as conn:
            row = conn.execute(_CLAIM + " FOR UPDATE", (run_id,)).fetchone()
            if row is None:
                return True  # a run this store never saw: no claim
            if row[0] != "paused" and not (row[0] in ACTIVE_STATUSES | {"interrupted"}
                                           and owner_gone(row[2], row[3], row[4], row[5])):
                return False
            conn.execute(_SWAP, ("resuming", owner.token, owner.pid, owner.host, lease_s,
                                 run_id))
            return True

    def claim_interrupted(self, run_id: str, owner: Owner, lease_s: float) -> bool:
        with self._transaction() as conn:
            row = conn.execute(_CLAIM + " FOR UPDATE", (run_id,)).fetchone()
            if row is None or not (row[0] == "interrupted" or (
                    row[0] in ACTIVE_STATUSES and owner_gone(row[2], row[3], row[4], row[5]))):
                return False
            conn.execute(_SWAP, ("resuming", owner.token, owner.pid, owner.host, lease_s,
                                 run_id))
            return True

    def set_status(self, run_id: str, status: str, owner: Owner) -> None:
        with self._connection() as conn:
            conn.execute(f"UPDATE {_RUNS} SET status = %s, owner = NULL, lease_until = NULL "
                         "WHERE run_id = %s AND owner IS NOT DISTINCT FROM %s",
                         (status, run_id, owner.token))

    def renew(self, run_id: str, thread_id: str, owner: Owner, lease_s: float) -> bool:
        with self._transaction() as conn:
            kept = conn.execute(f"UPDATE {_RUNS} SET lease_until = {NOW} + %s "
                                "WHERE run_id = %s AND owner = %s",
                                (lease_s, run_id, owner.token)).rowcount == 1
            thread = conn.execute(f"UPDATE {_THREADS} SET lease_until = {NOW} + %s "
                                  "WHERE thread_id = %s AND owner = %s",
                                  (lease_s, thread_id, owner.token)).rowcount
            return thread == 1 and (kept or not self._known(conn, run_id))

    def holds(self, run_id: str, owner: Owner) -> bool:
        with self._connection() as conn:
            row = conn.execute(f"SELECT owner FROM {_RUNS} WHERE run_id = %s",
                               (run_id,)).fetchone()
        return row is None or row[0] == owner.token

    @staticmethod
    def _known(conn: Conn, run_id: str) -> bool:
        return conn.execute(f"SELECT 1 FROM {_RUNS} WHERE run_id = %s",
                            (run_id,)).fetchone() is not None

    def acquire_thread(self, thread_id: str, run_id: str, owner: Owner, lease_s: float) -> None:
        """Claim ``thread_id`` for one run; RequestError naming the holder while another
        process's run holds it (a claim whose owner is gone is taken over)."""
        values = (run_id, owner.token, owner.pid, owner.host, time.time(), lease_s)
        with self._transaction() as conn:
            inserted = conn.execute(
                f"INSERT INTO {_THREADS} VALUES (%s, %s, %s, %s, %s, %s, {NOW} + %s) "
                "ON CONFLICT (thread_id) DO NOTHING", (thread_id, *values)).rowcount
            if inserted == 1:
                return
            row = conn.execute(f"SELECT run_id, owner, pid, host, started_at, lease_until, "
                               f"{NOW} FROM {_THREADS} WHERE thread_id = %s FOR UPDATE",
                               (thread_id,)).fetchone()
            if row is not None and row[1] != owner.token and not owner_gone(
                    row[2], row[3], row[5], row[6]):
                when = time.strftime("%H:%M:%S", time.localtime(row[4]))
                where = "" if row[3] == HOST else f" on {row[3]}"
                raise ThreadBusyError(f"thread {thread_id!r} is busy with run {row[0][:12]} "
                                   f"(started {when} by pid {row[2]}{where}); wait for it to "
                                   "finish or use another thread")
            # The holder is gone (or it is us), or it let go between the two statements.
            conn.execute(
                f"INSERT INTO {_THREADS} VALUES (%s, %s, %s, %s, %s, %s, {NOW} + %s) "
                "ON CONFLICT (thread_id) DO UPDATE SET run_id = excluded.run_id, "
                "owner = excluded.owner, pid = excluded.pid, host = excluded.host, "
                "started_at = excluded.started_at, lease_until = excluded.lease_until",
                (thread_id, *values))

    def release_thread(self, thread_id: str, owner: Owner) -> None:
        with self._connection() as conn:
            conn.execute(f"DELETE FROM {_THREADS} WHERE thread_id = %s AND owner = %s",
                         (thread_id, owner.token))

    # --- reading ----------------------------------------------------------------------

    def list_runs(self, limit: int = 20) -> list[RunSummary]:
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {_SUMMARY_COLUMNS} FROM {_RUNS} "
                                "ORDER BY started_at DESC LIMIT %s", (limit,)).fetchall()
            return _summaries(rows, _now(conn))

    def resolve(self, run_id: str) -> str:
        prefix = run_id.strip().lower()
        if not prefix:
            raise RequestError("give a run id (see `orchestrator runs`)")
        with self._connection() as conn:
            rows = conn.execute(f"SELECT run_id FROM {_RUNS} WHERE starts_with(run_id, %s) "
                                "LIMIT 3", (prefix,)).fetchall()
        if not rows:
            raise RequestError(f"no run {run_id!r} in the run store at "
                               f"{self.location.redacted}; `orchestrator runs` lists recent "
                               "runs")
        if len(rows) > 1:
            raise RequestError(f"run id {run_id!r} is ambiguous: give more characters")
        return str(rows[0][0])

    def run(self, run_id: str) -> dict[str, Any]:
        full = self.resolve(run_id)
        with self._connection() as conn:
            row = conn.execute(f"SELECT {', '.join(_RECORD_COLUMNS)}, {NOW} FROM {_RUNS} "
                               "WHERE run_id = %s", (full,)).fetchone()
        assert row is not None
        return run_rows.record(_RECORD_COLUMNS, row[:-1], row[-1])

    def find_request(self, request_id: str) -> dict[str, Any] | None:
        with self._connection() as conn:
            row = conn.execute(f"SELECT run_id FROM {_RUNS} WHERE request_id = %s",
                               (request_id,)).fetchone()
        return self.run(row[0]) if row else None

    def later_run(self, thread_id: str, after: float) -> str | None:
        with self._connection() as conn:
            row = conn.execute(f"SELECT run_id FROM {_RUNS} WHERE thread_id = %s AND "
                               "started_at > %s ORDER BY started_at LIMIT 1",
                               (thread_id, after)).fetchone()
        return str(row[0]) if row else None

    def list_threads(self, prefix: str, limit: int) -> list[ThreadSummary]:
        where, bounds = "", tuple[str, ...]()
        if prefix:  # a range, not LIKE: the index serves it and _ or % in a prefix are text
            where = "WHERE thread_id >= %s AND thread_id < %s"
            bounds = (prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1))
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT t.thread_id, t.n, "
                f"(SELECT request FROM {_RUNS} f WHERE f.thread_id = t.thread_id "
                " ORDER BY started_at, seq LIMIT 1), "
                "l.run_id, l.status, l.started_at, l.pid, l.host, l.lease_until, "
                f"(SELECT MAX(time) FROM {_EVENTS} e WHERE e.run_id = l.run_id) "
                f"FROM (SELECT thread_id, COUNT(*) AS n, MAX(started_at) AS last FROM {_RUNS} "
                f"{where} GROUP BY thread_id ORDER BY last DESC LIMIT %s) t "
                f"JOIN {_RUNS} l ON l.run_id = (SELECT run_id FROM {_RUNS} r WHERE "
                "r.thread_id = t.thread_id ORDER BY started_at DESC, seq DESC LIMIT 1) "
                "ORDER BY t.last DESC", (*bounds, limit)).fetchall()
            now = _now(conn)
        return run_rows.thread_summaries(rows, now)

    def thread_runs(self, thread_id: str) -> list[RunSummary]:
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {_SUMMARY_COLUMNS} FROM {_RUNS} WHERE thread_id = %s "
                                "ORDER BY started_at, seq", (thread_id,)).fetchall()
            return _summaries(rows, _now(conn))

    def events(self, run_id: str, start: int = 0) -> list[Event]:
        full = self.resolve(run_id)
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {run_rows.EVENT_COLUMNS} FROM {_EVENTS} "
                                "WHERE run_id = %s AND seq >= %s ORDER BY seq",
                                (full, start)).fetchall()
        return run_rows.events(rows)

    def agent_stats(self) -> list[AgentStats]:
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {run_rows.ATTEMPT_COLUMNS} FROM {_ATTEMPTS} "
                                "ORDER BY agent, time").fetchall()
        return run_rows.agent_stats(rows)

    def recent_outcomes(self, window: int) -> dict[str, list[Outcome]]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT agent, ok, elapsed_s FROM (SELECT agent, ok, elapsed_s, time, "
                "ROW_NUMBER() OVER (PARTITION BY agent ORDER BY time DESC) AS n FROM "
                f"{_ATTEMPTS}) recent WHERE n <= %s ORDER BY agent, time", (window,)).fetchall()
        return run_rows.outcomes(rows)
