"""Offline evals: case datasets, scorers, the runner, reports, record/replay, benchmarks."""

from orchestrator.evals.baseline import GateThresholds, compare
from orchestrator.evals.run_record import CaseRun
from orchestrator.evals.runner import CaseRecord, EvalConfig, run_cases
from orchestrator.evals.schema import EvalCase, Expectations, load_cases
from orchestrator.evals.scorers import Score, all_scorers, scorer
from orchestrator.evals.suite import SuiteResult, run_suite
from orchestrator.evals.summary import summarize

__all__ = [
    "CaseRecord",
    "CaseRun",
    "EvalCase",
    "EvalConfig",
    "Expectations",
    "GateThresholds",
    "Score",
    "SuiteResult",
    "all_scorers",
    "compare",
    "load_cases",
    "run_cases",
    "run_suite",
    "scorer",
    "summarize",
]
