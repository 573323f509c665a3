"""``orchestrator eval``: run datasets, write the report, gate on a baseline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.config import Settings
from orchestrator.evals.baseline import Comparison, GateThresholds
from orchestrator.evals.runner import CaseRecord
from orchestrator.evals.suite import run_suite, select_cases

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
    """Run the suite (:func:`orchestrator.evals.run_suite`) with a progress bar and print the
    summary; False when the baseline gate fails."""
    total = len(select_cases(options.datasets, options.tags)) * options.repeat
    columns = (TextColumn("[bold]eval[/bold]"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[failed]} failing"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("eval", total=total, failed=0)
        failed = 0

        def on_record(record: CaseRecord) -> None:
            nonlocal failed
            failed += not record.passed
            progress.update(task, advance=1, failed=failed)

        result = run_suite(options.datasets, model=options.model, repeat=options.repeat,
                           concurrency=options.concurrency, tags=options.tags,
                           out=options.out, baseline=options.baseline,
                           thresholds=options.thresholds, record=options.record,
                           prices=options.prices, settings=settings, on_record=on_record)
    _print_summary(result.summary, result.comparison)
    console.print(f"[dim]report: {result.paths['report']}  summary: "
                  f"{result.paths['summary']}[/dim]", highlight=False)
    if options.record:
        console.print(f"[dim]cassette: {options.record} (replay with --model "
                      f"replay:{options.record})[/dim]", highlight=False)
    return result.ok


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
