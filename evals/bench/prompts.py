"""Prompt-size benchmark: prompt tokens per model call, by kind of call.

Runs a fixed set of requests, three or more per built-in domain pack (one of them on a
database where paging fails, so the supervisor replans it), with the offline fake model in
adaptive coordination (so every request is planned by the supervisor), the demo knowledge
base on (planner context, ``retrieve`` results), each request on a fresh copy of the demo
database, approvals granted. Every model call is sorted by kind, from what it was asked:
``planner`` (the Plan tool bound), ``replan`` (the same with a ``<remaining>`` block),
``synthesizer`` (a ``<results>`` block) and ``specialist`` (the rest), and measured by the
input tokens the fake model reports for it: about four characters a token over the messages
*and* the bound tool schemas, so a smaller schema counts.

Baseline: the same requests at commit 49d4a7b, before the prompts were compacted (compact
tool and plan schemas, shorter planner and specialist instructions, no empty knowledge
block). Targets: prompt tokens per call at most the baseline for every kind, and lower for
planner and specialist calls.

A second pass runs the same requests with a planner shortlist of 8 agents (of 25), and
reports the planner's prompt tokens per call and whether every request was still given to
the same agents as with the whole catalog.

Run ``python -m orchestrator.evals.bench.prompts [--json] [--embedder minilm]``; exit 1 when
a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from langchain_core.messages import BaseMessage, HumanMessage

from orchestrator.api import Orchestrator
from orchestrator.config import Settings
from orchestrator.demo import ingest_demo_knowledge
from orchestrator.domain_db import reset_domain_db, use_domain_db
from orchestrator.evals.bench.engine import render
from orchestrator.evals.bench.figures import Figure
from orchestrator.models.fake import FakeCall, FakeChatModel
from orchestrator.retrieval.store import KnowledgeStore
from orchestrator.runs import RunStore

REQUESTS: tuple[tuple[str, str], ...] = (
    ("it_ops", "web-3 is down: find the root cause, reroute its traffic to a backup, alert "
               "the on-call team and log the incident"),
    ("it_ops", "check the health of api-1 and read the logs of db-1"),
    ("it_ops", "fail over web-99 to a backup pool"),
    ("commerce", "recommend products for customer c-101"),
    ("commerce", "set the stock of sku-4 to 0 units, then pause the promotion of sku-4"),
    ("commerce", "refund order o-1002"),
    ("finance", "score the fraud risk of tx-1007"),
    ("finance", "hold transaction tx-1008, then file a compliance case for tx-1008"),
    ("finance", "check the onboarding documents of cl-3"),
    ("healthcare", "book a cardiology visit for p-1"),
    ("healthcare", "summarize the history of p-3"),
    ("healthcare", "order the diagnostics for appointment ap-1, then estimate the cost of "
                   "appointment ap-1"),
    ("marketing", "launch campaign cmp-1"),
    ("marketing", "analyse the engagement of campaign cmp-4"),
    ("marketing", "write the email for campaign cmp-2, then schedule the email of campaign "
                  "cmp-2 at the best send time"),
    ("it_ops", "fail over web-1 and page the web-1 on-call about it"),
    ("it_ops", "alert the on-call engineer for web-3: disk full on web-3, then log an "
               "incident for web-3"),  # paging is broken (SETUP): a replan
)
SETUP = {len(REQUESTS) - 1: "DROP TABLE alerts"}
"""SQL run on a request's database copy first (by index in :data:`REQUESTS`)."""
KINDS = ("planner", "specialist", "synthesizer", "replan")
BASELINE_COMMIT = "49d4a7b"
BASELINE: dict[str, float] = {"planner": 2380.3, "specialist": 571.6, "synthesizer": 223.8,
                             "replan": 1919.0}
"""Mean prompt tokens per call at :data:`BASELINE_COMMIT` (measured with MiniLM)."""
SHORTLIST = 8


@dataclass
class PassResult:
    """Prompt tokens per call kind over the requests, and the agents each request used."""

    tokens: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    agents: list[list[str]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)

    def mean(self, kind: str) -> float:
        found = self.tokens.get(kind) or []
        return round(statistics.fmean(found), 1) if found else 0.0


def call_kind(call: FakeCall) -> str:
    """What a model call was for, from what it was asked."""
    human = _last_human(call.messages)
    if "Plan" in call.tool_names:
        return "replan" if "<remaining" in human else "planner"
    if "<results>" in human:
        return "synthesizer"
    return "specialist"


def _last_human(messages: list[BaseMessage]) -> str:
    return next((m.text for m in reversed(messages) if isinstance(m, HumanMessage)), "")


async def run_pass(work: Path, knowledge: KnowledgeStore | None, **overrides: object
                   ) -> PassResult:
    """Every request once, on its own database copy and thread; approvals granted."""
    model = FakeChatModel()
    settings = Settings(home=work, coordination="adaptive", adaptive_routing=False,
                        retry_backoff_s=0.0, **overrides)  # type: ignore[arg-type]
    template = reset_domain_db(work / "seed.sqlite")
    result = PassResult()
    async with Orchestrator(model, settings=settings, knowledge=knowledge,
                            runs=RunStore(work / "runs.sqlite")) as orchestrator:
        for index, (_, request) in enumerate(REQUESTS):
            db = work / f"case-{index}.sqlite"
            shutil.copyfile(template, db)
            if index in SETUP:
                with sqlite3.connect(db) as conn:
                    conn.executescript(SETUP[index])
            first = len(model.calls)
            thread = f"bench-{index}"
            with use_domain_db(db):
                run = await orchestrator.arun(request, thread_id=thread)
                for _ in range(5):
                    if run.status != "paused":
                        break
                    run = await orchestrator.aresume(thread, True, reason="benchmark")
            for call in model.calls[first:]:
                usage = call.reply.usage_metadata
                tokens = usage["input_tokens"] if usage is not None else 0
                result.tokens[call_kind(call)].append(int(tokens))
            result.agents.append(sorted({r.agent for r in run.results.values()}))
            result.statuses.append(run.status)
    return result


def measure(embedder: str) -> tuple[PassResult, PassResult | None]:
    with tempfile.TemporaryDirectory(prefix="orch-prompt-bench-") as tmp:
        work = Path(tmp)
        knowledge = KnowledgeStore(work / "chroma", embedder=embedder)
        ingest_demo_knowledge(knowledge)
        whole = asyncio.run(run_pass(work / "whole", knowledge, embedder=embedder))
        shortlisted = None
        if "planner_shortlist" in Settings.model_fields:
            shortlisted = asyncio.run(run_pass(work / "shortlist", knowledge,
                                               embedder=embedder,
                                               planner_shortlist=SHORTLIST))
        return whole, shortlisted


def figures(whole: PassResult, shortlisted: PassResult | None) -> list[Figure]:
    found: list[Figure] = []
    for kind in KINDS:
        now = whole.mean(kind)
        before = BASELINE.get(kind)
        calls = len(whole.tokens.get(kind) or [])
        if before is None:
            found.append(Figure(f"{kind}: prompt tokens per call", now, "tokens",
                                "(no baseline)", True, f"{calls} calls"))
            continue
        must_drop = kind in ("planner", "specialist")
        ok = now < before if must_drop else now <= before
        change = (now - before) / before * 100 if before else 0.0
        found.append(Figure(
            f"{kind}: prompt tokens per call", now, "tokens",
            f"{'<' if must_drop else '<='} {before} (at {BASELINE_COMMIT})", ok,
            f"{calls} calls; {change:+.1f} %"))
    if shortlisted is not None:
        full, short = whole.mean("planner"), shortlisted.mean("planner")
        found.append(Figure(
            f"planner, shortlist of {SHORTLIST} of 25 agents: prompt tokens per call", short,
            "tokens", f"< {full} (whole catalog)", short < full,
            f"{(short - full) / full * 100:+.1f} %" if full else ""))
        same = sum(a == b for a, b in zip(whole.agents, shortlisted.agents, strict=True))
        found.append(Figure(
            "same agents with the shortlist as with the whole catalog", same, "requests",
            f"= {len(REQUESTS)}", same == len(REQUESTS),
            "; ".join(f"{REQUESTS[i][1][:30]!r}: {a} vs {b}" for i, (a, b) in
                      enumerate(zip(whole.agents, shortlisted.agents, strict=True))
                      if a != b)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.evals.bench.prompts",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")
    parser.add_argument("--embedder", default="minilm",
                        help="the knowledge base's embedder (the baseline used minilm)")
    args = parser.parse_args(argv)
    whole, shortlisted = measure(args.embedder)
    found = figures(whole, shortlisted)
    ok = all(f.ok for f in found)
    if args.json:
        print(json.dumps({"ok": ok, "figures": [asdict(f) for f in found],
                          "tokens": {k: whole.mean(k) for k in KINDS},
                          "statuses": whole.statuses}, indent=2))
    else:
        print(render(found))
        print("statuses: " + ", ".join(whole.statuses))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
