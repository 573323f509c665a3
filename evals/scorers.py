"""Scorers: small functions with one signature, ``(case, run) -> Score | None``.

``None`` means the scorer does not apply to the case (it has no such expectation). Users add
their own with :func:`scorer` or through the ``orchestrator.scorers`` entry-point group.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.evals.run_record import CaseRun
from orchestrator.evals.schema import EvalCase, StateCheck

ENTRY_POINT_GROUP = "orchestrator.scorers"


@dataclass(frozen=True)
class Score:
    """One scorer's verdict on one case run."""

    name: str
    passed: bool
    value: float
    """A 0..1 measure (F1, precision, ...); 1.0 or 0.0 for plain checks."""
    detail: str = ""


ScorerFn = Callable[[EvalCase, CaseRun], "Score | None"]
_REGISTRY: dict[str, ScorerFn] = {}


def scorer(name: str) -> Callable[[ScorerFn], ScorerFn]:
    """Register a scorer under ``name``.

    Example:
        ```python
        @scorer("polite")
        def polite(case: EvalCase, run: CaseRun) -> Score | None:
            return Score("polite", "please" in run.answer.lower(), 1.0)
        ```
    """

    def register(fn: ScorerFn) -> ScorerFn:
        _REGISTRY[name] = fn
        return fn

    return register


def all_scorers() -> dict[str, ScorerFn]:
    """Built-in scorers plus those installed under the ``orchestrator.scorers`` entry points."""
    found = dict(_REGISTRY)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            fn = ep.load()
        except Exception as exc:
            raise ConfigError(f"scorer entry point {ep.name!r} ({ep.value}) failed to load: "
                              f"{exc}") from None
        if not callable(fn):
            raise ConfigError(f"scorer entry point {ep.name!r} is not callable")
        found[ep.name] = fn
    return found


def score_run(case: EvalCase, run: CaseRun, scorers: dict[str, ScorerFn]) -> list[Score]:
    """Every applicable score; a scorer that raises fails with its error as detail."""
    scores = []
    for name, fn in scorers.items():
        try:
            result = fn(case, run)
        except Exception as exc:
            result = Score(name, False, 0.0, f"scorer error: {type(exc).__name__}: {exc}")
        if result is not None:
            scores.append(result)
    return scores


# --- built-ins ---------------------------------------------------------------------------


@scorer("state")
def state_scorer(case: EvalCase, run: CaseRun) -> Score | None:
    """The domain database is in the expected state (the main success signal)."""
    checks = case.expect.state
    if not checks:
        return None
    failures = [problem for check in checks if (problem := _check_state(run, check))]
    passed = len(checks) - len(failures)
    return Score("state", not failures, passed / len(checks), "; ".join(failures))


def _check_state(run: CaseRun, check: StateCheck) -> str:
    try:
        conn = sqlite3.connect(f"file:{run.db_path}?mode=ro", uri=True)
        try:
            rows = [list(r) for r in conn.execute(check.sql).fetchall()]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"{check.sql!r} failed: {exc}"
    label = check.description or check.sql
    if check.count is not None and len(rows) != check.count:
        return f"{label}: {len(rows)} rows, expected {check.count}"
    if check.rows is not None and rows != check.rows:
        return f"{label}: got {rows}, expected {check.rows}"
    if check.equals is not None:
        got = rows[0][0] if rows and rows[0] else None
        if got != check.equals:
            return f"{label}: got {got!r}, expected {check.equals!r}"
    return ""


@scorer("routing")
def routing_scorer(case: EvalCase, run: CaseRun) -> Score | None:
    """The agents used are the expected ones (value: F1 of the two sets)."""
    expected = case.expect.agents
    if expected is None:
        return None
    used = run.agents_used
    passed = used == expected if case.expect.agents_in_order else set(used) == set(expected)
    value = f1(set(expected), set(used))
    return Score("routing", passed, value, "" if passed else f"used {used}, expected {expected}")


@scorer("tool_calls")
def tool_call_scorer(case: EvalCase, run: CaseRun) -> Score | None:
    """Expected tool calls were made (name, and arguments where given); value: F1.

    A call counts when it reached the tool, whether the tool then succeeded or raised
    (status and state checks judge the outcome); refused and invalid calls do not.
    """
    expected = case.expect.tool_calls
    if not expected:
        return None
    made = [c for c in run.tool_calls if c["status"] in ("ok", "error")]
    unmatched = list(made)
    missing = []
    for want in expected:
        hit = next((c for c in unmatched if c["name"] == want.name
                    and all(c["args"].get(k) == v for k, v in want.args.items())), None)
        if hit is None:
            missing.append(f"{want.name}({want.args})" if want.args else want.name)
        else:
            unmatched.remove(hit)
    matched = len(expected) - len(missing)
    precision = matched / len(made) if made else 0.0
    recall = matched / len(expected)
    value = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Score("tool_calls", not missing, value, "missing: " + ", ".join(missing) if missing
                 else "")


@scorer("plan")
def plan_scorer(case: EvalCase, run: CaseRun) -> Score | None:
    """The supervisor produced a valid plan for every turn (or was expected not to)."""
    if case.expect.status == "failed" and not case.expect.state:
        return None
    valid = run.plan_errors == []
    return Score("plan", valid, 1.0 if valid else 0.0, "; ".join(run.plan_errors))


@scorer("answer")
def answer_scorer(case: EvalCase, run: CaseRun) -> Score | None:
    """The final answer includes and excludes what it should (case-insensitive)."""
    includes, excludes = case.expect.answer_includes, case.expect.answer_excludes
    if not includes and not excludes:
        return None
    answer = run.answer.lower()
    problems = [f"missing {s!r}" for s in includes if s.lower() not in answer]
    problems += [f"contains {s!r}" for s in excludes if s.lower() in answer]
    total = len(includes) + len(excludes)
    return Score("answer", not problems, (total - len(problems)) / total, "; ".join(problems))


@scorer("citations")
def citation_scorer(case: EvalCase, run: CaseRun) -> Score | None:
    """The answer cites the expected sources."""
    wanted = case.expect.citations
    if not wanted:
        return None
    missing = [c for c in wanted if f"[{c}" not in run.answer]
    value = (len(wanted) - len(missing)) / len(wanted)
    return Score("citations", not missing, value, f"not cited: {missing}" if missing else "")


@scorer("status")
def status_scorer(case: EvalCase, run: CaseRun) -> Score | None:
    """The run ended with the expected status (ok, partial, failed)."""
    if case.expect.status is None:
        return None
    passed = run.status == case.expect.status
    return Score("status", passed, float(passed),
                 "" if passed else f"status {run.status}, expected {case.expect.status}")


@scorer("budget")
def budget_scorer(case: EvalCase, run: CaseRun) -> Score | None:
    """LLM calls and tokens stay within the case's budget."""
    limits: list[tuple[str, int, int]] = []
    if case.expect.max_llm_calls is not None:
        limits.append(("llm_calls", run.usage.llm_calls, case.expect.max_llm_calls))
    if case.expect.max_tokens is not None:
        limits.append(("tokens", run.usage.total_tokens, case.expect.max_tokens))
    if not limits:
        return None
    over = [f"{name} {got} > {limit}" for name, got, limit in limits if got > limit]
    return Score("budget", not over, float(not over), "; ".join(over))


def f1(expected: set[Any], got: set[Any]) -> float:
    if not expected and not got:
        return 1.0
    hits = len(expected & got)
    if not hits:
        return 0.0
    precision, recall = hits / len(got), hits / len(expected)
    return 2 * precision * recall / (precision + recall)
