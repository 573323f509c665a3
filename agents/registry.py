"""The agent registry: domain packs, ``orchestrator.agents`` entry points, and YAML cards."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from pathlib import Path

from orchestrator.agents.cards import load_agent_cards
from orchestrator.agents.domains import (
    DomainPack,
    enabled_packs,
    load_entry_point,
    pack_entry_points,
)
from orchestrator.agents.spec import AgentSpec
from orchestrator.errors import ConfigError

ENTRY_POINT_GROUP = "orchestrator.agents"


def pack_agents(packs: Iterable[DomainPack]) -> list[AgentSpec]:
    """The agents of ``packs``; a third-party pack's agents are marked with where they
    came from and belong to its domain unless they say otherwise."""
    found: list[AgentSpec] = []
    for pack in packs:
        for spec in pack.agent_specs():
            if not pack.builtin:
                if spec.source == "python":
                    spec.source = f"domain pack {pack.name!r} ({pack.package})"
                if spec.domain == "general":
                    spec.domain = pack.name
            found.append(spec)
    return found


def builtin_agents(domains: str | Iterable[str] | None = None) -> list[AgentSpec]:
    """The specialists of the built-in packs that are on: all, or those named."""
    return pack_agents(p for p in enabled_packs(domains) if p.builtin)


def plugin_agents(group: str = ENTRY_POINT_GROUP, *,
                  domains: str | Iterable[str] | None = None) -> list[AgentSpec]:
    """Agents from installed packages: the third-party packs that are on, then the
    ``group`` entry points.

    An entry point may name an AgentSpec, a list of them, or a function returning either.
    One whose ``domain`` names an installed pack is on only while that pack is on.
    """
    packs = enabled_packs(domains)
    found = pack_agents(p for p in packs if not p.builtin)
    off = set(pack_entry_points()) - {p.name for p in packs}
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        where = f"entry point {ep.name!r} ({ep.value})"
        obj = load_entry_point(ep, where, AgentSpec)
        items = obj if isinstance(obj, list | tuple) else [obj]
        for item in items:
            if not isinstance(item, AgentSpec):
                raise ConfigError(f"{where} gave {type(item).__name__}, not an AgentSpec")
            if item.source == "python":
                item.source = where
            if item.domain not in off:
                found.append(item)
    return found


class AgentRegistry:
    """Agents by unique name; adding a second agent with a taken name is an error."""

    def __init__(self, agents: Iterable[AgentSpec] = ()) -> None:
        self._agents: dict[str, AgentSpec] = {}
        for spec in agents:
            self.add(spec)

    @classmethod
    def default(
        cls,
        agents_dir: str | Path | None = None,
        *,
        builtins: bool = True,
        plugins: bool = True,
        domains: str | Iterable[str] | None = None,
    ) -> AgentRegistry:
        """Agents of the built-in packs that are on (``domains``: all by default), then
        plugins (third-party packs that are on, ``orchestrator.agents`` entry points), then
        cards from ``agents_dir``."""
        registry = cls(builtin_agents(domains) if builtins else ())
        if plugins:
            for spec in plugin_agents(domains=domains):
                registry.add(spec)
        if agents_dir is not None:
            for spec in load_agent_cards(agents_dir):
                registry.add(spec)
        return registry

    def add(self, spec: AgentSpec) -> None:
        existing = self._agents.get(spec.name)
        if existing is not None:
            raise ConfigError(
                f"duplicate agent name {spec.name!r}: defined by {existing.source} "
                f"and by {spec.source}"
            )
        self._agents[spec.name] = spec

    def get(self, name: str) -> AgentSpec:
        try:
            return self._agents[name]
        except KeyError:
            raise ConfigError(f"no agent named {name!r}; known: {', '.join(self.names)}") from None

    @property
    def names(self) -> list[str]:
        return list(self._agents)

    @property
    def specs(self) -> list[AgentSpec]:
        return list(self._agents.values())

    def __iter__(self) -> Iterator[AgentSpec]:
        return iter(self._agents.values())

    def __len__(self) -> int:
        return len(self._agents)

    def __contains__(self, name: object) -> bool:
        return name in self._agents
