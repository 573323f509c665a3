"""Offline evals: case datasets, scorers, the runner, reports, record/replay, benchmarks."""

from evals.baseline import GateThresholds, compare
from evals.run_record import CaseRun
from evals.runner import CaseRecord, EvalConfig, run_cases
from evals.schema import EvalCase, Expectations, load_cases
from evals.scorers import Score, all_scorers, scorer
from evals.summary import summarize

__all__ = [
    "CaseRecord",
    "CaseRun",
    "EvalCase",
    "EvalConfig",
    "Expectations",
    "GateThresholds",
    "Score",
    "all_scorers",
    "compare",
    "load_cases",
    "run_cases",
    "scorer",
    "summarize",
]
