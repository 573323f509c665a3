"""The run store: every run's record and events, and per-agent statistics (``runs.sqlite``).

``orchestrator runs``, ``orchestrator trace`` and ``orchestrator agents --stats`` read it;
adaptive routing is seeded from it, so what the orchestrator learns about agents outlives
the process.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError, RequestError
from orchestrator.events import Event
from orchestrator.results import RunResult
from orchestrator.routing import Outcome

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, thread_id TEXT, request TEXT, event TEXT, mode TEXT,
    status TEXT, started_at REAL, elapsed_s REAL, llm_calls INTEGER, input_tokens INTEGER,
    output_tokens INTEGER, answer TEXT, error TEXT, plan TEXT);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT, seq INTEGER, type TEXT, time REAL, subtask_id TEXT, agent TEXT,
    data TEXT, usage TEXT, PRIMARY KEY (run_id, seq));
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT, subtask_id TEXT, agent TEXT, ok INTEGER, kind TEXT, elapsed_s REAL,
    tokens INTEGER, time REAL);
CREATE INDEX IF NOT EXISTS attempts_agent ON attempts (agent, time);
"""


@dataclass
class AgentStats:
    """How one agent has done across runs."""

    agent: str
    runs: int = 0
    attempts: int = 0
    successes: int = 0
    mean_latency_s: float = 0.0
    p95_latency_s: float = 0.0
    tokens: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "runs": self.runs, "attempts": self.attempts,
                "success_rate": round(self.success_rate, 4),
                "mean_latency_s": round(self.mean_latency_s, 4),
                "p95_latency_s": round(self.p95_latency_s, 4), "tokens": self.tokens,
                "failures": self.failures}


@dataclass(frozen=True)
class RunSummary:
    """One line of ``orchestrator runs``."""

    run_id: str
    thread_id: str
    request: str
    mode: str
    status: str
    started_at: float
    elapsed_s: float
    llm_calls: int
    tokens: int


class RunStore:
    """SQLite store of runs, events and agent attempts; safe to share across threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One connection for the store's life: opening one per run costs milliseconds.
            self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            with self._lock, self._conn:
                self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot use the run store {self.path}: {exc} (move it aside, "
                              "or set ORCHESTRATOR_RECORD_RUNS=0)") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._conn:
            yield self._conn

    def close(self) -> None:
        self._conn.close()

    # --- writing ----------------------------------------------------------------------

    def save(self, result: RunResult, events: Sequence[Event], *, mode: str = "",
             event: dict[str, Any] | None = None) -> None:
        """Store a run (or the next part of a resumed one): its record, events and attempts."""
        with self._connect() as conn:
            row = conn.execute("SELECT started_at, elapsed_s FROM runs WHERE run_id = ?",
                               (result.run_id,)).fetchone()
            started = row[0] if row else (events[0].time if events else 0.0)
            elapsed = (row[1] if row else 0.0) + result.elapsed_s
            conn.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (result.run_id, result.thread_id, result.request,
                 json.dumps(event) if event else None, mode, result.status, started, elapsed,
                 result.usage.llm_calls, result.usage.input_tokens, result.usage.output_tokens,
                 result.answer, result.error,
                 json.dumps(result.plan.model_dump()) if result.plan else None))
            first = conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM events WHERE run_id = ?",
                                 (result.run_id,)).fetchone()[0]
            conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)", [
                (e.run_id, first + i, e.type, e.time, e.subtask_id, e.agent,
                 json.dumps(e.data, default=str), json.dumps(e.usage) if e.usage else None)
                for i, e in enumerate(events)])
            conn.executemany("INSERT INTO attempts VALUES (?,?,?,?,?,?,?,?)", [
                (e.run_id, e.subtask_id, e.agent, int(e.data.get("status") == "done"),
                 e.data.get("kind"), float(e.data.get("elapsed_s") or 0.0),
                 sum((e.usage or {}).get(k, 0) for k in ("input_tokens", "output_tokens")),
                 e.time)
                for e in events if e.type == "attempt_finished"
                and e.data.get("kind") != "budget"
                and e.data.get("status") != "awaiting_approval"])

    def claim_paused(self, run_id: str) -> bool:
        """Mark a paused run as resuming; False when it is not paused (already resumed, or
        being resumed by another process): one decision wins."""
        with self._connect() as conn:
            cursor = conn.execute("UPDATE runs SET status = 'resuming' WHERE run_id = ? AND "
                                  "status = 'paused'", (run_id,))
            known = conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return cursor.rowcount == 1 or known is None  # a run this store never saw: no claim

    # --- reading ----------------------------------------------------------------------

    def list_runs(self, limit: int = 20) -> list[RunSummary]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT run_id, thread_id, request, mode, status, started_at, elapsed_s, "
                "llm_calls, input_tokens + output_tokens FROM runs "
                "ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall()
        return [RunSummary(*row) for row in rows]

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
        """A run's record (plan and event parsed); RequestError if unknown."""
        full = self.resolve(run_id)
        with self._connect() as conn:
            cursor = conn.execute("SELECT * FROM runs WHERE run_id = ?", (full,))
            names = [d[0] for d in cursor.description]
            record = dict(zip(names, cursor.fetchone(), strict=True))
        for key in ("plan", "event"):
            record[key] = json.loads(record[key]) if record[key] else None
        return record

    def events(self, run_id: str) -> list[Event]:
        full = self.resolve(run_id)
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT type, run_id, time, subtask_id, agent, data, usage FROM events "
                "WHERE run_id = ? ORDER BY seq", (full,)).fetchall()
        return [Event(type=r[0], run_id=r[1], time=r[2], subtask_id=r[3], agent=r[4],
                      data=json.loads(r[5]), usage=json.loads(r[6]) if r[6] else None)
                for r in rows]

    def agent_stats(self) -> list[AgentStats]:
        """Per-agent statistics over every stored attempt."""
        with self._connect() as conn:
            rows = conn.execute("SELECT agent, run_id, ok, kind, elapsed_s, tokens "
                                "FROM attempts ORDER BY agent, time").fetchall()
        by_agent: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_agent.setdefault(row[0], []).append(row)
        out: list[AgentStats] = []
        for agent, items in sorted(by_agent.items()):
            latencies = sorted(r[4] for r in items)
            stats = AgentStats(agent, runs=len({r[1] for r in items}), attempts=len(items),
                               successes=sum(r[2] for r in items),
                               mean_latency_s=sum(latencies) / len(latencies),
                               p95_latency_s=_p95(latencies), tokens=sum(r[5] for r in items))
            for row in items:
                if not row[2]:
                    kind = row[3] or "unknown"
                    stats.failures[kind] = stats.failures.get(kind, 0) + 1
            out.append(stats)
        return out

    def recent_outcomes(self, window: int) -> dict[str, list[Outcome]]:
        """The last ``window`` attempts per agent, oldest first (to seed routing)."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT agent, ok, elapsed_s FROM (SELECT agent, ok, elapsed_s, time, "
                "ROW_NUMBER() OVER (PARTITION BY agent ORDER BY time DESC) AS n FROM attempts) "
                "WHERE n <= ? ORDER BY agent, time", (window,)).fetchall()
        out: dict[str, list[Outcome]] = {}
        for agent, ok, elapsed in rows:
            out.setdefault(agent, []).append(Outcome(bool(ok), float(elapsed)))
        return out


def _p95(ordered: list[float]) -> float:
    if not ordered:
        return 0.0
    index = max(0, min(len(ordered) - 1, round(0.95 * (len(ordered) - 1))))
    return ordered[index]
