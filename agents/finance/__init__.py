"""Financial services domain pack: transaction monitoring, fraud, compliance, verification."""

from orchestrator.agents.finance.agents import finance_agents

__all__ = ["finance_agents"]
