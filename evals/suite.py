"""Run an eval suite end to end: cases in; records, summary, report and gate out.

``orchestrator eval`` is a thin layer over :func:`run_suite`; so is any other front door.

Example:
    ```python
    from orchestrator.evals import run_suite

    result = run_suite(["evals/datasets/core"], model="fake", repeat=3)
    print(result.summary["pass_at_1"], result.paths["report"])
    ```
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from orchestrator.config import Settings, load_settings
from orchestrator.errors import ConfigError
from orchestrator.evals.baseline import Comparison, GateThresholds, compare, load_summary
from orchestrator.evals.report import write_outputs
from orchestrator.evals.runner import CaseRecord, EvalConfig, run_cases
from orchestrator.evals.schema import EvalCase, load_cases
from orchestrator.evals.summary import summarize
from orchestrator.pricing import PriceTable


@dataclass
class SuiteResult:
    """What a suite run produced: every case run, the summary, the gate, the files."""

    records: list[CaseRecord]
    summary: dict[str, Any]
    comparison: Comparison | None
    paths: dict[str, Path]
    out: Path
    cases: list[EvalCase] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The baseline gate passed (True when there is no baseline)."""
        return self.comparison is None or self.comparison.ok


def select_cases(datasets: Sequence[str | Path], tags: Iterable[str] = ()) -> list[EvalCase]:
    """The cases of ``datasets`` (files or folders), only those with one of ``tags`` if any."""
    cases = load_cases([Path(d) for d in datasets])
    wanted = set(tags)
    if wanted:
        cases = [c for c in cases if wanted & set(c.tags)]
        if not cases:
            raise ConfigError(f"no case has the tag(s) {', '.join(sorted(wanted))}")
    return cases


def run_suite(
    datasets: Sequence[str | Path], *, model: str = "fake", repeat: int = 1,
    concurrency: int = 4, tags: Iterable[str] = (), out: Path | None = None,
    baseline: Path | None = None, thresholds: GateThresholds | None = None,
    record: Path | None = None, prices: Path | None = None, settings: Settings | None = None,
    on_record: Callable[[CaseRecord], None] | None = None,
) -> SuiteResult:
    """Run every case of ``datasets`` ``repeat`` times, each in isolation (its own database
    copy and thread), write ``results.jsonl``, ``summary.json`` and ``report.html`` to
    ``out`` (default: ``evals/<time>`` in the data folder), and compare with ``baseline``.

    ``record``: also write every model call to this cassette (replay it with
    ``model="replay:<path>"``). ``on_record`` is called as each case run finishes.
    """
    if not datasets:
        raise ConfigError("give at least one dataset: a file or folder of eval cases")
    for name, value in (("repeat", repeat), ("concurrency", concurrency)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number, at least 1, not {value!r}")
    settings = settings or load_settings()
    cases = select_cases(datasets, tags)
    earlier = load_summary(baseline) if baseline else None
    price_table = PriceTable.load(prices) if prices else PriceTable()
    out = out or settings.home / "evals" / time.strftime("%Y%m%d-%H%M%S")
    chat_model: str | BaseChatModel = model
    if record:
        from orchestrator.models import get_model
        from orchestrator.models.cassette import RecordingChatModel

        record.unlink(missing_ok=True)
        chat_model = RecordingChatModel(inner=get_model(model), path=record)
    knowledge = None
    if settings.knowledge:
        from orchestrator.demo import ingest_demo_knowledge
        from orchestrator.retrieval.store import KnowledgeStore

        knowledge = KnowledgeStore(out / "work" / "chroma", embedder=settings.embedder)
        ingest_demo_knowledge(knowledge)
    config = EvalConfig(model=chat_model, repeat=repeat, concurrency=concurrency,
                        settings=settings, knowledge=knowledge, prices=price_table,
                        workdir=out / "work")
    started = time.perf_counter()
    records = asyncio.run(run_cases(cases, config, on_record))
    summary = summarize(records, model=model, repeat=repeat)
    summary["wall_time_s"] = round(time.perf_counter() - started, 2)
    comparison = compare(earlier, summary, thresholds or GateThresholds()) if earlier else None
    paths = write_outputs(out, records, summary, comparison.to_dict() if comparison else None)
    return SuiteResult(records, summary, comparison, paths, out, cases)
