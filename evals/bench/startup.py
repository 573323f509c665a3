"""Start-up benchmark: how long the CLI takes before it is useful.

Measures, each in a fresh subprocess of the ``orchestrator`` console script:

- ``orchestrator --help`` and ``orchestrator agents``: wall time to exit (target 0.5 s; the
  first listing, which builds the agent catalog, is reported apart);
- ``orchestrator run "<demo request>"`` with the knowledge base on (the demo knowledge base
  already ingested, into a temporary ``ORCHESTRATOR_HOME``; the ingest is not timed): the
  time from starting the process to the run's ``plan_made`` event (target 3 s), read from
  the event's time in the run store;
- the embedding model's load, reported apart: as the run recorded it
  (``embedder_load_s`` on the attempt that first searched the knowledge base, which is
  left out of that attempt's latency) and on its own in a fresh process.

It also checks that the fast path stays correct: the first run routes web-3's PCI payment
traffic to ``web-backup-a``, as the failover runbook demands, and the answer cites it.

Run ``python -m orchestrator.evals.bench.startup [--json] [--repeat 5]``; figures are
medians; exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.evals.bench.figures import Figure

DEMO_REQUEST = ("web-3 is down: find the root cause, reroute its traffic to a backup, "
                "alert the on-call team and log the incident")
CLI_TARGET_S = 0.5
PLAN_TARGET_S = 3.0
_LOAD_EMBEDDER = ("import time; from orchestrator.retrieval.embedders import MiniLMEmbedder; "
                  "t = time.perf_counter(); e = MiniLMEmbedder(); e.load(); "
                  "print(time.perf_counter() - t)")


@dataclass
class RunTiming:
    """One timed ``orchestrator run``."""

    to_plan_s: float
    total_s: float
    embedder_load_s: float
    """Embedding-model load recorded on the run's attempts (0 when nothing embedded)."""
    attempts: dict[str, float] = field(default_factory=dict)
    """Latency charged to each agent's attempt(s), seconds."""
    routed_to: str | None = None
    cites_runbook: bool = False


def cli_script() -> list[str]:
    """The ``orchestrator`` console script that pip installed beside this interpreter (a
    version-manager shim on PATH would add its own start-up to every figure)."""
    beside = Path(sys.executable).with_name("orchestrator")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("orchestrator")
    if found is None:
        raise SystemExit("the orchestrator console script is not installed: pip install -e .")
    return [found]


def bench_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(ORCHESTRATOR_HOME=str(home), ORCHESTRATOR_KNOWLEDGE="1",
               ORCHESTRATOR_EMBEDDER="minilm", ORCHESTRATOR_MODEL="fake")
    return env


def time_command(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def time_run(script: list[str], env: dict[str, str], home: Path) -> RunTiming:
    started = time.time()
    done = subprocess.run([*script, "run", "--json", DEMO_REQUEST], env=env,
                          capture_output=True, text=True)
    total = time.time() - started
    if done.returncode != 0:
        raise RuntimeError(f"orchestrator run failed ({done.returncode}): "
                           f"{done.stderr.strip()[-2000:]}")
    reply = json.loads(done.stdout)
    with sqlite3.connect(home / "runs.sqlite") as conn:
        rows = conn.execute("SELECT type, time, agent, data FROM events WHERE run_id = ? "
                            "ORDER BY seq", (reply["run_id"],)).fetchall()
    plan_times = [row[1] for row in rows if row[0] == "plan_made"]
    if not plan_times:
        raise RuntimeError("the run recorded no plan_made event")
    timing = RunTiming(to_plan_s=plan_times[0] - started, total_s=total, embedder_load_s=0.0)
    for kind, _, agent, data in rows:
        if kind == "attempt_finished":
            payload = json.loads(data)
            timing.embedder_load_s += float(payload.get("embedder_load_s") or 0.0)
            timing.attempts[agent] = timing.attempts.get(agent, 0.0) + \
                float(payload.get("elapsed_s") or 0.0)
    with sqlite3.connect(home / "domain.sqlite") as conn:
        row = conn.execute("SELECT pool FROM routes WHERE service = 'web-3'").fetchone()
    timing.routed_to = row[0] if row else None
    timing.cites_runbook = "[runbook-web-failover.md#" in str(reply.get("answer", ""))
    return timing


def measure(repeat: int) -> tuple[list[Figure], dict[str, object]]:
    script = cli_script()
    with tempfile.TemporaryDirectory(prefix="orch-startup-bench-") as tmp:
        home = Path(tmp)
        env = bench_env(home)
        # Not timed: the demo database and the demo knowledge base, embedded with MiniLM.
        subprocess.run([*script, "demo", "reset"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        helps = [time_command([*script, "--help"], env) for _ in range(repeat)]
        # The first listing builds the agent catalog (agents.catalog); later ones read it.
        agents_cold = time_command([*script, "agents"], env)
        agents = [time_command([*script, "agents"], env) for _ in range(repeat)]
        runs = [time_run(script, env, home) for _ in range(repeat)]
        loads = [float(subprocess.run([sys.executable, "-c", _LOAD_EMBEDDER], env=env,
                                      check=True, capture_output=True, text=True
                                      ).stdout.strip().splitlines()[-1])
                 for _ in range(repeat)]
    help_s, agents_s = statistics.median(helps), statistics.median(agents)
    plan_s = statistics.median(r.to_plan_s for r in runs)
    in_run_load = statistics.median(r.embedder_load_s for r in runs)
    first = runs[0]
    charged = ", ".join(f"{agent} {seconds:.2f}" for agent, seconds in
                        sorted(first.attempts.items(), key=lambda item: -item[1]))
    correct = first.routed_to == "web-backup-a" and first.cites_runbook

    def spread(values: list[float]) -> str:
        return f"runs: {', '.join(f'{v:.2f}' for v in values)} s"

    found = [
        Figure("orchestrator --help", help_s, "s", f"< {CLI_TARGET_S:g}",
               help_s < CLI_TARGET_S, spread(helps)),
        Figure("orchestrator agents", agents_s, "s", f"< {CLI_TARGET_S:g}",
               agents_s < CLI_TARGET_S, spread(agents)),
        Figure("orchestrator agents, first listing (builds the agent catalog), s",
               agents_cold, "", "reported", True, "later listings read the catalog until a pack, "
               "plugin or card changes"),
        Figure("orchestrator run: start to first plan event (knowledge base on)", plan_s, "s",
               f"< {PLAN_TARGET_S:g}", plan_s < PLAN_TARGET_S,
               spread([r.to_plan_s for r in runs]) + "; whole run: " +
               ", ".join(f"{r.total_s:.2f}" for r in runs) + " s"),
        Figure("embedding model load during the run, s (reported apart)", in_run_load, "",
               "not charged", True,
               f"{spread([r.embedder_load_s for r in runs])}; latency charged to the "
               f"agents in the first run: {charged} s"),
        Figure("embedding model load in a process of its own, s", statistics.median(loads),
               "", "reported", True, spread(loads)),
        Figure("demo routes web-3 to web-backup-a and cites the runbook", float(correct), "",
               "1", correct, f"routed to {first.routed_to}, runbook cited: "
               f"{first.cites_runbook}"),
    ]
    raw: dict[str, object] = {"script": script, "help_s": helps, "agents_s": agents,
                              "agents_first_s": agents_cold,
                              "runs": [asdict(r) for r in runs], "embedder_load_s": loads}
    return found, raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.evals.bench.startup",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")
    parser.add_argument("--repeat", type=int, default=5, help="measurements per figure")
    args = parser.parse_args(argv)
    found, raw = measure(max(args.repeat, 1))
    ok = all(f.ok for f in found)
    if args.json:
        out = [{**asdict(f), "value": round(f.value, 4)} for f in found]
        print(json.dumps({"ok": ok, "figures": out, "raw": raw}, indent=2))
    else:
        from orchestrator.evals.bench.engine import render

        print(render(found))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
