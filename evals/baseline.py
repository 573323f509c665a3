"""Compare a run with a baseline ``summary.json`` and decide whether CI should fail."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError


@dataclass(frozen=True)
class GateThresholds:
    """How much worse a run may be than its baseline before the gate fails."""

    max_pass_drop: float = 0.0
    """Allowed drop of pass@1, in absolute points (0.02 = two percentage points)."""
    max_cost_rise: float = 0.10
    """Allowed relative rise of total cost and total tokens (0.10 = 10 %)."""


@dataclass
class Comparison:
    deltas: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    """metric -> (baseline, now, now - baseline)."""
    newly_failing: list[str] = field(default_factory=list)
    newly_passing: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {"deltas": {k: {"baseline": b, "now": n, "delta": d}
                           for k, (b, n, d) in self.deltas.items()},
                "newly_failing": self.newly_failing, "newly_passing": self.newly_passing,
                "violations": self.violations, "ok": self.ok}


def load_summary(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    try:
        data = json.loads(file.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{file}: cannot read the baseline summary: {exc}") from None
    if not isinstance(data, dict) or "pass_at_1" not in data:
        raise ConfigError(f"{file}: not a summary.json written by `orchestrator eval`")
    return data


def compare(baseline: dict[str, Any], now: dict[str, Any],
            thresholds: GateThresholds = GateThresholds()) -> Comparison:
    """Per-metric deltas, newly failing / passing cases, and threshold violations."""
    result = Comparison()
    metrics = {
        "pass_at_1": lambda s: s["pass_at_1"],
        "pass_hat_k": lambda s: s.get("pass_hat_k", s["pass_at_1"]),
        "llm_calls_mean": lambda s: s["llm_calls"]["mean"],
        "tokens_total": lambda s: s["tokens"]["total"],
        "cost_total": lambda s: s["cost"]["total"],
        "latency_p95_s": lambda s: s["latency_s"]["p95"],
    }
    for name, get in metrics.items():
        before, after = float(get(baseline)), float(get(now))
        result.deltas[name] = (before, after, round(after - before, 6))
    failed_before, failed_now = set(baseline["failed_cases"]), set(now["failed_cases"])
    shared = _case_ids(baseline) & _case_ids(now)
    result.newly_failing = sorted((failed_now - failed_before) & shared)
    result.newly_passing = sorted((failed_before - failed_now) & shared)
    drop = result.deltas["pass_at_1"][0] - result.deltas["pass_at_1"][1]
    if drop > thresholds.max_pass_drop + 1e-9:
        result.violations.append(f"pass@1 dropped by {drop:.4f} (allowed "
                                 f"{thresholds.max_pass_drop:.4f})")
    for metric in ("cost_total", "tokens_total"):
        before, after, _ = result.deltas[metric]
        if before > 0 and (after - before) / before > thresholds.max_cost_rise + 1e-9:
            result.violations.append(f"{metric} rose by {(after - before) / before:.1%} "
                                     f"(allowed {thresholds.max_cost_rise:.0%})")
    return result


def _case_ids(summary: dict[str, Any]) -> set[str]:
    return set(summary.get("case_ids") or summary["failed_cases"])
