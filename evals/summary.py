"""Suite figures from case records: pass@1, pass^k, per domain and tag, routing, cost, speed."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from orchestrator.evals.runner import CaseRecord

NO_AGENT = "(none)"


def summarize(records: Sequence[CaseRecord], *, model: str, repeat: int) -> dict[str, Any]:
    """The ``summary.json`` object."""
    by_case: dict[str, list[CaseRecord]] = defaultdict(list)
    for record in records:
        by_case[record.case_id].append(record)
    cases = list(by_case.values())
    pass_at_1 = _mean([sum(r.passed for r in runs) / len(runs) for runs in cases])
    pass_all = _mean([float(all(r.passed for r in runs)) for runs in cases])
    elapsed = [r.elapsed_s for r in records]
    tokens = [r.input_tokens + r.output_tokens for r in records]
    failing = sorted(cid for cid, runs in by_case.items() if not all(r.passed for r in runs))
    known = {cid: runs[0].known_failure for cid, runs in by_case.items()
             if runs[0].known_failure}
    return {
        "model": model,
        "repeat": repeat,
        "cases": len(cases),
        "runs": len(records),
        "pass_at_1": round(pass_at_1, 4),
        f"pass_hat_{repeat}": round(pass_all, 4),
        "pass_hat_k": round(pass_all, 4),
        "passed_cases": len(cases) - len(failing),
        "case_ids": sorted(by_case),
        "failed_cases": failing,
        "unexpected_failures": [c for c in failing if c not in known],
        "known_failures": known,
        "known_failures_passing": sorted(c for c in known if c not in failing),
        "per_case": {cid: {"runs": len(runs), "passes": sum(r.passed for r in runs),
                           "pass_at_1": round(sum(r.passed for r in runs) / len(runs), 4),
                           "pass_hat_k": all(r.passed for r in runs)}
                     for cid, runs in sorted(by_case.items())},
        "by_domain": _rates(records, lambda r: [r.domain]),
        "by_tag": _rates(records, lambda r: r.tags),
        "scorers": _scorer_rates(records),
        "routing": routing_matrix(records),
        "llm_calls": {"mean": round(_mean([r.llm_calls for r in records]), 3),
                      "total": sum(r.llm_calls for r in records)},
        "tokens": {"mean": round(_mean(tokens), 1), "total": sum(tokens),
                   "input_total": sum(r.input_tokens for r in records),
                   "output_total": sum(r.output_tokens for r in records)},
        "cost": {"total": round(sum(r.cost for r in records), 6),
                 "mean": round(_mean([r.cost for r in records]), 6)},
        "latency_s": {"p50": _percentile(elapsed, 50), "p95": _percentile(elapsed, 95),
                      "max": round(max(elapsed, default=0.0), 4)},
        "errors": sum(1 for r in records if r.error),
        "false_ok": false_ok(records),
    }


def false_ok(records: Sequence[CaseRecord]) -> list[str]:
    """Cases where a run said ``ok`` while the database checks failed: the asked change
    did not happen (or something else did) and the orchestrator did not notice."""
    return sorted({r.case_id for r in records if r.status == "ok" and any(
        s.name == "state" and not s.passed for s in r.scores)})


def routing_matrix(records: Sequence[CaseRecord]) -> dict[str, Any]:
    """Expected agent x used agent counts, plus micro precision and recall of agents used."""
    counts: Counter[tuple[str, str]] = Counter()
    hits = expected_total = used_total = 0
    for record in records:
        if record.expected_agents is None:
            continue
        expected, used = set(record.expected_agents), set(record.agents_used)
        hits += len(expected & used)
        expected_total += len(expected)
        used_total += len(used)
        for agent in expected & used:
            counts[(agent, agent)] += 1
        missing, extra = sorted(expected - used), sorted(used - expected)
        for index, agent in enumerate(missing):
            counts[(agent, extra[index] if index < len(extra) else NO_AGENT)] += 1
        for agent in extra[len(missing):]:
            counts[(NO_AGENT, agent)] += 1
        if not expected and not used:
            counts[(NO_AGENT, NO_AGENT)] += 1
    labels = sorted({a for pair in counts for a in pair}, key=lambda a: (a == NO_AGENT, a))
    return {
        "labels": labels,
        "matrix": [[counts[(e, u)] for u in labels] for e in labels],
        "precision": round(hits / used_total, 4) if used_total else 1.0,
        "recall": round(hits / expected_total, 4) if expected_total else 1.0,
    }


def _rates(records: Sequence[CaseRecord], keys: Any) -> dict[str, dict[str, float]]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for record in records:
        for key in keys(record):
            groups[key].append(record.passed)
    return {k: {"runs": len(v), "pass_rate": round(sum(v) / len(v), 4)}
            for k, v in sorted(groups.items())}


def _scorer_rates(records: Sequence[CaseRecord]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    for record in records:
        for score in record.scores:
            groups[score.name].append((score.passed, score.value))
    return {name: {"applied": len(v), "pass_rate": round(sum(p for p, _ in v) / len(v), 4),
                   "mean_value": round(_mean([x for _, x in v]), 4)}
            for name, v in sorted(groups.items())}


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def _percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return round(ordered[index], 4)
