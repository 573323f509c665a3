"""Rich renderings: the live subtask table, the plan, agent tables, the answer.

Text that comes from a request, event data, a tool or a model is shown through
:func:`safe_text` (control characters and terminal escapes stripped) and as plain ``Text``
or escaped markup, so it can neither rewrite the terminal nor inject rich markup.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from orchestrator.events import (
    AnswerChunk,
    BudgetHitData,
    Event,
    PlanInvalidData,
    PlanMadeData,
    ReassignedData,
    ReplannedData,
    RetriedData,
    RunHandedOverData,
    SubtaskEndedData,
    ToolCalledData,
    ToolRefusedData,
)
from orchestrator.results import RunResult

if TYPE_CHECKING:
    from orchestrator.agents.catalog import AgentEntry
    from orchestrator.approvals import ApprovalRequest

_STATUS_STYLE = {"pending": "dim", "running": "yellow", "done": "green", "failed": "red",
                 "skipped": "magenta", "cancelled": "magenta", "waiting": "cyan"}


_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"          # CSI: colours, cursor moves, clearing the screen
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: titles, hyperlinks
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"     # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]?"                 # any other escape
    r"|\x9b[0-?]*[ -/]*[@-~]")           # 8-bit CSI
_HIDDEN = frozenset([*range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x206A),
                     0xFEFF])
"""Zero-width and bidirectional controls: they can hide or reorder what a person reads."""


def safe_text(value: object, *, one_line: bool = False) -> str:
    """``value`` as text safe to show on a terminal: escape sequences and control
    characters (``\\x1b``, ``\\r``, backspace, bidi overrides, ...) removed; newlines and tabs
    kept unless ``one_line``."""
    text = _ESCAPES.sub("", value if isinstance(value, str) else str(value))
    kept = "\t" if one_line else "\n\t"
    out = "".join(ch for ch in text if ch in kept or (
        unicodedata.category(ch) != "Cc" and ord(ch) not in _HIDDEN))
    return out.replace("\n", " ") if one_line else out


def approval_details(step: ApprovalRequest, *, decision: str | None = None) -> Panel:
    """What a person is asked to approve, complete and sanitised: its key, the step, the
    tool, its full arguments, why it needs an approval, and the effect the tool previews;
    with ``decision``, what is about to be decided on it."""
    rows: list[tuple[str, Any]] = [("key", step.key),
                                   ("step", f"{step.subtask_id} ({step.agent})"),
                                   ("goal", step.goal)]
    if step.tool:
        rows += [("tool", step.tool), ("arguments", _visible_json(step.args or {}))]
    rows += [("why", step.why), ("effect", step.preview), ("decision", decision)]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in rows:
        if value not in (None, ""):
            table.add_row(label, Text(safe_text(value)))
    return Panel(table, title="deciding" if decision else "approval needed",
                 border_style="cyan", expand=False)


def _visible_json(value: Any) -> str:
    # Arguments are shown exactly: invisible characters appear as \\uXXXX, not stripped.
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return "".join(f"\\u{ord(ch):04x}" if ord(ch) in _HIDDEN or (
        unicodedata.category(ch) == "Cc" and ch != "\n") else ch for ch in text)


@dataclass
class _Row:
    agent: str
    goal: str
    depends_on: list[str]
    status: str = "pending"
    started: float | None = None
    elapsed: float | None = None
    detail: str = ""


class _Tail:
    """The last lines of a text, as many as fit in half the screen: an answer being written
    that is longer than the screen scrolls in the live view instead of running off it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = Text(self.text).wrap(console, options.max_width)
        yield Text("\n").join(lines[-max(3, options.size.height // 2):])


class RunView:
    """Turns events into a live table: the plan, then each subtask's agent, status and time;
    and the answer as it is written (answer chunks), until the run ends."""

    def __init__(self) -> None:
        self.rows: dict[str, _Row] = {}
        self.rationale = ""
        self.note = "planning..."
        self.writing = ""
        """The answer streamed so far; shown only while the run is under way."""

    def on_answer_chunk(self, chunk: AnswerChunk) -> None:
        self.writing += chunk.text

    def end_answer(self) -> None:
        """Stop showing the streamed answer (the finished answer is printed once, after
        the live view)."""
        self.writing = ""

    def on_event(self, event: Event) -> None:
        sid, data = event.subtask_id or "", event.data
        if event.type == "plan_made":
            made = cast(PlanMadeData, data)
            plan, adjusted = made["plan"], made.get("adjusted") or []
            self.rationale = plan.get("rationale", "")
            self.note = "" if plan["subtasks"] else "answering directly"
            if adjusted:  # what the engine changed in the model's plan (plan_fit)
                more = f" (+{len(adjusted) - 1} more)" if len(adjusted) > 1 else ""
                self.note = f"plan adjusted: {adjusted[0][:100]}{more}"
            for sub in plan["subtasks"]:
                self.rows[sub["id"]] = _Row(sub["agent"], sub["goal"], sub["depends_on"])
        elif event.type == "plan_invalid":
            error = cast(PlanInvalidData, data)["error"]
            self.note = f"plan rejected ({error[:80]}), asking again..."
        elif event.type == "subtask_started" and sid in self.rows:
            self.rows[sid].status, self.rows[sid].started = "running", time.time()
        elif event.type == "tool_called" and sid in self.rows:
            call = cast(ToolCalledData, data)
            self.rows[sid].detail = f"{call['tool']}({call['status']})"
        elif event.type == "tool_refused" and sid in self.rows:
            self.rows[sid].detail = f"refused {cast(ToolRefusedData, data)['tool']}"
        elif event.type in ("subtask_finished", "subtask_failed", "subtask_skipped"):
            if sid in self.rows:
                ended, row = cast(SubtaskEndedData, data), self.rows[sid]
                row.status = ended["status"]
                row.elapsed = ended.get("elapsed_s")
                if ended.get("error"):
                    row.detail = str(ended.get("error"))[:70]
                elif ended.get("reason"):
                    row.detail = str(ended.get("reason"))[:70]
        elif event.type == "retried" and sid in self.rows:
            retry = cast(RetriedData, data)
            self.rows[sid].detail = f"retry {retry['attempt']}: {retry['kind']}"
        elif event.type == "reassigned" and sid in self.rows:
            moved = cast(ReassignedData, data)
            self.rows[sid].agent = moved["to"]
            self.rows[sid].detail = f"reassigned from {moved['from']}"
        elif event.type == "run_handed_over":
            moved_run = cast(RunHandedOverData, data)
            self.note = (f"handed over from worker {moved_run['from_worker']} to "
                         f"{moved_run['to_worker']}")
        elif event.type == "replanned":
            added = cast(ReplannedData, data)["added"]
            for sub in added:
                self.rows[sub["id"]] = _Row(sub["agent"], sub["goal"], sub.get("depends_on", []))
            if sid in self.rows:
                names = ", ".join(s["id"] for s in added) or "nothing"
                self.rows[sid].detail = f"replanned: {names}"
        elif event.type == "approval_requested" and sid in self.rows:
            self.rows[sid].status, self.rows[sid].detail = "waiting", "needs approval"
        elif event.type == "budget_hit":
            self.note = f"budget hit: {cast(BudgetHitData, data)['limit']}"
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
                Text(safe_text(sid, one_line=True)), Text(safe_text(row.agent, one_line=True)),
                Text(safe_text(row.goal[:60], one_line=True)),
                Text(safe_text(",".join(row.depends_on) or "-", one_line=True)),
                Text(row.status, style=_STATUS_STYLE.get(row.status, "")),
                f"{elapsed:.2f}s" if elapsed is not None else "",
                Text(safe_text(row.detail, one_line=True)),
            )
        parts: list[RenderableType] = []
        if self.rows:
            parts.append(table)
        if self.rationale:
            parts.append(Text(safe_text(self.rationale), style="dim"))
        if self.note:
            parts.append(Text(safe_text(self.note), style="italic dim"))
        if self.writing:
            parts.append(Panel(_Tail(safe_text(self.writing)), title="answer (writing...)",
                               title_align="left", border_style="dim"))
        return Group(*parts)


def print_answer(console: Console, result: RunResult, *, details: bool = True) -> None:
    """The answer and a one-line usage summary; for a paused run, what it waits for (with
    ``details``, each approval complete: key, tool, arguments, effect, why)."""
    u = result.usage
    usage = (f"[dim]{u.llm_calls} LLM calls, {u.input_tokens} in / {u.output_tokens} out "
             f"tokens, {result.elapsed_s:.2f}s, thread {result.thread_id}, run "
             f"{result.run_id[:12]}[/dim]")
    if result.status == "paused":
        steps = "\n".join(escape(safe_text(
            f"- {p.subtask_id} ({p.agent}): "
            + (f"{p.tool} - {p.why}" if p.tool else p.goal), one_line=True))
            for p in result.pending_approvals)
        shown: list[RenderableType] = [f"Waiting for approval:\n{steps}"]
        if details:
            shown += [approval_details(p) for p in result.pending_approvals]
        console.print(Panel(Group(*shown), title="paused", border_style="cyan"))
        console.print(usage)
        return
    style = "green" if result.ok else "red"
    if not result.answer and result.error:  # e.g. the run was taken over by another process
        console.print(Panel(Text(safe_text(result.error)), title=f"no answer: {result.status}",
                            border_style=style))
    else:
        console.print(Panel(Markdown(_list_ends(safe_text(result.answer or "(no answer)"))),
                            title="answer", border_style=style))
    console.print(usage)


_LIST_ITEM = re.compile(r"\s*(?:[-*+]|\d+[.)])\s")


def _list_ends(text: str) -> str:
    """``text`` with a blank line where a list stops and plain text begins: Markdown reads
    a line right after a list item as more of that item ("... 91 ms. Not done:")."""
    out: list[str] = []
    for line in text.split("\n"):
        if (out and _LIST_ITEM.match(out[-1]) and line.strip() and not line[0].isspace()
                and not _LIST_ITEM.match(line)):
            out.append("")
        out.append(line)
    return "\n".join(out)


def agents_table(agents: list[AgentEntry]) -> Table:
    """Agents grouped by domain; each tool marked with what it does (reads or writes) and
    whether it needs an approval or is audited."""

    table = Table(title="Agents")
    for column in ("domain", "name", "description", "skills", "tools", "source"):
        table.add_column(column, overflow="fold")
    previous = None
    for agent in sorted(agents, key=lambda a: a.domain):
        if previous is not None and agent.domain != previous:
            table.add_section()
        tools = [f"{t.name} ({', '.join(t.marks)})" for t in agent.tools]
        table.add_row(agent.domain if agent.domain != previous else "", agent.name,
                      agent.description, ", ".join(agent.skills), ", ".join(tools), agent.source)
        previous = agent.domain
    return table
