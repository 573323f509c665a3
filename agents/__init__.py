"""Agents: the spec, the registry (built-ins, plugins, cards) and the built-in domain packs.

Names load on first use, so finding a pack (``orchestrator.agents.<pack>``) stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.agents.cards import AgentCard, load_agent_card, load_agent_cards
    from orchestrator.agents.registry import (
        ENTRY_POINT_GROUP,
        AgentRegistry,
        builtin_agents,
        plugin_agents,
    )
    from orchestrator.agents.spec import AgentSpec, as_tool

_EXPORTS = {
    "AgentCard": "orchestrator.agents.cards",
    "load_agent_card": "orchestrator.agents.cards",
    "load_agent_cards": "orchestrator.agents.cards",
    "ENTRY_POINT_GROUP": "orchestrator.agents.registry",
    "AgentRegistry": "orchestrator.agents.registry",
    "builtin_agents": "orchestrator.agents.registry",
    "plugin_agents": "orchestrator.agents.registry",
    "AgentSpec": "orchestrator.agents.spec",
    "as_tool": "orchestrator.agents.spec",
}

__all__ = [
    "ENTRY_POINT_GROUP",
    "AgentCard",
    "AgentRegistry",
    "AgentSpec",
    "as_tool",
    "builtin_agents",
    "load_agent_card",
    "load_agent_cards",
    "plugin_agents",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator.agents' has no attribute {name!r}")
    return getattr(import_module(module), name)
