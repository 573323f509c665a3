"""E-commerce domain pack: catalog, stock, pricing, promotions, support and logistics.

Registered as the ``commerce`` entry point of ``orchestrator.packs`` (see pyproject.toml), the
way a third-party pack is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.agents.domains import DomainPack, lazy_attributes

if TYPE_CHECKING:
    from orchestrator.agents.commerce.agents import commerce_agents

PACK = DomainPack(
    name="commerce",
    description="E-commerce: stock, prices, promotions, support, forecasts",
    package=__name__,
    agents=f"{__name__}.agents:commerce_agents",
    evals="evals",
)


# The agents and their tools load on first use, so finding the pack stays cheap.
__getattr__ = lazy_attributes(__name__, commerce_agents=f"{__name__}.agents:commerce_agents")

__all__ = ["PACK", "commerce_agents"]
