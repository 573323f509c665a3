"""The graph state and the engine context the nodes share."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

from agents.spec import AgentSpec
from orchestrator.config import Settings


class OrchestratorState(TypedDict, total=False):
    """One conversation thread. Values are plain JSON-like data so checkpoints stay portable.

    ``messages`` is the conversation (user requests and final answers) and accumulates
    across turns; every other key describes the current turn and is reset by the planner.
    """

    messages: Annotated[list[AnyMessage], add_messages]
    request: str
    run_id: str
    plan: dict[str, Any] | None
    results: dict[str, dict[str, Any]]
    answer: str
    error: str | None
    supervisor_usage: dict[str, int]


class NodeFn(Protocol):
    """A graph node: reads the state, returns the keys it updates."""

    def __call__(self, state: OrchestratorState) -> Awaitable[dict[str, Any]]: ...


@dataclass
class EngineContext:
    """What the nodes need besides the state: agents, models, settings."""

    model: BaseChatModel
    """The supervisor's model (planner and synthesizer), and the agents' default."""
    agents: dict[str, AgentSpec]
    agent_models: dict[str, BaseChatModel]
    """Resolved per-agent models; agents without an override use ``model``."""
    settings: Settings

    def model_for(self, agent: str) -> BaseChatModel:
        return self.agent_models.get(agent, self.model)
