"""``orchestrator eval``: run datasets, write the report, gate on a baseline."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.config import Settings
from orchestrator.demo import ingest_demo_knowledge
from orchestrator.errors import ConfigError
from orchestrator.evals.baseline import Comparison, GateThresholds, compare, load_summary
from orchestrator.evals.report import write_outputs
from orchestrator.evals.runner import CaseRecord, EvalConfig, run_cases
from orchestrator.evals.schema import load_cases
from orchestrator.evals.summary import summarize
from orchestrator.models import get_model
from orchestrator.models.cassette import RecordingChatModel
from orchestrator.pricing import PriceTable
from orchestrator.retrieval.store import KnowledgeStore

console = Console()


@dataclass
class EvalOptions:
    datasets: list[Path]
    model: str
    repeat: int
    concurrency: int
    tags: list[str]
    out: Path | None
    baseline: Path | None
    record: Path | None
    prices: Path | None
    thresholds: GateThresholds


def eval_command(settings: Settings, options: EvalOptions) -> bool:
    """Run the suite; False when the baseline gate fails."""
    cases = load_cases(options.datasets)
    if options.tags:
        cases = [c for c in cases if set(options.tags) & set(c.tags)]
        if not cases:
            raise ConfigError(f"no case has the tag(s) {', '.join(options.tags)}")
    baseline = load_summary(options.baseline) if options.baseline else None
    prices = PriceTable.load(options.prices) if options.prices else PriceTable()
    out = options.out or settings.home / "evals" / time.strftime("%Y%m%d-%H%M%S")
    model: str | BaseChatModel = options.model
    if options.record:
        options.record.unlink(missing_ok=True)
        model = RecordingChatModel(inner=get_model(options.model), path=options.record)
    knowledge = None
    if settings.knowledge:
        knowledge = KnowledgeStore(out / "work" / "chroma", embedder=settings.embedder)
        ingest_demo_knowledge(knowledge)
    config = EvalConfig(model=model, repeat=options.repeat, concurrency=options.concurrency,
                        settings=settings, knowledge=knowledge, prices=prices,
                        workdir=out / "work")
    started = time.perf_counter()
    records = _run_with_progress(cases, config, options.repeat)
    summary = summarize(records, model=options.model, repeat=options.repeat)
    summary["wall_time_s"] = round(time.perf_counter() - started, 2)
    comparison = compare(baseline, summary, options.thresholds) if baseline else None
    paths = write_outputs(out, records, summary, comparison.to_dict() if comparison else None)
    _print_summary(summary, comparison)
    console.print(f"[dim]report: {paths['report']}  summary: {paths['summary']}[/dim]",
                  highlight=False)
    if options.record:
        console.print(f"[dim]cassette: {options.record} (replay with --model "
                      f"replay:{options.record})[/dim]", highlight=False)
    return comparison is None or comparison.ok


def _run_with_progress(cases: list, config: EvalConfig, repeat: int) -> list[CaseRecord]:
    columns = (TextColumn("[bold]eval[/bold]"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[failed]} failing"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("eval", total=len(cases) * repeat, failed=0)
        failed = 0

        def on_record(record: CaseRecord) -> None:
            nonlocal failed
            failed += not record.passed
            progress.update(task, advance=1, failed=failed)

        return asyncio.run(run_cases(cases, config, on_record))


def _print_summary(summary: dict, comparison: Comparison | None) -> None:
    table = Table(title=f"eval: {summary['model']}", show_header=False)
    rows = [("cases / runs", f"{summary['cases']} / {summary['runs']}"),
            ("pass@1", f"{summary['pass_at_1']:.1%}"),
            (f"pass^{summary['repeat']}", f"{summary['pass_hat_k']:.1%}"),
            ("routing precision / recall",
             f"{summary['routing']['precision']:.3f} / {summary['routing']['recall']:.3f}"),
            ("LLM calls (mean)", str(summary["llm_calls"]["mean"])),
            ("tokens (total)", str(summary["tokens"]["total"])),
            ("estimated cost", f"${summary['cost']['total']:.4f}"),
            ("wall time p50 / p95", f"{summary['latency_s']['p50']}s / "
                                    f"{summary['latency_s']['p95']}s"),
            ("suite wall time", f"{summary.get('wall_time_s', 0)}s")]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if summary["unexpected_failures"]:
        console.print("[red]failing:[/red] " + ", ".join(summary["unexpected_failures"]),
                      highlight=False)
    if summary.get("false_ok"):
        console.print("[red]said ok, database disagrees:[/red] " + ", ".join(summary["false_ok"]),
                      highlight=False)
    if summary["known_failures"]:
        console.print("[yellow]known failures:[/yellow] " + ", ".join(summary["known_failures"]),
                      highlight=False)
    if comparison is not None:
        for name, (before, now, delta) in comparison.deltas.items():
            console.print(f"  {name}: {before:g} -> {now:g} ({delta:+g})", highlight=False)
        if comparison.newly_failing:
            console.print("[red]newly failing:[/red] " + ", ".join(comparison.newly_failing))
        if comparison.newly_passing:
            console.print("[green]newly passing:[/green] " + ", ".join(comparison.newly_passing))
        verdict = "[green]gate passed[/green]" if comparison.ok else \
            "[red]gate failed:[/red] " + "; ".join(comparison.violations)
        console.print(verdict, highlight=False)
