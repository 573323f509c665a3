"""What one run of one case produced, in the shape scorers and reports read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.results import RunResult, Usage


@dataclass
class CaseRun:
    """The turns of one case run, and the database they acted on."""

    case_id: str
    repeat: int
    db_path: Path
    turns: list[RunResult] = field(default_factory=list)
    error: str | None = None
    """Set when the run could not finish (a model error, a crash), not for failed subtasks."""
    elapsed_s: float = 0.0

    @property
    def answer(self) -> str:
        return self.turns[-1].answer if self.turns else ""

    @property
    def status(self) -> str:
        if self.error or not self.turns:
            return "failed"
        return self.turns[-1].status

    @property
    def runs(self) -> list[RunResult]:
        """One result per run: a run paused for approval and resumed counts once, by its
        last part (which holds all its subtasks and usage)."""
        last = {turn.run_id: turn for turn in self.turns}
        return list(last.values())

    @property
    def agents_used(self) -> list[str]:
        """Agents of all subtasks that were planned, in plan order, without repeats."""
        agents: list[str] = []
        for turn in self.runs:
            for result in turn.results.values():
                if result.agent not in agents:
                    agents.append(result.agent)
        return agents

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [{"subtask": r.id, "agent": r.agent, "name": c.name, "args": c.args,
                 "status": c.status}
                for turn in self.runs for r in turn.results.values() for c in r.tool_calls]

    @property
    def plan_errors(self) -> list[str]:
        return [t.error for t in self.turns if t.error]

    @property
    def usage(self) -> Usage:
        total = Usage()
        for turn in self.runs:
            total = total + turn.usage
        return total

    def trace(self) -> list[dict[str, Any]]:
        """Per turn: request, plan, subtask results (with tool calls), events, usage."""
        return [turn.to_dict(include_events=True) | {"request": turn.request}
                for turn in self.turns]
