"""Healthcare domain pack: appointments, patient history, diagnostics, billing, records.

Registered as the ``healthcare`` entry point of ``orchestrator.packs`` (see pyproject.toml), the
way a third-party pack is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.agents.domains import DomainPack, lazy_attributes

if TYPE_CHECKING:
    from orchestrator.agents.healthcare.agents import healthcare_agents

PACK = DomainPack(
    name="healthcare",
    description="Healthcare: visits, history, diagnostics, billing, records",
    package=__name__,
    agents=f"{__name__}.agents:healthcare_agents",
    evals="evals",
)


# The agents and their tools load on first use, so finding the pack stays cheap.
__getattr__ = lazy_attributes(__name__, healthcare_agents=f"{__name__}.agents:healthcare_agents")

__all__ = ["PACK", "healthcare_agents"]
