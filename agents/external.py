"""Specialists that are not our model-and-tools loop: a remote agent over A2A, a LangGraph
graph, an OpenAI Agents SDK agent.

An :class:`ExternalAgent` takes one subtask (its goal and its dependencies' outputs, nothing
else: never the conversation or the plan), reports what it does as it goes (its tool calls,
its status), and returns its output. The engine runs it inside the same attempt loop as a
built-in agent, so timeouts, retries, reassignment, budgets and events apply unchanged.

What it may do is declared, not asked: an agent whose ``kind`` is read-only serves questions
(``answer`` subtasks); any other serves only ``act`` subtasks, because the engine cannot hold
a remote system to "only read" by telling it so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from orchestrator.agents.policy import ToolKind

SubtaskKindName = Literal["answer", "act"]


@dataclass(frozen=True)
class ExternalInput:
    """The output of a finished subtask the current one depends on."""

    subtask_id: str
    agent: str
    output: str


@dataclass(frozen=True)
class ExternalTask:
    """One attempt at one subtask, as an external agent receives it."""

    run_id: str
    subtask_id: str
    goal: str
    kind: SubtaskKindName
    inputs: tuple[ExternalInput, ...] = ()
    timeout_s: float | None = None
    """How long the attempt may take (the engine also stops it then)."""

    @property
    def context_id(self) -> str:
        """A stable id for this subtask of this run (a remote conversation's id)."""
        return f"{self.run_id}:{self.subtask_id}"

    def text(self) -> str:
        """The goal and the inputs as one message, for agents that take plain text."""
        parts = [self.goal]
        for given in self.inputs:
            parts.append(f"\n[input from {given.agent} ({given.subtask_id})]\n{given.output}")
        return "\n".join(parts)


@dataclass(frozen=True)
class ExternalToolCall:
    """A tool call the external agent reports it made."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    output: str = ""
    ok: bool = True
    write: bool = False
    """The call changed something (as far as the agent or its tool's annotations say)."""


@dataclass(frozen=True)
class ExternalStatus:
    """A status update the external agent sent (e.g. an A2A task's ``working`` message)."""

    state: str
    text: str = ""


ExternalStep = ExternalToolCall | ExternalStatus
Report = Callable[[ExternalStep], None]
"""Called by the agent for each step as it happens (the engine emits an event for each)."""


@dataclass(frozen=True)
class ExternalReply:
    """What the external agent ended with."""

    output: str
    status: Literal["done", "failed"] = "done"
    error: str | None = None
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


class ExternalUnreachable(ConnectionError):
    """The agent could not be reached, so nothing of the task started: safe to try again."""


@runtime_checkable
class ExternalAgent(Protocol):
    """A specialist run by something other than the engine's own tool loop.

    An adapter may also set ``reports_writes = True`` when every change the agent makes is
    reported as an :class:`ExternalToolCall` before ``run`` returns or raises (an agent run
    in this process). For any other agent (a remote one) the engine cannot see what it did:
    an action cut off or lost mid-way has an unknown outcome and is not tried again.
    """

    kind: ToolKind
    """What it may do (MCP's vocabulary): read-only agents may serve questions."""

    async def run(self, task: ExternalTask, report: Report) -> ExternalReply:
        """Do the task; raise only for a failure worth a retry: :class:`ExternalUnreachable`
        when nothing started, another ConnectionError or a TimeoutError when contact was
        lost. A refusal or a failed task is an :class:`ExternalReply` that says so."""
        ...


def reports_writes(agent: ExternalAgent) -> bool:
    """Whether every change ``agent`` makes is reported to the engine as it happens."""
    return bool(getattr(agent, "reports_writes", False))
