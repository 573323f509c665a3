"""Domain packs: one business domain's agents, seed data, knowledge, playbooks and eval cases.

A pack is one :class:`DomainPack` registered under the ``orchestrator.packs`` entry-point
group. The five built-in packs (``it_ops``, ``commerce``, ``finance``, ``healthcare``,
``marketing``) register there exactly as a third-party pack does, so the engine names none
of them:

    ```toml
    [project.entry-points."orchestrator.packs"]
    weather_ops = "weather_ops:PACK"
    ```

``ORCHESTRATOR_DOMAINS=it_ops,weather_ops`` switches packs on and off in one line, built-in
and third-party alike; the planner only ever sees the agents and playbooks of the packs that
are on. The demo database and knowledge base hold every installed pack's data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import import_module, resources
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.agents.spec import AgentSpec

PACKS_ENTRY_POINT_GROUP = "orchestrator.packs"

_PACK_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


@dataclass(frozen=True)
class DomainPack:
    """One business domain and where its parts live.

    Example:
        ```python
        PACK = DomainPack(name="weather_ops", description="Weather alerts for depots",
                          package="weather_ops", agents="weather_ops.agents:make_agents",
                          evals="evals")
        ```
    """

    name: str
    """Its name in ``ORCHESTRATOR_DOMAINS``; its knowledge goes to the collection so named."""
    description: str
    """One line for listings."""
    package: str
    """The import package whose folder holds the files named below."""
    agents: str | Callable[[], Iterable[AgentSpec]]
    """A function returning the pack's agents, or ``"module:function"`` naming it (imported
    only when the agents are needed, so finding a pack stays cheap)."""
    seed: str | None = "seed.sql"
    """SQL script (in ``package``) that creates and fills the pack's tables in the demo
    database; None when the pack has none."""
    knowledge: str | None = "knowledge"
    """Folder of documents ingested into the collection named after the pack, or None."""
    playbooks: str | None = "playbooks"
    """Folder of YAML playbooks, or None."""
    evals: str | None = None
    """Folder (or file) of eval cases (``orchestrator eval --pack NAME``), or None."""

    def __post_init__(self) -> None:
        if not _PACK_NAME.fullmatch(self.name):
            raise ConfigError(f"domain pack name {self.name!r} must be snake_case, 1-40 chars")

    @property
    def builtin(self) -> bool:
        """Shipped with the orchestrator (as opposed to installed from another package)."""
        return self.package.startswith("orchestrator.")

    def agent_specs(self) -> list[AgentSpec]:
        """The pack's agents; ConfigError naming the pack when they cannot be made."""
        from orchestrator.agents.spec import AgentSpec

        try:
            make = _resolve(self.agents) if isinstance(self.agents, str) else self.agents
            specs = list(make())
        except ConfigError as exc:
            raise ConfigError(f"domain pack {self.name!r}: {exc}") from None
        except Exception as exc:
            raise ConfigError(f"domain pack {self.name!r}: its agents ({self.agents!r}) failed "
                              f"to load: {type(exc).__name__}: {exc}") from None
        for spec in specs:
            if not isinstance(spec, AgentSpec):
                raise ConfigError(f"domain pack {self.name!r}: its agents function gave "
                                  f"{type(spec).__name__}, not an AgentSpec")
        return specs

    def seed_sql(self) -> str | None:
        path = self._asset(self.seed)
        return path.read_text("utf-8") if path is not None else None

    def knowledge_folder(self) -> Path | None:
        return self._asset(self.knowledge)

    def playbooks_folder(self) -> Path | None:
        return self._asset(self.playbooks)

    def evals_path(self) -> Path | None:
        return self._asset(self.evals)

    def assets(self) -> list[Path]:
        """The files and folders the pack declares (seed, knowledge, playbooks, evals)."""
        return [p for p in (self._asset(self.seed), self.knowledge_folder(),
                            self.playbooks_folder(), self.evals_path()) if p is not None]

    def check(self) -> None:
        """ConfigError naming the pack and the first declared file or folder that is missing."""
        for what, rel, folder in (("seed", self.seed, False), ("knowledge", self.knowledge, True),
                                  ("playbooks", self.playbooks, True),
                                  ("evals", self.evals, None)):
            path = self._asset(rel)
            if path is None:
                continue
            ok = path.exists() if folder is None else path.is_dir() if folder else path.is_file()
            if not ok:
                raise ConfigError(f"domain pack {self.name!r}: its {what} {rel!r} is not in "
                                  f"package {self.package} ({path})")

    def _asset(self, relative: str | None) -> Path | None:
        if relative is None:
            return None
        try:
            root = resources.files(self.package)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"domain pack {self.name!r}: cannot import its package "
                              f"{self.package!r}: {exc}") from None
        return Path(str(root.joinpath(relative)))


def _resolve(reference: str) -> Callable[[], Iterable[AgentSpec]]:
    module, _, attribute = reference.partition(":")
    if not module or not attribute:
        raise ValueError(f"{reference!r} is not 'module:function'")
    make: Callable[[], Iterable[AgentSpec]] = getattr(import_module(module), attribute)
    return make


def lazy_attributes(module: str, **targets: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each name from its ``"module:attribute"``
    target on first use, so a pack's ``__init__`` stays cheap to import (finding a pack
    must not build its tools)::

        __getattr__ = lazy_attributes(__name__, weather_agents=PACK.agents)
    """

    def __getattr__(name: str) -> Any:
        target = targets.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        source, _, attribute = target.partition(":")
        return getattr(import_module(source), attribute)

    return __getattr__


def pack_entry_points(group: str = PACKS_ENTRY_POINT_GROUP) -> dict[str, EntryPoint]:
    """Installed packs by name, without importing them: the built-in ones first, in the
    order they are declared, then the others by name."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        earlier = found.get(ep.name)
        if earlier is not None and earlier.value != ep.value:
            raise ConfigError(f"two domain packs are named {ep.name!r} ({earlier.value} and "
                              f"{ep.value}): uninstall one")
        found[ep.name] = ep
    builtin = [n for n, ep in found.items() if ep.value.startswith("orchestrator.")]
    others = sorted(n for n in found if n not in builtin)
    return {name: found[name] for name in [*builtin, *others]}


def load_entry_point(ep: EntryPoint, where: str, kind: type) -> Any:
    """What a plug-in's entry point names: the object, or what calling it gives when it is
    a factory rather than a ``kind``; a one-line ConfigError starting with ``where`` when
    it does not load."""
    try:
        obj = ep.load()
        return obj() if callable(obj) and not isinstance(obj, kind) else obj
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except Exception as exc:
        raise ConfigError(f"{where} failed to load: {type(exc).__name__}: {exc}") from None


def load_pack(ep: EntryPoint) -> DomainPack:
    """The pack an entry point names, checked; one-line ConfigError naming it otherwise."""
    where = f"domain pack {ep.name!r} ({ep.value})"
    pack = load_entry_point(ep, where, DomainPack)
    if not isinstance(pack, DomainPack):
        raise ConfigError(f"{where} gave {type(pack).__name__}, not a DomainPack")
    if pack.name != ep.name:
        raise ConfigError(f"{where} is registered as {ep.name!r} but calls itself "
                          f"{pack.name!r}: use one name")
    pack.check()
    return pack


def installed_packs() -> list[DomainPack]:
    """Every installed pack, loaded and checked (the demo data holds all of them)."""
    return [load_pack(ep) for ep in pack_entry_points().values()]


def enabled_domains(setting: str | Iterable[str] | None) -> list[str]:
    """The packs a setting switches on: 'all' (the default), or a comma-separated list."""
    known = list(pack_entry_points())
    if setting is None or setting == "all":
        return known
    names = [n.strip() for n in (setting.split(",") if isinstance(setting, str) else setting)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown domain(s) in ORCHESTRATOR_DOMAINS: {', '.join(unknown)} "
                          f"(known: {', '.join(known) or 'none installed'}, or 'all')")
    return list(dict.fromkeys(names))


def enabled_packs(setting: str | Iterable[str] | None = None) -> list[DomainPack]:
    """The packs that are on, loaded and checked: a broken one fails here, at start."""
    installed = pack_entry_points()
    return [load_pack(installed[name]) for name in enabled_domains(setting)]


def find_pack(name: str) -> DomainPack:
    """An installed pack by name (on or off); ConfigError listing the known ones."""
    installed = pack_entry_points()
    if name not in installed:
        raise ConfigError(f"no domain pack named {name!r} (known: "
                          f"{', '.join(installed) or 'none installed'})")
    return load_pack(installed[name])


def pack_eval_cases(names: Iterable[str]) -> list[Path]:
    """The eval case files or folders the named packs declare; ConfigError for a pack that
    is not installed or declares none."""
    found: list[Path] = []
    for name in names:
        path = find_pack(name).evals_path()
        if path is None:
            raise ConfigError(f"domain pack {name!r} declares no eval cases (DomainPack.evals)")
        found.append(path)
    return found
