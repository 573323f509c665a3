"""Adaptive coordination benchmark: routing by measured performance, and monitoring cost.

1. Two agents can page the on-call: ``pager`` (the planner's choice) fails 30% of the time
   (a seeded random draw per call), ``backup_pager`` never fails. 200 runs per setting:
   - static: the planner's choice, no recovery (what a plain supervisor does);
   - adaptive: routing by measured success, no recovery (first attempts only);
   - static + recovery: retries and reassignment, no adaptive routing;
   - adaptive + recovery: both (the default).
   Reported: success rate, first-attempt success rate, LLM calls per run, share of work
   the flaky agent got. Targets: adaptive success >= 0.9 and >= static + 0.15; adaptive +
   recovery succeeds every run with fewer LLM calls per run than static + recovery.
2. Monitoring overhead per subtask: runs of a 4-subtask plan at model latency 0 through
   ``Orchestrator.run`` (events streamed and collected, run store, agent statistics) and
   through the bare compiled graph (no streaming, no store), interleaved;
   (median monitored - median bare) / 4. Target: < 2 ms per subtask.

Run ``python -m orchestrator.evals.bench.adaptive [--json] [--runs 200]``; exit 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.tools import StructuredTool
from langgraph.checkpoint.memory import InMemorySaver

from orchestrator.agents.spec import AgentSpec
from orchestrator.api import Orchestrator
from orchestrator.config import Settings
from orchestrator.evals.bench.engine import bench_agents, request
from orchestrator.evals.bench.figures import Figure
from orchestrator.graph import build_graph
from orchestrator.runs import RunStore

FAIL_RATE = 0.3
SEED = 7
REQUEST = "page the on-call engineer for web-3: disk full"
OVERHEAD_RUNS = 40
OVERHEAD_TARGET_MS = 2.0


@dataclass
class Setting:
    name: str
    adaptive: bool
    recovery: bool


SETTINGS = (Setting("static", False, False), Setting("adaptive", True, False),
            Setting("static + recovery", False, True),
            Setting("adaptive + recovery", True, True))


@dataclass
class RoutingFigures:
    setting: str
    runs: int
    success_rate: float
    first_attempt_success: float
    llm_calls_per_run: float
    flaky_share: float


def pagers(rng: random.Random) -> list[AgentSpec]:
    """The flaky pager (listed first, so the planner picks it) and its steady alternative."""

    def page(service: str, message: str) -> str:
        """Page the on-call engineer of a service with a message."""
        if rng.random() < FAIL_RATE:
            raise ConnectionError("pager gateway returned 503")
        return f"paged the on-call for {service}"

    def page_backup(service: str, message: str) -> str:
        """Page the on-call engineer of a service through the second gateway."""
        return f"paged the on-call for {service} (backup gateway)"

    skills = ["page", "on-call", "alert"]
    return [
        AgentSpec(name="pager", description="Pages the on-call engineer of a service.",
                  skills=skills, tools=[StructuredTool.from_function(page)], source="bench"),
        AgentSpec(name="backup_pager", description="Second gateway for on-call pages.",
                  skills=skills, tools=[StructuredTool.from_function(page_backup)],
                  source="bench"),
    ]


def run_setting(setting: Setting, runs: int, home: Path) -> RoutingFigures:
    settings = Settings(
        home=home, knowledge=False, adaptive_routing=setting.adaptive,
        max_retries=1 if setting.recovery else 0, max_reassigns=1 if setting.recovery else 0,
        max_replans=0, retry_backoff_s=0.0)
    store = RunStore(home / f"runs-{setting.name.replace(' ', '')}.sqlite")
    orch = Orchestrator("fake", agents=pagers(random.Random(SEED)), settings=settings,
                        runs=store)
    ok = first_ok = calls = flaky = 0
    for _ in range(runs):
        result = orch.run(REQUEST)
        (sub,) = result.results.values()
        ok += sub.status == "done"
        first = next(e for e in result.events if e.type == "attempt_finished")
        first_ok += first.data["status"] == "done"
        calls += result.usage.llm_calls
        flaky += first.agent == "pager"
    return RoutingFigures(setting.name, runs, ok / runs, first_ok / runs, calls / runs,
                          flaky / runs)


def monitoring_overhead_ms(home: Path, runs: int) -> tuple[float, float, float]:
    """(monitored, bare, per-subtask overhead) in ms.

    Monitored: ``Orchestrator.run`` with events streamed and collected, the run store and
    agent statistics. Bare: the same compiled graph invoked without streaming (events go
    nowhere), no run store. Runs are interleaved so both arms share the machine's noise.
    """
    settings = Settings(home=home, knowledge=False, record_runs=True)
    monitored = Orchestrator("fake", agents=bench_agents(), settings=settings)
    bare = build_graph("fake", bench_agents(),
                       settings=Settings(home=home / "bare", knowledge=False,
                                         record_runs=False)).compile(checkpointer=InMemorySaver())
    text = request(4, chained=False)

    def run_bare() -> int:
        out = asyncio.run(bare.ainvoke(
            {"messages": [HumanMessage(text)], "request": text, "run_id": uuid.uuid4().hex,
             "event": None}, {"configurable": {"thread_id": uuid.uuid4().hex}}))
        return sum(r["status"] == "done" for r in out["results"].values())

    def run_monitored() -> int:
        result = monitored.run(text)
        return sum(r.status == "done" for r in result.results.values())

    timings: dict[str, list[float]] = {"monitored": [], "bare": []}
    arms = (("monitored", run_monitored), ("bare", run_bare))
    for index in range(runs + 3):
        for name, go in arms if index % 2 else arms[::-1]:
            started = time.perf_counter()
            done = go()
            elapsed = (time.perf_counter() - started) * 1000
            if done != 4:
                raise RuntimeError(f"overhead run ({name}) did not do 4 subtasks")
            if index >= 3:  # warm-up
                timings[name].append(elapsed)
    on, off = statistics.median(timings["monitored"]), statistics.median(timings["bare"])
    return on, off, (on - off) / 4


def measure(runs: int) -> tuple[list[RoutingFigures], tuple[float, float, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-adaptive-") as folder:
        home = Path(folder)
        routing = [run_setting(s, runs, home / s.name.replace(" ", "")) for s in SETTINGS]
        overhead = monitoring_overhead_ms(home / "overhead", OVERHEAD_RUNS)
    return routing, overhead


def figures(routing: list[RoutingFigures], overhead: tuple[float, float, float]
            ) -> list[Figure]:
    by = {r.setting: r for r in routing}
    static, adaptive = by["static"], by["adaptive"]
    fixed, both = by["static + recovery"], by["adaptive + recovery"]
    return [
        Figure("adaptive routing success (no recovery)", adaptive.success_rate, "",
               ">= 0.90", adaptive.success_rate >= 0.9),
        Figure("gain over static routing", adaptive.success_rate - static.success_rate, "",
               ">= 0.15", adaptive.success_rate - static.success_rate >= 0.15,
               f"static {static.success_rate:.3f}"),
        Figure("adaptive + recovery success", both.success_rate, "", "= 1.0",
               both.success_rate == 1.0),
        Figure("LLM calls per run, adaptive + recovery", both.llm_calls_per_run, "",
               f"< static + recovery ({fixed.llm_calls_per_run:.2f})",
               both.llm_calls_per_run < fixed.llm_calls_per_run),
        Figure("monitoring overhead per subtask", overhead[2], "ms",
               f"< {OVERHEAD_TARGET_MS:g} ms", overhead[2] < OVERHEAD_TARGET_MS,
               f"4-subtask run: {overhead[0]:.1f} ms monitored (events streamed, run store, "
               f"statistics), {overhead[1]:.1f} ms bare graph"),
    ]


def render(routing: list[RoutingFigures], found: list[Figure]) -> str:
    lines = [f"Routing: 'pager' fails {FAIL_RATE:.0%} of calls, 'backup_pager' never; "
             f"{routing[0].runs} runs per setting",
             f"{'setting':<22}{'success':>9}{'1st try':>9}{'LLM/run':>9}{'to pager':>10}"]
    for r in routing:
        lines.append(f"{r.setting:<22}{r.success_rate:>9.3f}{r.first_attempt_success:>9.3f}"
                     f"{r.llm_calls_per_run:>9.2f}{r.flaky_share:>10.1%}")
    lines.append("")
    for f in found:
        mark = "ok  " if f.ok else "MISS"
        value = f"{f.value:.3f}{' ' + f.unit if f.unit else ''}"
        lines.append(f"[{mark}] {f.name}: {value} (target {f.target})"
                     + (f" - {f.detail}" if f.detail else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.evals.bench.adaptive",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")
    parser.add_argument("--runs", type=int, default=200, help="runs per routing setting")
    args = parser.parse_args(argv)
    routing, overhead = measure(args.runs)
    found = figures(routing, overhead)
    if args.json:
        out: dict[str, Any] = {"routing": [asdict(r) for r in routing],
                               "figures": [asdict(f) for f in found]}
        print(json.dumps(out, indent=2))
    else:
        print(render(routing, found))
    return 0 if all(f.ok for f in found) else 1


if __name__ == "__main__":
    sys.exit(main())
