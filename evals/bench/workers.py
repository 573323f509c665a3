"""Workers benchmark: runs dispatched by Temporal to 1, 2 and 4 workers over PostgreSQL,
against the same runs in one process on SQLite.

Starts a throwaway PostgreSQL cluster and Temporal's dev server on 127.0.0.1
(:mod:`orchestrator.evals.bench.services`), then:

1. **baseline**: one ``Orchestrator`` in this process on the embedded default (SQLite files
   in a temporary data folder) runs ``--runs`` requests at once;
2. **workers**: for each count in ``--workers``, a fresh database (checkpoints, run store,
   write journal and the business database all in it: ``ORCHESTRATOR_DATABASE_URL``) and
   that many ``orchestrator worker`` processes; this process submits ``--runs`` workflows
   at once (``orchestrator.temporal.client.TemporalRuns``) and waits for every outcome.

Every run is the IT ops incident request (four subtasks: diagnostics, traffic,
notifications and the incident log, three of them writes) with the offline model at
``fake:latency=0.2`` (every model call takes 0.2 s; a run alone takes about 1.1 s). A run's
latency is from its submission to its outcome. Reported per level: runs per second
(runs / wall time of the level), p50/p95 latency, errors, and how throughput scales with
workers (n workers / 1 worker) and against the baseline.

Targets: every run ends ``ok``, and the business database holds exactly one incident per
run (no write lost or made twice) at every level. Scaling is reported, not a target: on
this 2-core machine the workers, PostgreSQL, Temporal and this client share two cores.

Run ``python -m orchestrator.evals.bench.workers [--json] [--runs 200] [--workers 1,2,4]``;
the exit code is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.evals.bench.figures import Figure
from orchestrator.evals.bench.metrics import percentile
from orchestrator.evals.bench.services import (
    Cluster,
    TemporalServer,
    start_cluster,
    start_temporal,
    tree_cpu_s,
)

MODEL = "fake:latency=0.2"
REQUEST = ("web-3 is down: find the root cause, reroute its traffic to a backup, "
           "alert the on-call team and log the incident")
RUNS = 200
WORKERS = (1, 2, 4)
READY_S = 120.0


class BenchError(RuntimeError):
    """A worker or a service did not start."""


@dataclass
class Level:
    """One level's runs: latencies of the runs that ended ok, and what went wrong."""

    name: str
    workers: int
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    incidents: int = 0
    runs: int = 0
    run_ids: list[str] = field(default_factory=list)
    handovers: int = 0
    """Runs another worker took over (the first's heartbeats stopped arriving in time)."""
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds each part used during the level (workers, Temporal, PostgreSQL, this
    process)."""

    @property
    def runs_per_s(self) -> float:
        return self.runs / self.wall_s if self.wall_s else 0.0

    def latency(self, q: float) -> float:
        return percentile(sorted(self.latencies), q) if self.latencies else float("nan")

    def cpu_ms_per_run(self) -> dict[str, float]:
        return {part: seconds / self.runs * 1000 for part, seconds in self.cpu_s.items()}


Meter = Callable[[], dict[str, float]]
"""CPU seconds used so far, by part."""


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {part: after[part] - before.get(part, 0.0) for part in after}


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("ORCHESTRATOR_")}
    env.update(ORCHESTRATOR_HOME=str(home), ORCHESTRATOR_MODEL=MODEL,
               ORCHESTRATOR_KNOWLEDGE="0", **extra)
    return env


def _incidents(count_sql: str, conn_url: str | Path) -> int:
    """Incident rows in the business database (SQLite file or PostgreSQL URL)."""
    from orchestrator.domain_db import open_domain_db

    conn = open_domain_db(conn_url)
    try:
        return int(conn.execute(count_sql).fetchone()[0])
    finally:
        conn.close()


INCIDENT_COUNT = "SELECT COUNT(*) FROM incidents WHERE service = 'web-3'"


# --- baseline: one process, SQLite ------------------------------------------------------


async def _baseline(runs: int) -> Level:
    from orchestrator.api import Orchestrator
    from orchestrator.config import load_settings

    level = Level("SQLite, in process", 0, runs=runs)
    with tempfile.TemporaryDirectory(prefix="orch-bench-base-") as tmp:
        home = Path(tmp)
        saved = dict(os.environ)
        os.environ.update(_env(home))
        try:
            settings = load_settings()
            async with Orchestrator.from_settings(settings) as orch:
                await orch.arun(REQUEST)  # warm-up (not counted): the graph and the models
                before = _incidents(INCIDENT_COUNT, settings.domain_db_url)

                async def one() -> None:
                    started = time.perf_counter()
                    try:
                        result = await orch.arun(REQUEST)
                    except Exception as exc:  # counted, not raised
                        level.errors[type(exc).__name__] += 1
                        return
                    if result.status != "ok":
                        level.errors[f"status {result.status}"] += 1
                    else:
                        level.latencies.append(time.perf_counter() - started)

                started, cpu = time.perf_counter(), time.process_time()
                await asyncio.gather(*(one() for _ in range(runs)))
                level.wall_s = time.perf_counter() - started
                level.cpu_s = {"this process": time.process_time() - cpu}
                level.incidents = _incidents(INCIDENT_COUNT, settings.domain_db_url) - before
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return level


# --- workers on Temporal ------------------------------------------------------------------


@contextmanager
def _workers(count: int, env: dict[str, str], log_dir: Path, max_runs: int | None = None
             ) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` worker processes, each ready (it said so on stderr); SIGTERM at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ready = []
        for i in range(count):
            log = log_dir / f"worker-{i}.log"
            proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "worker",
                                     *(["--max-runs", str(max_runs)] if max_runs else [])],
                                    env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            procs.append(proc)
            ready.append(_watch(proc, log))
        deadline = time.monotonic() + READY_S
        for i, event in enumerate(ready):
            if not event.wait(max(deadline - time.monotonic(), 0.0)):
                raise BenchError(f"worker {i} was not ready within {READY_S:.0f}s: "
                                 f"{(log_dir / f'worker-{i}.log').read_text()[-800:]}")
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _watch(proc: subprocess.Popen[bytes], log: Path) -> threading.Event:
    """Copy the worker's stderr to ``log``; the event is set once it says it polls."""
    ready = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        with log.open("wb") as out:
            for line in proc.stderr:
                out.write(line)
                out.flush()
                if b"task queue" in line:
                    ready.set()

    threading.Thread(target=pump, daemon=True).start()
    return ready


async def _submit_all(env: dict[str, str], runs: int, level: Level, meter: Meter) -> None:
    from orchestrator.config import load_settings
    from orchestrator.storage import open_run_store
    from orchestrator.temporal.client import TemporalRuns, connect, run_job

    settings = load_settings(**{key[len("ORCHESTRATOR_"):].lower(): value
                                for key, value in env.items()
                                if key.startswith("ORCHESTRATOR_")})
    client = await connect(settings)
    store = open_run_store(settings.stores.runs)
    try:
        runner = TemporalRuns(client, settings, store)
        warm = await runner.submit(run_job(settings, request=REQUEST))
        await warm.result()  # each worker's first run builds its graph: not counted
        before = _incidents(INCIDENT_COUNT, settings.domain_db_url)

        async def one() -> None:
            started = time.perf_counter()
            try:
                handle = await runner.submit(run_job(settings, request=REQUEST))
                outcome = await handle.result()
            except Exception as exc:  # counted, not raised
                level.errors[type(exc).__name__] += 1
                return
            if outcome.status != "ok":
                why = (outcome.error or outcome.result.get("error") or "")[:120]
                level.errors[f"status {outcome.status}" + (f" ({why})" if why else "")] += 1
            else:
                level.latencies.append(time.perf_counter() - started)
            if outcome.run_id:
                level.run_ids.append(outcome.run_id)

        started, cpu = time.perf_counter(), meter()
        await asyncio.gather(*(one() for _ in range(runs)))
        level.wall_s = time.perf_counter() - started
        level.cpu_s = _delta(cpu, meter())
        level.incidents = _incidents(INCIDENT_COUNT, settings.domain_db_url) - before
        level.handovers = sum(  # a run given to another worker: its first looked gone
            any(e.type == "run_handed_over" for e in store.events(run_id))
            for run_id in level.run_ids)
    finally:
        store.close()


def _temporal_level(count: int, runs: int, cluster: Cluster, temporal: TemporalServer,
                    max_runs: int | None = None) -> Level:
    level = Level(f"Temporal, {count} worker{'s' if count > 1 else ''}", count, runs=runs)
    with tempfile.TemporaryDirectory(prefix="orch-bench-workers-") as tmp:
        home = Path(tmp)
        url = cluster.new_database("bench")
        env = _env(home, ORCHESTRATOR_DATABASE_URL=url,
                   ORCHESTRATOR_TEMPORAL_ADDRESS=temporal.address,
                   ORCHESTRATOR_TEMPORAL_TASK_QUEUE=f"bench-{count}-{os.getpid()}")
        reset = subprocess.run([sys.executable, "-m", "orchestrator.cli", "demo", "reset"],
                               env=env, capture_output=True, text=True, timeout=300)
        if reset.returncode != 0:
            raise BenchError(f"demo reset failed: {reset.stderr[-800:]}")
        with _workers(count, env, home, max_runs) as procs:

            def meter() -> dict[str, float]:
                return {"workers": sum(tree_cpu_s(p.pid) for p in procs),
                        "Temporal": tree_cpu_s(temporal.pid),
                        "PostgreSQL": tree_cpu_s(cluster.pid),
                        "this process": time.process_time()}

            asyncio.run(_submit_all(env, runs, level, meter))
    return level


# --- report ------------------------------------------------------------------------------


def describe(level: Level) -> str:
    errors = ", ".join(f"{n} {kind}" for kind, n in level.errors.most_common()) or "none"
    cpu = ", ".join(f"{part} {ms:.0f}" for part, ms in level.cpu_ms_per_run().items())
    return (f"{level.runs} runs in {level.wall_s:.1f} s: {level.runs_per_s:.1f} runs/s; "
            f"latency p50/p95 {level.latency(50) * 1000:.0f}/{level.latency(95) * 1000:.0f} "
            f"ms; errors {errors}; incidents written {level.incidents}; handed over "
            f"{level.handovers}; CPU ms per run: "
            f"{cpu} (total {sum(level.cpu_ms_per_run().values()):.0f})")


def figures(base: Level, levels: list[Level]) -> list[Figure]:
    found: list[Figure] = []
    one = next((lv for lv in levels if lv.workers == 1), None)
    for level in [base, *levels]:
        errors = sum(level.errors.values())
        found.append(Figure(f"{level.name}: errors", errors, "runs", "== 0", errors == 0,
                            describe(level)))
        found.append(Figure(f"{level.name}: incidents written", level.incidents, "rows",
                            f"== {level.runs}", level.incidents == level.runs,
                            "one per run: no write lost or made twice"))
        found.append(Figure(f"{level.name}: throughput", level.runs_per_s, "runs/s",
                            "(reported)", True, ""))
        found.append(Figure(f"{level.name}: latency p95", level.latency(95) * 1000, "ms",
                            "(reported)", True, f"p50 {level.latency(50) * 1000:.0f} ms"))
        if level.workers > 1 and one is not None and one.runs_per_s:
            found.append(Figure(f"{level.name}: throughput / 1 worker",
                                level.runs_per_s / one.runs_per_s, "x", "(reported)", True,
                                ""))
        if level.workers and base.runs_per_s:
            found.append(Figure(f"{level.name}: throughput / SQLite in process",
                                level.runs_per_s / base.runs_per_s, "x", "(reported)", True,
                                ""))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.evals.bench.workers",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")
    parser.add_argument("--runs", type=int, default=RUNS, help="runs per level")
    parser.add_argument("--workers", default=",".join(map(str, WORKERS)),
                        help="worker counts, comma-separated")
    parser.add_argument("--max-runs", type=int, default=None,
                        help="runs each worker takes at once (orchestrator worker --max-runs)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    runs = max(args.runs, 1)
    base = asyncio.run(_baseline(runs))
    cluster = start_cluster()
    try:
        temporal = start_temporal()
        try:
            levels = [_temporal_level(n, runs, cluster, temporal, args.max_runs)
                      for n in counts]
        finally:
            temporal.stop()
    finally:
        cluster.stop()
    found = figures(base, levels)
    ok = all(f.ok for f in found)
    if args.json:
        out = [{**asdict(f), "value": round(f.value, 4)} for f in found]
        print(json.dumps({"ok": ok, "figures": out, "load_average": os.getloadavg()},
                         indent=2))
    else:
        from orchestrator.evals.bench.engine import render

        print(render(found))
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
