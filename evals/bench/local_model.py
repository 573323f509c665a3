"""Real-model benchmark: a fixed subset of the core suite driven by a local LLM.

The subset (:data:`CASES`, 24 cases, all five domains: reads, writes, chains, parallel
work, failures and a refusal) runs against a real model, by default Qwen2.5-Coder-1.5B
Instruct (Q4_K_M) under llama.cpp's server (``--model local:qwen2.5-coder-1.5b``). Every
model request and reply goes to a cassette (:data:`CASSETTE`), and the figures to a
summary beside it; ``--replay`` runs the same cases from that cassette, so CI checks every
later change against the real model's recorded outputs (a changed prompt misses the
cassette and fails: record again with the model).

Printed per case: pass, model calls, prompt and output tokens, wall seconds, and writes
the case did not ask for. Targets: pass@1 >= 0.5; every case inside its wall time; no write
that was not asked for. Replay also requires the pass/fail of each case to be what the
recording saw.

Run ``python -m orchestrator.evals.bench.local_model [--model SPEC] [--replay] [--json]``
(recording takes about half an hour on a 2-core machine); exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from orchestrator.config import Settings, load_settings
from orchestrator.errors import ConfigError
from orchestrator.evals.bench.figures import Figure
from orchestrator.evals.runner import CaseRecord, EvalConfig, run_cases
from orchestrator.evals.schema import EvalCase
from orchestrator.evals.suite import select_cases

HERE = Path(__file__).resolve().parent
CASSETTE = HERE / "cassettes" / "local_model.jsonl"
SUMMARY = CASSETTE.with_suffix(".summary.json")
CORE = HERE.parent / "datasets" / "core"
DEFAULT_MODEL = "local:qwen2.5-coder-1.5b"
PASS_TARGET = 0.5

CASES = (
    # IT operations
    "single-health-web1", "single-route-web2", "single-page-api1", "single-incident-api2",
    "multi-health-and-logs", "chain-diagnose-then-page-web4", "kb-question-which-pool-web4",
    "refuse-poem",
    # commerce
    "com-stock-check-sku3", "com-recommend-c101", "com-refund-small", "com-fail-unknown-sku",
    # finance
    "fin-list-suspicious", "fin-score-tx1007", "fin-documents-cl3", "fin-chain-hold-then-case",
    # healthcare
    "hc-history-summary-p3", "hc-estimate-ap1", "hc-book-cardiology-p1",
    "hc-fail-unknown-appointment",
    # marketing
    "mk-analyze-cmp4", "mk-write-email-cmp1", "mk-launch-cmp1", "mk-fail-start-unscheduled",
)
"""Chosen before the model was measured, to cover each domain's kinds of work; never
changed to raise the figure."""


def subset(only: list[str] | None = None) -> list[EvalCase]:
    by_id = {case.id: case for case in select_cases([CORE])}
    missing = [c for c in (only or CASES) if c not in by_id or c not in CASES]
    if missing:
        raise SystemExit(f"the subset has no case {', '.join(missing)}")
    return [by_id[c] for c in CASES if not only or c in only]


def unasked_writes(case: EvalCase, record: CaseRecord) -> list[str]:
    """Writes that went through although the case asked for no call of that tool."""
    asked = {call.name for call in case.expect.tool_calls}
    done = []
    for run in record.trace:
        for event in run.get("events", []):
            data = event.get("data") or {}
            if (event.get("type") == "tool_called" and data.get("status") == "ok"
                    and "key" in data and not data.get("replayed")
                    and data.get("tool") not in asked):
                done.append(str(data.get("tool")))
    return done


def run(model: str, record: Path | None, settings: Settings, cases: list[EvalCase]
        ) -> list[CaseRecord]:
    from orchestrator.demo import ingest_demo_knowledge
    from orchestrator.models import get_model
    from orchestrator.retrieval.store import KnowledgeStore

    chat_model: Any = model
    if record is not None:
        from orchestrator.models.cassette import RecordingChatModel

        record.parent.mkdir(parents=True, exist_ok=True)
        record.unlink(missing_ok=True)
        chat_model = RecordingChatModel(inner=get_model(model), path=record)
    work = Path(tempfile.mkdtemp(prefix="orchestrator-bench-local-"))
    knowledge = KnowledgeStore(work / "chroma", embedder=settings.embedder)
    ingest_demo_knowledge(knowledge)
    config = EvalConfig(model=chat_model, concurrency=1, settings=settings,
                        knowledge=knowledge, workdir=work)

    def progress(rec: CaseRecord) -> None:
        print(f"  {rec.case_id}: {'pass' if rec.passed else 'FAIL'} "
              f"({rec.elapsed_s:.0f} s, {rec.llm_calls} calls)", file=sys.stderr, flush=True)

    return asyncio.run(run_cases(cases, config, progress))


def rows(cases: list[EvalCase], records: list[CaseRecord], wall_limit: float
         ) -> list[dict[str, Any]]:
    by_id = {c.id: c for c in cases}
    out = []
    for rec in records:
        out.append({
            "case": rec.case_id, "domain": rec.domain, "passed": rec.passed,
            "status": rec.status, "calls": rec.llm_calls, "prompt_tokens": rec.input_tokens,
            "output_tokens": rec.output_tokens, "wall_s": round(rec.elapsed_s, 1),
            "in_time": rec.elapsed_s <= wall_limit and "wall" not in (rec.error or ""),
            "unasked_writes": unasked_writes(by_id[rec.case_id], rec),
            "failed_checks": [s.name for s in rec.scores if not s.passed]})
    return out


def figures(table: list[dict[str, Any]], recorded: dict[str, Any] | None) -> list[Figure]:
    passed = sum(r["passed"] for r in table) / len(table)
    late = [r["case"] for r in table if not r["in_time"]]
    unasked = [f"{r['case']}: {', '.join(r['unasked_writes'])}" for r in table
               if r["unasked_writes"]]
    out = [
        Figure("pass@1", round(passed, 3), "share", f">= {PASS_TARGET}",
               passed >= PASS_TARGET, f"{sum(r['passed'] for r in table)}/{len(table)}"),
        Figure("cases over their wall time", len(late), "cases", "0", not late,
               ", ".join(late)),
        Figure("writes not asked for", len(unasked), "writes", "0", not unasked,
               "; ".join(unasked)),
    ]
    if recorded is not None:
        then = {r["case"]: r["passed"] for r in recorded["cases"]}
        changed = [r["case"] for r in table if then.get(r["case"]) != r["passed"]]
        out.append(Figure("cases whose outcome differs from the recording", len(changed),
                          "cases", "0", not changed, ", ".join(changed)))
    return out


def print_table(table: list[dict[str, Any]]) -> None:
    print(f"{'case':42} {'domain':10} {'pass':4} {'calls':>5} {'prompt':>7} {'output':>6} "
          f"{'wall s':>7}")
    for r in table:
        print(f"{r['case']:42} {r['domain']:10} {'yes' if r['passed'] else 'no':4} "
              f"{r['calls']:>5} {r['prompt_tokens']:>7} {r['output_tokens']:>6} "
              f"{r['wall_s']:>7}" + (f"  failed: {', '.join(r['failed_checks'])}"
                                     if r["failed_checks"] else ""))
    total = {k: sum(r[k] for r in table) for k in ("calls", "prompt_tokens", "output_tokens")}
    wall = sum(r["wall_s"] for r in table)
    print(f"{'total':42} {'':10} {sum(r['passed'] for r in table):>4} {total['calls']:>5} "
          f"{total['prompt_tokens']:>7} {total['output_tokens']:>6} {wall:>7.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model spec to record with")
    parser.add_argument("--replay", action="store_true",
                        help=f"run from the recorded cassette ({CASSETTE.name})")
    parser.add_argument("--cassette", type=Path, default=CASSETTE)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", action="append", metavar="CASE",
                        help="run only this case of the subset (repeat; for a look, no "
                             "figures are saved)")
    args = parser.parse_args(argv)
    summary_path = args.cassette.with_suffix(".summary.json")
    # the knowledge base's embedder decides the passages in the planner's prompt: the one
    # the recording used, whatever the environment says
    settings = load_settings(embedder="minilm")
    if args.replay:
        if not args.cassette.is_file() or not summary_path.is_file():
            print(f"no recording at {args.cassette}: record one with --model", file=sys.stderr)
            return 2
        recorded = json.loads(summary_path.read_text("utf-8"))
        model, record = f"replay:{args.cassette}", None
    else:
        recorded, model, record = None, args.model, args.cassette
    if args.only and record is not None:
        record = record.with_name(record.stem + ".look.jsonl")
    cases = subset(args.only)
    started = time.perf_counter()
    try:
        records = run(model, record, settings, cases)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = rows(cases, records, settings.max_wall_s or float("inf"))
    if recorded is not None and args.only:
        recorded["cases"] = [r for r in recorded["cases"] if r["case"] in args.only]
    found = figures(table, recorded)
    if record is not None and not args.only:
        summary_path.write_text(json.dumps(
            {"model": args.model, "recorded_at": time.strftime("%Y-%m-%d"),
             "wall_s": round(time.perf_counter() - started, 1), "cases": table},
            indent=1) + "\n", "utf-8")
    if args.json:
        print(json.dumps({"model": recorded["model"] if recorded else args.model,
                          "cases": table, "figures": [f.__dict__ for f in found]}, indent=1))
    else:
        print(f"model: {recorded['model'] + ' (replayed)' if recorded else args.model}")
        print_table(table)
        for f in found:
            print(f"{f.name}: {f.value} {f.unit} (target {f.target}) "
                  f"{'ok' if f.ok else 'MISSED'}{' - ' + f.detail if f.detail else ''}")
    return 0 if all(f.ok for f in found) else 1


if __name__ == "__main__":
    sys.exit(main())
