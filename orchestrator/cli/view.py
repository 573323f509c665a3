"""Rich renderings: the live subtask table, the plan, agent tables, the answer."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agents.spec import AgentSpec
from orchestrator.events import Event
from orchestrator.results import RunResult

_STATUS_STYLE = {"pending": "dim", "running": "yellow", "done": "green", "failed": "red",
                 "skipped": "magenta", "cancelled": "magenta", "waiting": "cyan"}


@dataclass
class _Row:
    agent: str
    goal: str
    depends_on: list[str]
    status: str = "pending"
    started: float | None = None
    elapsed: float | None = None
    detail: str = ""


class RunView:
    """Turns events into a live table: the plan, then each subtask's agent, status and time."""

    def __init__(self) -> None:
        self.rows: dict[str, _Row] = {}
        self.rationale = ""
        self.note = "planning..."

    def on_event(self, event: Event) -> None:
        sid = event.subtask_id or ""
        if event.type == "plan_made":
            plan = event.data["plan"]
            self.rationale = plan.get("rationale", "")
            self.note = "" if plan["subtasks"] else "answering directly"
            for sub in plan["subtasks"]:
                self.rows[sub["id"]] = _Row(sub["agent"], sub["goal"], sub["depends_on"])
        elif event.type == "plan_invalid":
            self.note = f"plan rejected ({event.data['error'][:80]}), asking again..."
        elif event.type == "subtask_started" and sid in self.rows:
            self.rows[sid].status, self.rows[sid].started = "running", time.time()
        elif event.type == "tool_called" and sid in self.rows:
            self.rows[sid].detail = f"{event.data['tool']}({event.data.get('status')})"
        elif event.type == "tool_refused" and sid in self.rows:
            self.rows[sid].detail = f"refused {event.data['tool']}"
        elif event.type in ("subtask_finished", "subtask_failed", "subtask_skipped"):
            if sid in self.rows:
                row = self.rows[sid]
                row.status = event.data.get("status", "skipped")
                row.elapsed = event.data.get("elapsed_s")
                if event.data.get("error"):
                    row.detail = str(event.data["error"])[:70]
                elif event.data.get("reason"):
                    row.detail = str(event.data["reason"])[:70]
        elif event.type == "retried" and sid in self.rows:
            self.rows[sid].detail = f"retry {event.data['attempt']}: {event.data.get('kind')}"
        elif event.type == "reassigned" and sid in self.rows:
            self.rows[sid].agent = event.data["to"]
            self.rows[sid].detail = f"reassigned from {event.data['from']}"
        elif event.type == "replanned":
            for sub in event.data.get("added", []):
                self.rows[sub["id"]] = _Row(sub["agent"], sub["goal"], sub.get("depends_on", []))
            if sid in self.rows:
                added = ", ".join(s["id"] for s in event.data.get("added", [])) or "nothing"
                self.rows[sid].detail = f"replanned: {added}"
        elif event.type == "approval_requested" and sid in self.rows:
            self.rows[sid].status, self.rows[sid].detail = "waiting", "needs approval"
        elif event.type == "budget_hit":
            self.note = f"budget hit: {event.data['limit']}"
        elif event.type == "answer":
            self.note = ""

    def __rich__(self) -> RenderableType:
        table = Table(title="Plan" if self.rows else None, expand=False, show_lines=False)
        for column in ("id", "agent", "goal", "needs", "status", "time", "last step"):
            table.add_column(column, overflow="fold")
        now = time.time()
        for sid, row in self.rows.items():
            elapsed = row.elapsed if row.elapsed is not None else (
                now - row.started if row.started else None)
            table.add_row(
                sid, row.agent, row.goal[:60], ",".join(row.depends_on) or "-",
                Text(row.status, style=_STATUS_STYLE.get(row.status, "")),
                f"{elapsed:.2f}s" if elapsed is not None else "", row.detail,
            )
        parts: list[RenderableType] = []
        if self.rows:
            parts.append(table)
        if self.rationale:
            parts.append(Text(self.rationale, style="dim"))
        if self.note:
            parts.append(Text(self.note, style="italic dim"))
        return Group(*parts)


def print_answer(console: Console, result: RunResult) -> None:
    """The answer and a one-line usage summary."""
    u = result.usage
    usage = (f"[dim]{u.llm_calls} LLM calls, {u.input_tokens} in / {u.output_tokens} out "
             f"tokens, {result.elapsed_s:.2f}s, thread {result.thread_id}, run "
             f"{result.run_id[:12]}[/dim]")
    if result.status == "paused":
        steps = "\n".join(f"- {p['subtask_id']} ({p['agent']}): "
                          + (f"{p['tool']} - {p['why']}" if p.get("tool") else p["goal"])
                          for p in result.pending_approvals)
        console.print(Panel(f"Waiting for approval:\n{steps}", title="paused",
                            border_style="cyan"))
        console.print(usage)
        return
    style = "green" if result.ok else "red"
    console.print(Panel(Markdown(result.answer or "(no answer)"), title="answer",
                        border_style=style))
    console.print(usage)


def agents_table(agents: list[AgentSpec]) -> Table:
    """Agents grouped by domain; tools that need an approval or are audited are marked."""
    from agents.policy import is_audited

    table = Table(title="Agents")
    for column in ("domain", "name", "description", "skills", "tools", "source"):
        table.add_column(column, overflow="fold")
    previous = None
    for spec in sorted(agents, key=lambda a: a.domain):
        if previous is not None and spec.domain != previous:
            table.add_section()
        tools = [name + (" (approval)" if "orchestrator_requires_approval" in (t.metadata or {})
                         else "") + (" (audited)" if is_audited(t) else "")
                 for name, t in spec.tool_map.items()]
        table.add_row(spec.domain if spec.domain != previous else "", spec.name,
                      spec.description, ", ".join(spec.skills), ", ".join(tools), spec.source)
        previous = spec.domain
    return table
