"""The built-in domain packs, and which of them are switched on.

Each pack is a subpackage of ``agents`` with its agents, tools, ``seed.sql`` (its tables in
the demo database), ``knowledge/`` (ingested into a collection named after the domain) and
``playbooks/``. ``ORCHESTRATOR_DOMAINS=it_ops,commerce`` switches packs on and off in one
line; the planner only ever sees the agents of the packs that are on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import import_module

from orchestrator.agents.spec import AgentSpec

from orchestrator.errors import ConfigError


@dataclass(frozen=True)
class DomainPack:
    """One business domain: where its parts live."""

    name: str
    description: str
    package: str
    factory: str
    """Name of the function in ``package`` that returns the pack's agents."""

    def agents(self) -> list[AgentSpec]:
        make: Callable[[], list[AgentSpec]] = getattr(import_module(self.package), self.factory)
        return make()


DOMAIN_PACKS: dict[str, DomainPack] = {
    pack.name: pack for pack in (
        DomainPack("it_ops", "IT operations: incidents, traffic, on-call",
                   "orchestrator.agents.it_ops", "it_ops_agents"),
        DomainPack("commerce", "E-commerce: stock, prices, promotions, support, forecasts",
                   "orchestrator.agents.commerce", "commerce_agents"),
        DomainPack("finance", "Financial services: holds, fraud, compliance, verification",
                   "orchestrator.agents.finance", "finance_agents"),
        DomainPack("healthcare", "Healthcare: visits, history, diagnostics, billing, records",
                   "orchestrator.agents.healthcare", "healthcare_agents"),
        DomainPack("marketing", "Marketing: campaign content, send times, analytics",
                   "orchestrator.agents.marketing", "marketing_agents"),
    )
}


def enabled_domains(setting: str | Iterable[str] | None) -> list[str]:
    """The packs a setting switches on: 'all' (the default), or a comma-separated list."""
    if setting is None or setting == "all":
        return list(DOMAIN_PACKS)
    names = [n.strip() for n in (setting.split(",") if isinstance(setting, str) else setting)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in DOMAIN_PACKS]
    if unknown:
        raise ConfigError(f"unknown domain(s) in ORCHESTRATOR_DOMAINS: {', '.join(unknown)} "
                          f"(known: {', '.join(DOMAIN_PACKS)}, or 'all')")
    return list(dict.fromkeys(names))
