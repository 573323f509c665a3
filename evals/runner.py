"""Run eval cases in isolation (own database copy, own thread) with bounded concurrency."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from orchestrator.agents.registry import AgentRegistry
from orchestrator.agents.spec import AgentSpec
from orchestrator.api import Orchestrator
from orchestrator.config import Settings, load_settings
from orchestrator.domain_db import reset_domain_db, use_domain_db
from orchestrator.errors import OrchestratorError
from orchestrator.evals.run_record import CaseRun
from orchestrator.evals.schema import EvalCase
from orchestrator.evals.scorers import Score, ScorerFn, all_scorers, score_run
from orchestrator.pricing import PriceTable
from orchestrator.retrieval.store import KnowledgeStore
from orchestrator.runs import RunStore

ProgressFn = Callable[["CaseRecord"], None]


@dataclass
class CaseRecord:
    """The scored outcome of one run of one case (a line of ``results.jsonl``)."""

    case_id: str
    repeat: int
    passed: bool
    scores: list[Score]
    tags: list[str]
    domain: str
    status: str
    answer: str
    agents_used: list[str]
    expected_agents: list[str] | None
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cost: float
    elapsed_s: float
    error: str | None
    known_failure: str | None
    trace: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class EvalConfig:
    """How to run a suite."""

    model: str | BaseChatModel = "fake"
    repeat: int = 1
    concurrency: int = 4
    agents: Sequence[AgentSpec] | None = None
    settings: Settings | None = None
    knowledge: KnowledgeStore | None = None
    prices: PriceTable = field(default_factory=PriceTable)
    scorers: dict[str, ScorerFn] | None = None
    workdir: Path | None = None


async def run_cases(cases: Sequence[EvalCase], config: EvalConfig,
                    on_record: ProgressFn | None = None) -> list[CaseRecord]:
    """Every case ``config.repeat`` times; records come back in case order."""
    settings = config.settings or load_settings()
    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="orchestrator-eval-"))
    workdir.mkdir(parents=True, exist_ok=True)
    template = reset_domain_db(workdir / "seed.sqlite")
    agents = list(config.agents) if config.agents is not None else \
        AgentRegistry.default(settings.agents_dir, domains=settings.domains).specs
    # Cases are independent: what one case teaches the router must not change another's
    # result (cases run concurrently, in any order), and eval runs stay out of the user's
    # run store.
    settings = settings.model_copy(update={"adaptive_routing": False})
    orchestrator = Orchestrator(config.model, agents=agents, settings=settings,
                                knowledge=config.knowledge,
                                runs=RunStore(workdir / "runs.sqlite"))
    model_name = config.model if isinstance(config.model, str) else \
        getattr(config.model, "model_name", type(config.model).__name__)
    scorers = config.scorers if config.scorers is not None else all_scorers()
    gate = asyncio.Semaphore(max(1, config.concurrency))

    async def one(case: EvalCase, repeat: int) -> CaseRecord:
        async with gate:
            run = await run_case(orchestrator, case, repeat, template, workdir)
        record = _record(case, run, score_run(case, run, scorers),
                         config.prices.cost(str(model_name), run.usage))
        if on_record is not None:
            on_record(record)
        return record

    jobs = [one(case, repeat) for case in cases for repeat in range(1, config.repeat + 1)]
    return list(await asyncio.gather(*jobs))


async def run_case(orchestrator: Orchestrator, case: EvalCase, repeat: int, template: Path,
                   workdir: Path) -> CaseRun:
    """One run of one case on its own copy of the domain database and its own thread."""
    db_path = workdir / "cases" / f"{case.id}.{repeat}.sqlite"
    db_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, db_path)
    run = CaseRun(case_id=case.id, repeat=repeat, db_path=db_path)
    started = time.perf_counter()
    try:
        if case.setup:
            with sqlite3.connect(db_path) as conn:
                conn.executescript(case.setup)
        thread = f"eval-{case.id}-{repeat}"
        with use_domain_db(db_path):
            if case.event is not None:
                run.turns.append(await orchestrator.afire_event(
                    case.event.name, case.event.data, thread_id=thread))
                await _decide(orchestrator, case, run, thread)
            for turn in case.turns:
                run.turns.append(await orchestrator.arun(turn, thread_id=thread))
                await _decide(orchestrator, case, run, thread)
    except (OrchestratorError, sqlite3.Error) as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a crash in one case must not stop the suite
        run.error = f"crash: {type(exc).__name__}: {exc}"
    run.elapsed_s = time.perf_counter() - started
    return run


async def _decide(orchestrator: Orchestrator, case: EvalCase, run: CaseRun, thread: str
                  ) -> None:
    """Give the case's approval decision each time the run pauses (a bounded number)."""
    for _ in range(5):
        if case.approval is None or run.turns[-1].status != "paused":
            return
        run.turns.append(await orchestrator.aresume(
            thread, case.approval.approve, reason=case.approval.reason))


def _record(case: EvalCase, run: CaseRun, scores: list[Score], cost: float) -> CaseRecord:
    usage = run.usage
    passed = run.error is None and all(s.passed for s in scores)
    return CaseRecord(
        case_id=case.id, repeat=run.repeat, passed=passed, scores=scores, tags=case.tags,
        domain=case.domain, status=run.status, answer=run.answer, agents_used=run.agents_used,
        expected_agents=case.expect.agents, llm_calls=usage.llm_calls,
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cost=cost,
        elapsed_s=round(run.elapsed_s, 4), error=run.error, known_failure=case.known_failure,
        trace=run.trace(),
    )
