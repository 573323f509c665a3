"""IT operations domain pack: incident response over an operations database."""

from orchestrator.agents.it_ops.agents import it_ops_agents

__all__ = ["it_ops_agents"]
