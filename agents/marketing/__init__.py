"""Marketing domain pack: campaign content, scheduling, analytics.

Registered as the ``marketing`` entry point of ``orchestrator.packs`` (see pyproject.toml), the
way a third-party pack is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.agents.domains import DomainPack, lazy_attributes

if TYPE_CHECKING:
    from orchestrator.agents.marketing.agents import marketing_agents

PACK = DomainPack(
    name="marketing",
    description="Marketing: campaign content, send times, analytics",
    package=__name__,
    agents=f"{__name__}.agents:marketing_agents",
    evals="evals",
)


# The agents and their tools load on first use, so finding the pack stays cheap.
__getattr__ = lazy_attributes(__name__, marketing_agents=f"{__name__}.agents:marketing_agents")

__all__ = ["PACK", "marketing_agents"]
