"""Financial services domain pack: transaction monitoring, fraud, compliance, verification.

Registered as the ``finance`` entry point of ``orchestrator.packs`` (see pyproject.toml), the
way a third-party pack is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.agents.domains import DomainPack, lazy_attributes

if TYPE_CHECKING:
    from orchestrator.agents.finance.agents import finance_agents

PACK = DomainPack(
    name="finance",
    description="Financial services: holds, fraud, compliance, verification",
    package=__name__,
    agents=f"{__name__}.agents:finance_agents",
    evals="evals",
)


# The agents and their tools load on first use, so finding the pack stays cheap.
__getattr__ = lazy_attributes(__name__, finance_agents=f"{__name__}.agents:finance_agents")

__all__ = ["PACK", "finance_agents"]
