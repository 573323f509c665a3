"""Where a store lives, read from a URL or a path: the one place backends are named."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from orchestrator.config import DatabaseServer
from orchestrator.errors import ConfigError

Backend = Literal["sqlite", "memory", "postgres"]

_MEMORY = frozenset({":memory:", "memory://", "memory:"})
_POSTGRES = frozenset({"postgres", "postgresql"})
_QUERY_PASSWORD = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)


@dataclass(frozen=True)
class StoreURL:
    """A parsed store location: the backend, and for SQLite its file, for PostgreSQL its
    URL."""

    backend: Backend
    """``sqlite`` (a file), ``memory`` (this process only) or ``postgres`` (a server)."""
    path: Path | None = None
    """The SQLite file; None otherwise."""
    url: str | None = None
    """The PostgreSQL connection URL (with its password: never print it, see
    :attr:`redacted`); None otherwise."""
    pool_size: int | None = None
    """PostgreSQL: the most connections this process's pool to it may open
    (``ORCHESTRATOR_DATABASE_POOL_SIZE``); None: the store's own default."""

    @property
    def redacted(self) -> str:
        """The location for messages: the URL without its password, or the path."""
        if self.url is not None:
            return redact_url(self.url)
        return repr(str(self.path)) if self.path is not None else "memory://"

    def __repr__(self) -> str:  # a repr in a traceback or log must not show a password
        return f"StoreURL({self.backend!r}, {self.redacted})"


def store_url(location: str | Path | StoreURL | DatabaseServer, *, what: str = "store"
              ) -> StoreURL:
    """``location`` parsed (:func:`parse_store_url`); a :class:`DatabaseServer` from the
    settings keeps its pool size; a parsed one is returned as it is."""
    if isinstance(location, StoreURL):
        return location
    if isinstance(location, DatabaseServer):
        parsed = parse_store_url(location.url, what=what)
        return replace(parsed, pool_size=location.pool_size)
    return parse_store_url(location, what=what)


def parse_store_url(location: str | Path, *, what: str = "store") -> StoreURL:
    """Read a store location: a path or ``sqlite:///path`` (``sqlite:///:memory:`` too) is
    SQLite; ``:memory:`` or ``memory://`` is in memory; ``postgres://`` and
    ``postgresql://`` are PostgreSQL (the URL is kept as given). Any other scheme is a
    ConfigError.

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
    if scheme in _POSTGRES:
        return StoreURL("postgres", url=text)
    raise ConfigError(f"unknown {what} URL scheme {scheme!r} in {redact_url(text)}: use a "
                      "path, sqlite:///path, postgresql://user@host/db or memory://")


def redact_url(url: str) -> str:
    """The URL, quoted, without its password, for messages."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # e.g. a bad port: show no credentials at all
        return repr(url.split("://", 1)[0] + "://***")
    if password is not None:
        user, _, host = parts.netloc.rpartition("@")
        parts = parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}")
    elif url_password(url) is not None:  # a password holding / ? or #, not percent-encoded
        scheme, rest = url.split("://", 1)
        return repr(f"{scheme}://{rest.split(':', 1)[0]}:***@{rest.rpartition('@')[2]}")
    query = _QUERY_PASSWORD.sub(r"\1***", parts.query)  # ?password=... too
    return repr(parts._replace(query=query).geturl())


def url_password(url: str) -> str | None:
    """The password written in ``url``, or None. A password that is not percent-encoded may
    hold ``/``, ``?`` or ``#``, where a URL parser ends the host part: then it is what lies
    between the user's ``:`` and the last ``@``."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password is not None or "://" not in url:
        return password
    userinfo, at, _ = url.split("://", 1)[1].rpartition("@")
    return userinfo.split(":", 1)[1] if at and ":" in userinfo else None
