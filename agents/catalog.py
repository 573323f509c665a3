"""The agent catalog: what each agent is, without building its tools.

Listing the agents (``orchestrator agents``) needs their names, descriptions, skills and
what each tool does, not the tools themselves, whose classes take longer to import than the
whole listing may. The catalog is kept in the data folder with what it was built from: the
inputs (the installed packs and agent plugins with their versions, the agent cards, the
domains setting, ``PYTHONPATH``) and the state of every file that building it read (each
module imported, wherever it lives, and the packs' declared assets). A listing reads it when
all of that is unchanged; anything else builds the registry again, errors included, and
stores the result.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.agents.spec import AgentSpec

CATALOG_FILE = "agent_catalog.json"
_FORMAT = 2


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
    when nothing it was built from changed, else from the registry (then stored)."""
    key = inputs_key(agents_dir, domains)
    path = home / CATALOG_FILE
    try:
        stored = json.loads(path.read_text("utf-8"))
        if (isinstance(stored, dict) and stored.get("format") == _FORMAT
                and stored.get("key") == key and _unchanged(stored["sources"])):
            return [AgentEntry.from_dict(a) for a in stored["agents"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # missing, damaged or from another version: build it again
    from orchestrator.agents.domains import installed_packs
    from orchestrator.agents.registry import AgentRegistry

    entries = [AgentEntry.of(spec) for spec in
               AgentRegistry.default(agents_dir, domains=domains)]
    assets = [p for pack in installed_packs() for p in pack.assets()]
    sources = [_state(f) for f in sorted({*_loaded_files(), *map(str, assets)})]
    _write(path, {"format": _FORMAT, "key": key, "sources": sources,
                  "agents": [asdict(e) for e in entries]})
    return entries


def inputs_key(agents_dir: Path | None, domains: str | None) -> str:
    """A digest of the inputs: the entry points of packs and agent plugins with their
    distributions' versions, the card files in ``agents_dir`` (names, times, sizes), the
    domains setting, ``PYTHONPATH`` and the Python version."""
    parts: list[Any] = [_FORMAT, sys.version, domains or "all", str(agents_dir or ""),
                        os.environ.get("PYTHONPATH", "")]
    for group in ("orchestrator.packs", "orchestrator.agents"):
        for ep in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
            dist = getattr(ep, "dist", None)
            parts.append([group, ep.name, ep.value, dist.name if dist else "",
                          dist.version if dist else ""])
    if agents_dir is not None:
        folder = Path(agents_dir)
        cards = sorted(folder.iterdir()) if folder.is_dir() else []
        parts.append([_state(str(p)) for p in cards] or [str(folder), folder.exists()])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _loaded_files() -> list[str]:
    """The source files of every module loaded so far, the standard library left out (a
    new Python changes :func:`inputs_key`)."""
    paths = sysconfig.get_paths()
    stdlib = tuple(p + os.sep for p in {paths["stdlib"], paths["platstdlib"]})
    installed = tuple(p + os.sep for p in {paths["purelib"], paths["platlib"]})
    found = []
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and os.path.isabs(file) and (
                file.startswith(installed) or not file.startswith(stdlib)):
            found.append(file)
    return found


def _state(path: str) -> tuple[str, int, int]:
    try:
        info = os.stat(path)
    except OSError:
        return (path, -1, -1)
    return (path, info.st_mtime_ns, info.st_size)


def _unchanged(sources: list[list[Any]]) -> bool:
    return all(tuple(_state(path)) == (path, mtime, size) for path, mtime, size in sources)


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


# --- agent card vectors (the planner's shortlist) -------------------------------------------

CARD_VECTORS_FILE = "agent_card_vectors.json"
_MAX_CARD_VECTORS = 4096


def card_vectors(home: Path, embedder: Any, texts: list[str]) -> list[list[float]]:
    """The vectors of agent card ``texts`` by ``embedder`` (an ``Embedder``), read from the
    data folder where they were stored before and embedded (then stored) otherwise.

    Each vector is kept under a digest of the embedder's name and the text itself: a card
    changes only when its agent does, and any change is a new text, so a stored vector is
    never stale and a catalog that did not change embeds nothing.
    """
    path = home / CARD_VECTORS_FILE
    keys = [hashlib.sha256(f"{embedder.name}\0{text}".encode()).hexdigest() for text in texts]
    try:
        stored = json.loads(path.read_text("utf-8"))
        vectors: dict[str, list[float]] = stored["vectors"] if isinstance(stored, dict) and \
            stored.get("format") == _FORMAT else {}
    except (OSError, ValueError, KeyError, TypeError):
        vectors = {}  # missing or damaged: embed again
    missing = [i for i, key in enumerate(keys) if not isinstance(vectors.get(key), list)]
    if missing:
        embedded = embedder.embed_documents([texts[i] for i in missing])
        for i, vector in zip(missing, embedded, strict=True):
            vectors[keys[i]] = [round(float(x), 6) for x in vector]
        for key in keys:  # this catalog's last: other catalogs sharing the folder keep
            vectors[key] = vectors.pop(key)  # theirs up to a bound, oldest dropped first
        kept = list(vectors.items())[-_MAX_CARD_VECTORS:]
        _write(path, {"format": _FORMAT, "vectors": dict(kept)})
    return [vectors[key] for key in keys]
