"""E-commerce domain pack: catalog, stock, pricing, promotions, support and logistics."""

from orchestrator.agents.commerce.agents import commerce_agents

__all__ = ["commerce_agents"]
