"""``orchestrator runs``, ``trace`` and ``agents --stats``: what ran, when, and how well."""

from __future__ import annotations

import time
from typing import cast

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from orchestrator.cli.view import safe_text
from orchestrator.events import (
    BudgetHitData,
    Event,
    ReassignedData,
    ReplannedData,
    RetriedData,
    RunHandedOverData,
)
from orchestrator.runs import AgentStats, RunSummary
from orchestrator.traces import SubtaskSpan, Trace

BAR_WIDTH = 30


def trace_view(trace: Trace) -> RenderableType:
    """The plan as a tree, then a timeline per agent, then where time and tokens went."""
    record, events, items = trace.run, trace.events, trace.subtasks
    start = events[0].time if events else 0.0
    end = max([e.time for e in events] or [start])
    header = Text.assemble(
        (f"run {record['run_id']}", "bold"), f"  {record['status']}  ",
        (f"{record.get('mode') or '-'}", "cyan"),
        f"  {record['elapsed_s']:.2f}s  {record['llm_calls']} LLM calls  "
        f"{record['input_tokens'] + record['output_tokens']} tokens\n",
        (f"request: {safe_text(record['request'])}", "dim"),
        (f"\nerror: {safe_text(record['error'])}" if record.get("error") else "", "red"))
    return Group(header, _plan_tree(items), _timeline(items, start, end),
                 _recovery_notes(events))


def _plan_tree(items: list[SubtaskSpan]) -> Tree:
    tree = Tree("[bold]plan[/bold]")
    by_id = {s.id: s for s in items}
    children: dict[str, list[SubtaskSpan]] = {}
    for span in items:
        first = next((d for d in span.depends_on if d in by_id), None)
        children.setdefault(first or "", []).append(span)

    def label(span: SubtaskSpan) -> str:
        extra = [d for d in span.depends_on[1:]]
        also = f" [dim](also needs {_shown(', '.join(extra))})[/dim]" if extra else ""
        return (f"{_shown(span.id)} [cyan]{_shown(span.agent)}[/cyan] {_styled(span.status)}: "
                f"{_shown(span.goal)}{also}")

    def grow(node: Tree, parent: str) -> None:
        for span in children.get(parent, []):
            grow(node.add(label(span)), span.id)

    grow(tree, "")
    return tree


def _timeline(items: list[SubtaskSpan], start: float, end: float) -> Table:
    total = max(end - start, 1e-6)
    table = Table(title="timeline", title_justify="left")
    for column in ("agent", "subtask", "", "waited", "ran", "tries", "calls", "tokens"):
        table.add_column(column, overflow="fold", no_wrap=column in ("", "agent"))
    for span in sorted(items, key=lambda s: (s.agent, s.started_at or end)):
        bar = [" "] * BAR_WIDTH
        if span.ready_at is not None and span.started_at is not None:
            for i in range(_cell(span.ready_at, start, total), _cell(span.started_at, start,
                                                                    total)):
                bar[i] = "."
        if span.started_at is not None:
            stop = span.finished_at or end
            for i in range(_cell(span.started_at, start, total),
                           max(_cell(stop, start, total), _cell(span.started_at, start, total)
                               + 1)):
                bar[min(i, BAR_WIDTH - 1)] = "#"
        table.add_row(Text(safe_text(span.agent, one_line=True)),
                      f"{_shown(span.id)} {_styled(span.status)}",
                      Text("".join(bar), style="green" if span.status == "done" else "red"),
                      f"{span.waited_s:.2f}s", f"{span.elapsed_s:.2f}s", str(span.attempts),
                      str(span.llm_calls), str(span.tokens))
    table.caption = f"one column = {total / BAR_WIDTH:.2f}s; '.' waiting, '#' running"
    return table


def _recovery_notes(events: list[Event]) -> RenderableType:
    lines = []
    for event in events:
        if event.type == "retried":
            retry = cast(RetriedData, event.data)
            lines.append(f"{event.subtask_id}: retried on {event.agent} after "
                         f"{retry['kind']}: {retry['after']}")
        elif event.type == "reassigned":
            moved = cast(ReassignedData, event.data)
            lines.append(f"{event.subtask_id}: reassigned {moved['from']} -> "
                         f"{moved['to']} ({moved['reason']})")
        elif event.type == "replanned":
            replan = cast(ReplannedData, event.data)
            added = ", ".join(s["id"] for s in replan["added"]) or "nothing"
            lines.append(f"{event.subtask_id}: replanned, added {added}"
                         + (f" ({replan['error']})" if replan.get("error") else ""))
        elif event.type == "budget_hit":
            lines.append(f"budget hit: {cast(BudgetHitData, event.data)['limit']}")
        elif event.type == "run_handed_over":
            moved_run = cast(RunHandedOverData, event.data)
            lines.append(f"handed over: worker {moved_run['from_worker']} -> "
                         f"{moved_run['to_worker']} (attempt {moved_run['attempt']})")
        elif event.type in ("approval_requested", "approval_decided"):
            lines.append(f"{event.subtask_id}: {event.type.replace('_', ' ')}"
                         + (f" {event.data}" if event.type == "approval_decided" else ""))
    return Text(safe_text("\n".join(lines)), style="yellow") if lines else Text("")


def _cell(moment: float, start: float, total: float) -> int:
    return max(0, min(BAR_WIDTH - 1, int((moment - start) / total * BAR_WIDTH)))


def _styled(status: str) -> str:
    color = {"done": "green", "ok": "green", "failed": "red", "running": "yellow",
             "interrupted": "red", "paused": "cyan"}.get(status, "magenta")
    return f"[{color}]{_shown(status)}[/{color}]"


def _shown(text: object) -> str:
    """Stored text made safe for rich markup: one line, no control characters, escaped."""
    return escape(safe_text(text, one_line=True))


def runs_table(runs: list[RunSummary]) -> Table:
    table = Table(title="recent runs")
    for column in ("run", "when", "status", "mode", "time", "LLM calls", "tokens", "request"):
        table.add_column(column, overflow="fold")
    for run in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at))
        table.add_row(run.run_id[:12], when, _styled(run.status), _shown(run.mode or "-"),
                      f"{run.elapsed_s or 0:.2f}s", str(run.llm_calls or 0),
                      str(run.tokens or 0), Text(safe_text(run.request[:70], one_line=True)))
    return table


def stats_table(stats: list[AgentStats]) -> Table:
    table = Table(title="agent statistics (all stored runs)")
    for column in ("agent", "runs", "attempts", "success", "mean", "p95", "tokens",
                   "failures by kind"):
        table.add_column(column, overflow="fold")
    for item in stats:
        failures = ", ".join(f"{k}: {v}" for k, v in sorted(item.failures.items())) or "-"
        table.add_row(item.agent, str(item.runs), str(item.attempts),
                      f"{item.success_rate:.0%}", f"{item.mean_latency_s:.2f}s",
                      f"{item.p95_latency_s:.2f}s", str(item.tokens), failures)
    return table
