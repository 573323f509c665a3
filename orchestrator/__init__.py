"""An LLM-driven adaptive orchestrator: a LangGraph supervisor that plans, runs specialist
agents in parallel and synthesizes the answer.

Names are imported lazily so ``import orchestrator`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.agents.spec import AgentSpec
    from orchestrator.api import Orchestrator
    from orchestrator.config import Settings
    from orchestrator.errors import (
        AgentError,
        ConfigError,
        ModelError,
        OrchestratorError,
        PlanError,
        RequestError,
    )
    from orchestrator.events import Event
    from orchestrator.graph import build_graph, compile_graph
    from orchestrator.models import FakeChatModel, get_model
    from orchestrator.plan import Plan, Subtask
    from orchestrator.results import RunResult, SubtaskResult, Usage

_EXPORTS = {
    "Orchestrator": "orchestrator.api",
    "Settings": "orchestrator.config",
    "AgentError": "orchestrator.errors",
    "ConfigError": "orchestrator.errors",
    "ModelError": "orchestrator.errors",
    "OrchestratorError": "orchestrator.errors",
    "PlanError": "orchestrator.errors",
    "RequestError": "orchestrator.errors",
    "Event": "orchestrator.events",
    "build_graph": "orchestrator.graph",
    "compile_graph": "orchestrator.graph",
    "FakeChatModel": "orchestrator.models",
    "get_model": "orchestrator.models",
    "Plan": "orchestrator.plan",
    "Subtask": "orchestrator.plan",
    "RunResult": "orchestrator.results",
    "SubtaskResult": "orchestrator.results",
    "Usage": "orchestrator.results",
    "AgentSpec": "orchestrator.agents.spec",
}

__all__ = [
    "AgentError",
    "AgentSpec",
    "ConfigError",
    "Event",
    "FakeChatModel",
    "ModelError",
    "Orchestrator",
    "OrchestratorError",
    "Plan",
    "PlanError",
    "RequestError",
    "RunResult",
    "Settings",
    "Subtask",
    "SubtaskResult",
    "Usage",
    "build_graph",
    "compile_graph",
    "get_model",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    return getattr(import_module(module), name)
