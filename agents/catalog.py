"""The agent catalog: what each agent is, without building its tools.

Listing the agents (``orchestrator agents``) needs their names, descriptions, skills and
what each tool does, not the tools themselves, whose classes take longer to import than the
whole listing may. The catalog is kept in the data folder with a fingerprint of everything
it was built from (the installed packs and agent plugins with their versions and files, the
agent cards, the domains setting); a listing whose fingerprint matches reads it, any other
builds the registry once and writes it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.agents.spec import AgentSpec

CATALOG_FILE = "agent_catalog.json"
_TOOL_REFERENCE = re.compile(r"([A-Za-z_][\w.]*):[A-Za-z_]\w*")
_FORMAT = 1


@dataclass(frozen=True)
class ToolEntry:
    name: str
    reads: bool
    """Read-only (else it writes)."""
    approval: bool
    audited: bool

    @property
    def marks(self) -> list[str]:
        return ["reads" if self.reads else "writes",
                *(["approval"] if self.approval else []), *(["audited"] if self.audited else [])]


@dataclass(frozen=True)
class AgentEntry:
    """One agent as a listing shows it."""

    name: str
    description: str
    skills: list[str]
    tools: list[ToolEntry]
    collections: list[str]
    domain: str
    source: str

    @classmethod
    def of(cls, spec: AgentSpec) -> AgentEntry:
        from orchestrator.agents.policy import is_audited, is_read_only, needs_approval

        return cls(spec.name, spec.description, list(spec.skills),
                   [ToolEntry(name, is_read_only(t), needs_approval(t), is_audited(t))
                    for name, t in spec.tool_map.items()],
                   list(spec.collections), spec.domain, spec.source)

    def to_dict(self) -> dict[str, Any]:
        """The ``orchestrator agents --json`` shape (tools by name)."""
        return {"name": self.name, "description": self.description, "skills": self.skills,
                "tools": [t.name for t in self.tools], "collections": self.collections,
                "domain": self.domain, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentEntry:
        return cls(**{**data, "tools": [ToolEntry(**t) for t in data["tools"]]})


def agent_catalog(home: Path, agents_dir: Path | None, domains: str | None) -> list[AgentEntry]:
    """The agents the registry would give for these settings, from the catalog in ``home``
    when it is current, else from the registry (and then stored for the next listing)."""
    key = fingerprint(agents_dir, domains)
    path = home / CATALOG_FILE
    try:
        stored = json.loads(path.read_text("utf-8"))
        if stored.get("format") == _FORMAT and stored.get("key") == key:
            return [AgentEntry.from_dict(a) for a in stored["agents"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing, unreadable or from another version: build it again
    from orchestrator.agents.registry import AgentRegistry

    entries = [AgentEntry.of(spec) for spec in
               AgentRegistry.default(agents_dir, domains=domains)]
    _write(path, {"format": _FORMAT, "key": key,
                  "agents": [{**asdict(e)} for e in entries]})
    return entries


def fingerprint(agents_dir: Path | None, domains: str | None) -> str:
    """A digest of everything the agents are built from: the entry points of the packs and
    agent plugins (with their distributions' versions and the files of their packages), the
    orchestrator's own agent modules, the cards in ``agents_dir`` and the domains setting."""
    parts: list[Any] = [_FORMAT, domains or "all", str(agents_dir or "")]
    folders = {Path(__file__).parent}
    for group in ("orchestrator.packs", "orchestrator.agents"):
        for ep in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
            dist = getattr(ep, "dist", None)
            parts.append([group, ep.name, ep.value, dist.name if dist else "",
                          dist.version if dist else ""])
            folder = _package_folder(ep.module)
            if folder is not None:
                folders.add(folder)
    for folder in sorted(folders):
        parts.append(_files_state(folder, recursive=folder != Path(__file__).parent))
    if agents_dir is not None:
        cards = _files_state(Path(agents_dir), recursive=False)
        parts.append(cards)
        # the modules a card takes its tools from ("package.module:function")
        for path, _, _ in cards:
            try:
                text = Path(path).read_text("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            for module in sorted(set(_TOOL_REFERENCE.findall(text))):
                folder = _package_folder(module)
                if folder is not None and folder not in folders:
                    folders.add(folder)
                    parts.append(_files_state(folder, recursive=True))
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def _package_folder(module: str) -> Path | None:
    """The folder of ``module``'s top package below ``orchestrator.agents`` (a pack) or its
    top-level package, found without importing the module itself."""
    parts = module.split(".")
    package = ".".join(parts[:3]) if parts[:2] == ["orchestrator", "agents"] else parts[0]
    try:
        return Path(str(resources.files(package)))
    except (ModuleNotFoundError, TypeError, ValueError):
        return None


def _files_state(folder: Path, *, recursive: bool) -> list[tuple[str, int, int]]:
    if not folder.is_dir():
        return [(str(folder), -1, -1)]
    found = folder.rglob("*") if recursive else folder.iterdir()
    state = []
    for path in found:
        if path.suffix in (".py", ".yaml", ".yml", ".json") and "__pycache__" not in path.parts:
            info = path.stat()
            state.append((str(path), info.st_mtime_ns, info.st_size))
    return sorted(state)


def _write(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data), "utf-8")
        temporary.replace(path)  # atomic: a concurrent reader sees the old or the new file
    except OSError:
        pass  # a read-only data folder: the listing still works, only slower next time


def entries_of(specs: Iterable[AgentSpec]) -> list[AgentEntry]:
    return [AgentEntry.of(spec) for spec in specs]
