"""IT operations domain pack: incident response over an operations database.

Registered as the ``it_ops`` entry point of ``orchestrator.packs`` (see pyproject.toml), the
way a third-party pack is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.agents.domains import DomainPack

if TYPE_CHECKING:
    from orchestrator.agents.it_ops.agents import it_ops_agents

PACK = DomainPack(
    name="it_ops",
    description="IT operations: incidents, traffic, on-call",
    package=__name__,
    agents=f"{__name__}.agents:it_ops_agents",
)


def __getattr__(name: str) -> Any:
    # The agents and their tools load on first use, so finding the pack stays cheap.
    if name == "it_ops_agents":
        from orchestrator.agents.it_ops.agents import it_ops_agents

        return it_ops_agents
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PACK", "it_ops_agents"]
