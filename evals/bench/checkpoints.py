"""Checkpoint storage benchmark: 500 turns of one conversation thread.

Every turn adds two messages to the thread, and every checkpoint LangGraph writes holds the
whole conversation; kept forever, the checkpoints of a thread grow with the square of its
turns (785 MiB after 500 turns before pruning). A finished run now keeps only its thread's
latest checkpoint, so the file grows linearly.

Runs 500 turns of a cheap one-agent request ("check the health of web-N") on one thread
with the offline fake model (no knowledge base), through ``Orchestrator.arun`` with a
SQLite checkpointer, and reports the size of ``checkpoints.sqlite`` (after a WAL
checkpoint) at 100, 250 and 500 turns. Targets: size at 500 / size at 250 < 2.5 (linear
growth gives about 2, quadratic about 4) and under 16 MiB at 500 turns.

Run ``python -m orchestrator.evals.bench.checkpoints [--json] [--turns 500]``; exit 1 when
a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.api import Orchestrator
from orchestrator.config import Settings
from orchestrator.domain_db import reset_domain_db
from orchestrator.evals.bench.engine import render
from orchestrator.evals.bench.figures import Figure
from orchestrator.runs import RunStore

THREAD = "bench-thread"
MAX_RATIO = 2.5
CAP_MIB = 16.0


def file_mib(path: Path) -> float:
    """The database's size with its write-ahead log folded in, in MiB."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = path.with_name(path.name + "-wal")
    return (path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)) / 2**20


async def measure(turns: int, marks: list[int]) -> tuple[dict[int, float], float]:
    """Checkpoint file size (MiB) at each mark, and seconds per turn."""
    with tempfile.TemporaryDirectory(prefix="orch-ckpt-bench-") as tmp:
        home = Path(tmp)
        settings = Settings(home=home, knowledge=False)
        orch = Orchestrator("fake", agents=it_ops_agents(), settings=settings,
                            checkpointer=settings.checkpoints_path,
                            domain_db=reset_domain_db(home / "domain.sqlite"),
                            runs=RunStore(settings.runs_path))
        sizes: dict[int, float] = {}
        started = time.perf_counter()
        for turn in range(1, turns + 1):
            result = await orch.arun(f"check the health of web-{turn % 4 + 1}",
                                     thread_id=THREAD)
            if not result.ok:
                raise RuntimeError(f"turn {turn} did not finish: {result.status} "
                                   f"{result.error or result.answer}")
            if turn in marks:
                sizes[turn] = file_mib(settings.checkpoints_path)
        return sizes, (time.perf_counter() - started) / turns


def figures(turns: int) -> list[Figure]:
    marks = [m for m in (turns // 5, turns // 2, turns) if m > 0]
    sizes, per_turn = asyncio.run(measure(turns, marks))
    detail = ", ".join(f"{t} turns: {s:.2f} MiB" for t, s in sizes.items())
    detail += f"; {per_turn * 1000:.0f} ms per turn"
    half, last = sizes[marks[1]], sizes[marks[-1]]
    ratio = last / half if half else float("inf")
    return [
        Figure(f"checkpoint file, {marks[-1]} / {marks[1]} turns", ratio, "x",
               f"< {MAX_RATIO}", ratio < MAX_RATIO, detail),
        Figure(f"checkpoint file after {marks[-1]} turns", last, "MiB", f"< {CAP_MIB:g}",
               last < CAP_MIB),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.evals.bench.checkpoints",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")
    parser.add_argument("--turns", type=int, default=500, help="turns on the thread")
    args = parser.parse_args(argv)
    found = figures(max(args.turns, 4))
    ok = all(f.ok for f in found)
    if args.json:
        print(json.dumps({"ok": ok, "figures": [asdict(f) for f in found]}, indent=2))
    else:
        print(render(found))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
