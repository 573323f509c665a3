"""An LLM-driven adaptive orchestrator: a LangGraph supervisor that plans, runs specialist
agents in parallel and synthesizes the answer.

The public API is importable from here::

    from orchestrator import AgentSpec, Orchestrator, read_only, requires_approval, writes

Names are imported lazily so ``import orchestrator`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.agents.domains import DomainPack
    from orchestrator.agents.policy import audited, read_only, requires_approval, writes
    from orchestrator.agents.registry import AgentRegistry
    from orchestrator.agents.spec import AgentSpec
    from orchestrator.api import Orchestrator
    from orchestrator.approvals import ApprovalDecision, ApprovalRequest
    from orchestrator.config import Settings
    from orchestrator.errors import (
        AgentError,
        ConfigError,
        ModelError,
        OrchestratorError,
        PlanError,
        RequestError,
    )
    from orchestrator.events import Event, EventSink
    from orchestrator.graph import build_graph
    from orchestrator.models import FakeChatModel, get_model
    from orchestrator.plan import Plan, Subtask
    from orchestrator.playbooks import Playbook
    from orchestrator.records import RunRecords
    from orchestrator.results import RunResult, RunStatus, SubtaskResult, Usage
    from orchestrator.traces import Trace

_EXPORTS = {
    "AgentSpec": "orchestrator.agents.spec",
    "AgentRegistry": "orchestrator.agents.registry",
    "DomainPack": "orchestrator.agents.domains",
    "audited": "orchestrator.agents.policy",
    "read_only": "orchestrator.agents.policy",
    "requires_approval": "orchestrator.agents.policy",
    "writes": "orchestrator.agents.policy",
    "Orchestrator": "orchestrator.api",
    "ApprovalDecision": "orchestrator.approvals",
    "ApprovalRequest": "orchestrator.approvals",
    "Settings": "orchestrator.config",
    "AgentError": "orchestrator.errors",
    "ConfigError": "orchestrator.errors",
    "ModelError": "orchestrator.errors",
    "OrchestratorError": "orchestrator.errors",
    "PlanError": "orchestrator.errors",
    "RequestError": "orchestrator.errors",
    "Event": "orchestrator.events",
    "EventSink": "orchestrator.events",
    "build_graph": "orchestrator.graph",
    "FakeChatModel": "orchestrator.models",
    "get_model": "orchestrator.models",
    "Plan": "orchestrator.plan",
    "Subtask": "orchestrator.plan",
    "Playbook": "orchestrator.playbooks",
    "RunRecords": "orchestrator.records",
    "RunResult": "orchestrator.results",
    "RunStatus": "orchestrator.results",
    "SubtaskResult": "orchestrator.results",
    "Usage": "orchestrator.results",
    "Trace": "orchestrator.traces",
}

__all__ = [
    "AgentError",
    "AgentRegistry",
    "AgentSpec",
    "ApprovalDecision",
    "ApprovalRequest",
    "ConfigError",
    "DomainPack",
    "Event",
    "EventSink",
    "FakeChatModel",
    "ModelError",
    "Orchestrator",
    "OrchestratorError",
    "Plan",
    "PlanError",
    "Playbook",
    "RequestError",
    "RunRecords",
    "RunResult",
    "RunStatus",
    "Settings",
    "Subtask",
    "SubtaskResult",
    "Trace",
    "Usage",
    "audited",
    "build_graph",
    "get_model",
    "read_only",
    "requires_approval",
    "writes",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
