"""Where a store lives, read from a URL or a path: the one place backends are named."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from orchestrator.errors import ConfigError

Backend = Literal["sqlite", "memory"]

_MEMORY = frozenset({":memory:", "memory://", "memory:"})
_LATER = frozenset({"postgres", "postgresql"})


@dataclass(frozen=True)
class StoreURL:
    """A parsed store location: the backend, and for SQLite its file."""

    backend: Backend
    """``sqlite`` (a file) or ``memory`` (this process only)."""
    path: Path | None = None
    """The SQLite file; None in memory."""


def parse_store_url(location: str | Path, *, what: str = "store") -> StoreURL:
    """Read a store location: a path or ``sqlite:///path`` (``sqlite:///:memory:`` too) is
    SQLite; ``:memory:`` or ``memory://`` is in memory. ``postgres://`` and ``postgresql://``
    are ConfigError until their backend module lands; so is any other scheme.

    ``what`` names the store in error messages (e.g. ``"checkpointer"``).

    Example:
        ```python
        parse_store_url("sqlite:////var/lib/orchestrator/runs.sqlite").path
        # PosixPath('/var/lib/orchestrator/runs.sqlite')
        ```
    """
    if isinstance(location, Path):
        return StoreURL("sqlite", location)
    text = location.strip()
    if not text:
        raise ConfigError(f"the {what} location is empty: give a path or a URL such as "
                          "sqlite:///path/to/file.sqlite or memory://")
    if text in _MEMORY:
        return StoreURL("memory")
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if not scheme:
        return StoreURL("sqlite", Path(text).expanduser())
    if scheme == "sqlite":
        rest = text.split("://", 1)[1]
        if not rest.startswith("/"):  # sqlite://host/... names a host, which SQLite has not
            raise ConfigError(f"{what} URL {text!r}: write sqlite:///relative/path or "
                              "sqlite:////absolute/path (three slashes, then the path)")
        path = rest[1:]
        if path in ("", ":memory:"):
            return StoreURL("memory")
        return StoreURL("sqlite", Path(path).expanduser())
    if scheme == "memory":
        return StoreURL("memory")
    if scheme in _LATER:
        raise ConfigError(f"the {what} URL {_redacted(text)} asks for PostgreSQL, which is not "
                          "available yet: use a SQLite path or sqlite:///path for now")
    raise ConfigError(f"unknown {what} URL scheme {scheme!r} in {_redacted(text)}: use a path, "
                      "sqlite:///path or memory://")


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return repr(url)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return repr(parts._replace(netloc=netloc).geturl())
