"""Healthcare domain pack: appointments, patient history, diagnostics, billing, records."""

from agents.healthcare.agents import healthcare_agents

__all__ = ["healthcare_agents"]
