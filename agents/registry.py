"""The agent registry: built-ins, ``orchestrator.agents`` entry points, and YAML cards."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from pathlib import Path

from orchestrator.agents.cards import load_agent_cards
from orchestrator.agents.spec import AgentSpec

from orchestrator.errors import ConfigError

ENTRY_POINT_GROUP = "orchestrator.agents"


def builtin_agents(domains: str | Iterable[str] | None = None) -> list[AgentSpec]:
    """The specialists that ship with the package: all domain packs, or those named."""
    from orchestrator.agents.domains import DOMAIN_PACKS, enabled_domains

    return [spec for name in enabled_domains(domains) for spec in DOMAIN_PACKS[name].agents()]


def plugin_agents(group: str = ENTRY_POINT_GROUP) -> list[AgentSpec]:
    """Agents from installed packages' entry points.

    An entry point may name an AgentSpec, a list of them, or a function returning either.
    """
    found: list[AgentSpec] = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        where = f"entry point {ep.name!r} ({ep.value})"
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, AgentSpec):
                obj = obj()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except Exception as exc:
            raise ConfigError(f"{where} failed to load: {type(exc).__name__}: {exc}") from None
        items = obj if isinstance(obj, list | tuple) else [obj]
        for item in items:
            if not isinstance(item, AgentSpec):
                raise ConfigError(f"{where} gave {type(item).__name__}, not an AgentSpec")
            if item.source == "python":
                item.source = where
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
        """Built-ins of the enabled ``domains`` (all by default), then plugins, then cards
        from ``agents_dir``."""
        registry = cls(builtin_agents(domains) if builtins else ())
        if plugins:
            for spec in plugin_agents():
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
