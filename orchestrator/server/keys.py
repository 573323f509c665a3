"""API keys: who may call the server, for which tenant, with which scopes.

Keys are random (``ok_`` + 32 url-safe bytes) and shown once, when created; the store keeps
only their SHA-256 digest. A fast hash is enough for high-entropy random keys (there is
nothing to guess), and it makes a lookup one indexed query. Revoking takes effect on the next
request, also in a server process started before the revoke.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread

from orchestrator.api_key_rows import open_key_rows
from orchestrator.config import DatabaseServer, Settings, load_settings
from orchestrator.errors import RequestError

SCOPES = ("chat", "approve", "ingest", "admin")
"""chat: talk to the supervisor; approve: decide paused runs; ingest: change the knowledge
base; admin: manage the server."""
DEFAULT_TENANT = "default"
KEY_PREFIX = "ok_"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TENANT = re.compile(r"[a-z0-9](?:[a-z0-9_]|-(?!-)){0,62}(?<!-)")
"""No ':' (it separates tenant and thread), no '--' and no '-' at the end: a tenant's
collections are stored as ``<tenant>--<name>``, and tenant ``a`` must never read ``a-``'s."""

class ApiKeyError(RequestError):
    """A key cannot be created or revoked as asked (bad name, scope or tenant; unknown name)."""


@dataclass(frozen=True)
class KeyInfo:
    """What a key may do; never the key itself."""

    name: str
    tenant: str
    scopes: frozenset[str]
    created_at: float
    revoked: bool = False

    def allows(self, scope: str) -> bool:
        return not self.revoked and scope in self.scopes


def digest(key: str) -> str:
    """The stored form of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_scopes(scopes: str | Iterable[str]) -> frozenset[str]:
    """Scopes from ``"chat,approve"`` or a list; ApiKeyError for an unknown or empty set."""
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    found = frozenset(s.strip() for s in items if s.strip())
    unknown = sorted(found - set(SCOPES))
    if unknown or not found:
        what = f"unknown scope {', '.join(unknown)}" if unknown else "no scope given"
        raise ApiKeyError(f"{what}: use one or more of {', '.join(SCOPES)}")
    return found


class KeyStore:
    """API keys in SQLite (``keys.sqlite`` in the data folder) or in PostgreSQL (with
    ``ORCHESTRATOR_DATABASE_URL``, shared by every replica); thread-safe.

    Example:
        ```python
        keys = KeyStore.from_settings()
        key = keys.create("ci-bot", ["chat"], tenant="payments")   # show it once
        assert keys.verify(key).tenant == "payments"
        keys.revoke("ci-bot")
        ```

    Args:
        location: The SQLite file, or a ``postgresql://`` URL (a parsed one may carry its
            pool size).
    """

    def __init__(self, location: str | Path | DatabaseServer) -> None:
        self._rows = open_key_rows(location)
        self.path: Path | None = self._rows.path
        """The SQLite file; None in PostgreSQL."""

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> KeyStore:
        """The settings' key store: ``<home>/keys.sqlite``, or ``ORCHESTRATOR_DATABASE_URL``."""
        return cls((settings or load_settings()).stores.keys)

    def create(self, name: str, scopes: str | Iterable[str],
               tenant: str = DEFAULT_TENANT) -> str:
        """A new key for ``tenant`` with ``scopes``; the plaintext is returned only here."""
        if not _NAME.fullmatch(name or ""):
            raise ApiKeyError(f"key name {name!r} must be 1-64 letters, digits or . _ -")
        if not _TENANT.fullmatch(tenant or ""):
            raise ApiKeyError(f"tenant {tenant!r} must be 1-64 lower-case letters, digits, "
                              "_ or -")
        allowed = parse_scopes(scopes)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        if not self._rows.insert(name, tenant, ",".join(sorted(allowed)), digest(key)):
            raise ApiKeyError(f"a key named {name!r} exists: revoke it first or pick another "
                              "name")
        return key

    def verify(self, key: str) -> KeyInfo | None:
        """The key's info when it is known and not revoked, else None (read from the store
        on every call, so a revoke elsewhere counts at once)."""
        if not key.startswith(KEY_PREFIX):
            return None
        wanted = digest(key)
        return _valid(self._rows.by_digest(wanted), wanted)

    async def averify(self, key: str) -> KeyInfo | None:
        """:meth:`verify` from an event loop: read on the loop when the store answers
        without waiting for a lock or a busy file (a local file), else from a thread."""
        if not key.startswith(KEY_PREFIX):
            return None
        wanted = digest(key)
        answered, row = self._rows.by_digest_at_once(wanted)
        if not answered:  # the server's own threads (asyncio's few are shared with runs)
            row = await anyio.to_thread.run_sync(self._rows.by_digest, wanted)
        return _valid(row, wanted)

    def list(self) -> list[KeyInfo]:
        """Every key, revoked ones included, oldest first."""
        return [_info(row) for row in self._rows.all()]

    def revoke(self, name: str) -> KeyInfo:
        """Revoke the active key called ``name``; ApiKeyError when there is none."""
        row = self._rows.revoke(name)
        if row is None:
            raise ApiKeyError(f"no active key named {name!r} (`orchestrator keys list` shows "
                              "them)")
        return _info(row)

    def close(self) -> None:
        self._rows.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _valid(row: tuple[Any, ...] | None, wanted: str) -> KeyInfo | None:
    """The info of a key's row when it is the key asked for and not revoked."""
    if row is None or not hmac.compare_digest(row[5], wanted) or row[4] is not None:
        return None
    return _info(row)


def _info(row: tuple[Any, ...]) -> KeyInfo:
    name, tenant, scopes, created_at, revoked_at = row[:5]
    return KeyInfo(name=str(name), tenant=str(tenant),
                   scopes=frozenset(str(scopes).split(",")),
                   created_at=float(created_at),
                   revoked=revoked_at is not None)
