"""What the run stores read back, built from rows the same way on every backend.

The SQLite and PostgreSQL run stores differ in their SQL, not in what a row means: each
selects the columns named here, in this order, and hands the rows to these functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from orchestrator.events import AttemptFinishedData, Event, PlanMadeData, ReplannedData
from orchestrator.leases import effective_status
from orchestrator.routing import Outcome
from orchestrator.runs import AgentStats, ThreadSummary

ATTEMPT_COLUMNS = "agent, run_id, ok, kind, elapsed_s, tokens"
"""What :func:`agent_stats` reads from ``attempts`` (ordered by agent, then time)."""
EVENT_COLUMNS = "type, run_id, time, subtask_id, agent, data, usage"
"""What :func:`events` reads from ``events`` (ordered by seq)."""


USAGE_EVENTS = frozenset({"plan_made", "attempt_finished", "replanned"})
"""Events whose usage adds up to a run's so far (the others repeat part of it; a killed run
keeps its cost); the total, with the answer's call, is written when the run ends."""


def attempt_rows(run_id: str, events: Sequence[Event]) -> list[tuple[Any, ...]]:
    """The ``attempts`` rows of ``events``: each finished attempt on an agent, once (not a
    budget stop, not a pause for approval)."""
    rows = []
    for e in events:
        if e.type != "attempt_finished":
            continue
        a = cast(AttemptFinishedData, e.data)
        if a["kind"] != "budget" and a["status"] != "awaiting_approval":
            rows.append((run_id, e.subtask_id, e.agent, int(a["status"] == "done"), a["kind"],
                         float(a["elapsed_s"] or 0.0),
                         sum((e.usage or {}).get(k, 0) for k in ("input_tokens",
                                                                 "output_tokens")),
                         e.time))
    return rows


def plan_of(e: Event) -> tuple[Any, str | None]:
    """The plan (and how it was made) an event puts on the run's record: (None, None) for
    an event that carries none."""
    if e.type == "plan_made":
        made = cast(PlanMadeData, e.data)
        return made["plan"], made["mode"]
    if e.type == "replanned":
        return cast(ReplannedData, e.data).get("plan"), None
    return None, None


def usage_of(e: Event) -> tuple[int, int, int] | None:
    """What an event adds to the run's (llm_calls, input_tokens, output_tokens)."""
    if not e.usage or e.type not in USAGE_EVENTS:
        return None
    return (e.usage.get("llm_calls", 0), e.usage.get("input_tokens", 0),
            e.usage.get("output_tokens", 0))


def record(names: Sequence[str], row: Sequence[Any], now: float | None = None
           ) -> dict[str, Any]:
    """A run's record from a ``runs`` row (its columns ``names``): plan, event and results
    parsed; the status as it stands at ``now`` (a run whose owner is gone reads
    ``interrupted``); ``driver`` local for a row stored before runs had one."""
    out = dict(zip(names, row, strict=True))
    for key in ("plan", "event", "results"):
        out[key] = json.loads(out[key]) if out[key] else None
    out["status"] = effective_status(out["status"], out["pid"], out["host"],
                                     out["lease_until"], now)
    out["driver"] = out.get("driver") or "local"
    return out


def p95(ordered: list[float]) -> float:
    """The 95th percentile of sorted values (0 when there are none)."""
    if not ordered:
        return 0.0
    index = max(0, min(len(ordered) - 1, round(0.95 * (len(ordered) - 1))))
    return ordered[index]


def agent_stats(rows: Sequence[Sequence[Any]]) -> list[AgentStats]:
    """Per-agent statistics from rows of :data:`ATTEMPT_COLUMNS`."""
    by_agent: dict[str, list[Sequence[Any]]] = {}
    for row in rows:
        by_agent.setdefault(row[0], []).append(row)
    out: list[AgentStats] = []
    for agent, items in sorted(by_agent.items()):
        latencies = sorted(r[4] for r in items)
        stats = AgentStats(agent, runs=len({r[1] for r in items}), attempts=len(items),
                           successes=sum(r[2] for r in items),
                           mean_latency_s=sum(latencies) / len(latencies),
                           p95_latency_s=p95(latencies), tokens=sum(r[5] for r in items))
        for row in items:
            if not row[2]:
                kind = row[3] or "unknown"
                stats.failures[kind] = stats.failures.get(kind, 0) + 1
        out.append(stats)
    return out


def outcomes(rows: Sequence[Sequence[Any]]) -> dict[str, list[Outcome]]:
    """Each agent's outcomes, in order, from rows of ``agent, ok, elapsed_s``."""
    out: dict[str, list[Outcome]] = {}
    for agent, ok, elapsed in rows:
        out.setdefault(agent, []).append(Outcome(bool(ok), float(elapsed)))
    return out


def events(rows: Sequence[Sequence[Any]]) -> list[Event]:
    """Events from rows of :data:`EVENT_COLUMNS`."""
    return [Event(type=r[0], run_id=r[1], time=r[2], subtask_id=r[3], agent=r[4],
                  data=json.loads(r[5]), usage=json.loads(r[6]) if r[6] else None)
            for r in rows]


def thread_summaries(rows: Sequence[Sequence[Any]], now: float) -> list[ThreadSummary]:
    """Threads from rows of ``thread_id, runs, first request, last run_id, status,
    started_at, pid, host, lease_until, last event time`` (a run whose owner is gone at
    ``now`` reads ``interrupted``)."""
    return [ThreadSummary(thread_id=row[0], title=row[2] or "", runs=row[1],
                          last_run_id=row[3],
                          last_status=effective_status(row[4], row[6], row[7], row[8], now),
                          last_active_at=max(row[5] or 0.0, row[9] or 0.0))
            for row in rows]
