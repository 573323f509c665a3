"""Marketing domain pack: campaign content, scheduling, analytics."""

from orchestrator.agents.marketing.agents import marketing_agents

__all__ = ["marketing_agents"]
