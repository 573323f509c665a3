"""Healthcare domain pack: appointments, patient history, diagnostics, billing, records."""

from orchestrator.agents.healthcare.agents import healthcare_agents

__all__ = ["healthcare_agents"]
