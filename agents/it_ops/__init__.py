"""IT operations domain pack: incident response over an operations database.

Registered as the ``it_ops`` entry point of ``orchestrator.packs`` (see pyproject.toml), the
way a third-party pack is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.agents.domains import DomainPack, lazy_attributes

if TYPE_CHECKING:
    from orchestrator.agents.it_ops.agents import it_ops_agents

PACK = DomainPack(
    name="it_ops",
    description="IT operations: incidents, traffic, on-call",
    package=__name__,
    agents=f"{__name__}.agents:it_ops_agents",
    evals="evals",
)


# The agents and their tools load on first use, so finding the pack stays cheap.
__getattr__ = lazy_attributes(__name__, it_ops_agents=f"{__name__}.agents:it_ops_agents")

__all__ = ["PACK", "it_ops_agents"]
