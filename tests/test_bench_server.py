"""The server load benchmark's pieces at a tiny size: a real ``orchestrator serve`` process,
two sessions of two turns, and figures computed from the answers it gave (no timing is
asserted)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator

from orchestrator.evals.bench.metrics import percentile
from orchestrator.evals.bench.server import (
    FINDINGS,
    Level,
    Turn,
    answer_problem,
    figures,
    measure,
    read_stream,
    running_server,
)


def test_two_sessions_against_a_real_server_give_figures_from_real_answers() -> None:
    with running_server("fake") as server:
        single, (load,) = asyncio.run(measure(server, (2,), turns=2, baseline_turns=2,
                                              rounds=2))
        with sqlite3.connect(server.home / "runs.sqlite") as db:
            runs = db.execute("SELECT thread_id, status, answer FROM runs").fetchall()
        rss, peak = server.memory_mb()

    assert [len(r.turns) for r in load.rounds] == [4, 4]
    assert load.turns == load.rounds[0].turns + load.rounds[1].turns
    assert [t.error for t in single.turns + load.turns] == [None] * 10
    assert [t.streamed for t in load.turns] == [True, False, False, True] * 2
    assert all(all(word in t.answer for word in FINDINGS) for t in load.turns)
    # Each session of each round ran on its own thread, and every turn is a finished run
    # on record.
    threads = sorted(thread.removeprefix("default:") for thread, _, _ in runs)
    assert threads == sorted(["warm-up"] + ["single-1-0"] * 2 + [
        f"load{r}-2-{i}" for r in (1, 2) for i in (0, 1) for _ in range(2)])
    assert {status for _, status, _ in runs} == {"ok"}
    assert {t.answer for t in load.turns} <= {answer for _, _, answer in runs}

    # The level pools its rounds: rate over their summed wall time, percentiles over
    # all their turns, CPU per request over all their turns.
    assert load.wall_s == load.rounds[0].wall_s + load.rounds[1].wall_s
    assert load.requests_per_s == 8 / load.wall_s
    middle = sorted(t.latency_s for t in load.turns)[3:5]
    assert load.latency(50) == sum(middle) / 2 > 0
    assert load.cpu_ms == (load.rounds[0].cpu_ms + load.rounds[1].cpu_ms) / 2 > 0
    assert 0 < load.rss_mb <= load.peak_rss_mb <= peak and rss > 0
    found = {f.name: f for f in figures(single, [load])}
    assert found["1 session: latency p50"].value == single.latency(50) * 1000
    assert found["2 sessions: errors"].value == 0 and found["2 sessions: errors"].ok
    assert found["2 sessions: throughput"].value == load.requests_per_s


def test_errors_are_counted_and_left_out_of_the_latencies() -> None:
    turns = [Turn(0.5, False), Turn(9.0, True, "HTTP 500: boom"), Turn(1.5, False)]
    level = Level(3, turns, wall_s=2.0, cpu_ms=1.0, client_cpu_ms=1.0, rss_mb=1.0,
                  peak_rss_mb=1.0, errors=Counter({"HTTP 500": 1}))
    assert level.latencies == [0.5, 1.5]
    assert level.latency(50) == 1.0
    assert level.requests_per_s == 1.5
    found = {f.name: f for f in figures(level, [level])}
    assert not found["3 sessions: errors"].ok


def test_the_ratio_level_pools_its_rounds_and_shows_each() -> None:
    def level(latencies: list[float], cpu_ms: float, rss_mb: float) -> Level:
        return Level(50, [Turn(x, False) for x in latencies], wall_s=2.0, cpu_ms=cpu_ms,
                     client_cpu_ms=1.0, rss_mb=rss_mb, peak_rss_mb=rss_mb + 1)

    single = level([1.0] * 3, 1.0, 1.0)
    calm, spiked = level([1.0] * 19 + [1.2], 10.0, 5.0), level([1.0] * 18 + [2.0] * 2, 30.0, 6.0)
    pooled = Level.pooled([calm, spiked])
    assert len(pooled.turns) == 40 and pooled.wall_s == 4.0
    assert pooled.cpu_ms == 20.0 and (pooled.rss_mb, pooled.peak_rss_mb) == (6.0, 7.0)
    assert spiked.latency(95) / single.latency(50) == 2.0  # alone it misses the target
    ratio = {f.name: f for f in figures(single, [pooled])}[
        "50 sessions: p95 / single-session p50"]
    assert ratio.value == pooled.latency(95) == percentile(
        [t.latency_s for t in calm.turns + spiked.turns], 95)
    assert ratio.detail.endswith("rounds alone 1.01 / 2.00 x")
    assert Level.pooled([calm]) is calm


def test_an_answer_without_both_findings_or_a_run_not_ok_is_an_error() -> None:
    assert answer_problem("root cause: disk full. Paged Dana.", "ok") is None
    assert answer_problem("root cause: disk full.", "ok") == "answer lacks 'Paged'"
    assert answer_problem("root cause. Paged.", "failed") == "run failed"


def _lines(*lines: str) -> AsyncIterator[str]:
    async def gen() -> AsyncIterator[str]:
        for line in lines:
            yield line
    return gen()


def _chunk(content: str | None = None, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    return "data: " + json.dumps({"choices": [{"delta": delta, "finish_reason": finish}]})


def test_a_stream_is_whole_only_with_its_plan_its_subtasks_a_stop_and_done() -> None:
    plan = ': orchestrator {"type": "plan_made"}'
    done_subtask = ': orchestrator {"type": "subtask_finished", "status": "done"}'
    whole = [_chunk(""), plan, done_subtask, done_subtask, _chunk("root cause "),
             _chunk("Paged"), _chunk(finish="stop"), "data: [DONE]"]
    assert asyncio.run(read_stream(_lines(*whole))) == ("root cause Paged", "ok", None)

    cut = asyncio.run(read_stream(_lines(*whole[:-2])))
    assert cut[2] == "stream ended without a stop chunk and [DONE]"
    error = 'data: {"error": {"message": "the run failed"}}'
    assert asyncio.run(read_stream(_lines(*whole[:5], error)))[2] == \
        "error in stream: the run failed"
    failed = done_subtask.replace('"done"', '"failed"')
    status = asyncio.run(read_stream(_lines(*whole[:3], failed, *whole[4:])))[1]
    assert status is not None and status.startswith("not run whole")
