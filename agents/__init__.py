"""Agents: the spec, the registry (built-ins, plugins, cards) and the built-in domain packs."""

from orchestrator.agents.cards import AgentCard, load_agent_card, load_agent_cards
from orchestrator.agents.registry import (
    ENTRY_POINT_GROUP,
    AgentRegistry,
    builtin_agents,
    plugin_agents,
)
from orchestrator.agents.spec import AgentSpec, as_tool

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
