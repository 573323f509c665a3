"""API keys: who may call the server, for which tenant, with which scopes.

Keys are random (``ok_`` + 32 url-safe bytes) and shown once, when created; the store keeps
only their SHA-256 digest. A fast hash is enough for high-entropy random keys (there is
nothing to guess), and it makes a lookup one indexed query. Revoking takes effect on the next
request, also in a server process started before the revoke.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config import Settings, load_settings
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
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    tenant TEXT NOT NULL,
    scopes TEXT NOT NULL,
    key_sha256 TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys(name)
    WHERE revoked_at IS NULL;
"""


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
    """API keys in SQLite (``keys.sqlite`` in the data folder); thread-safe.

    Example:
        ```python
        keys = KeyStore.from_settings()
        key = keys.create("ci-bot", ["chat"], tenant="payments")   # show it once
        assert keys.verify(key).tenant == "payments"
        keys.revoke("ci-bot")
        ```
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(mode=0o600, exist_ok=True)  # key digests: readable by the owner only
        os.chmod(self.path, 0o600)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False,
                                     isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> KeyStore:
        """The key store of the data folder (``<home>/keys.sqlite``)."""
        return cls((settings or load_settings()).home / "keys.sqlite")

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
        try:
            with self._lock:
                self._conn.execute(
                    "INSERT INTO api_keys (name, tenant, scopes, key_sha256, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (name, tenant, ",".join(sorted(allowed)), digest(key), time.time()))
        except sqlite3.IntegrityError:
            raise ApiKeyError(f"a key named {name!r} exists: revoke it first or pick another "
                              "name") from None
        return key

    def verify(self, key: str) -> KeyInfo | None:
        """The key's info when it is known and not revoked, else None."""
        if not key.startswith(KEY_PREFIX):
            return None
        wanted = digest(key)
        with self._lock:
            row = self._conn.execute(
                "SELECT name, tenant, scopes, created_at, revoked_at, key_sha256 FROM api_keys "
                "WHERE key_sha256 = ?", (wanted,)).fetchone()
        if row is None or not hmac.compare_digest(row[5], wanted) or row[4] is not None:
            return None
        return _info(row)

    def list(self) -> list[KeyInfo]:
        """Every key, revoked ones included, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, tenant, scopes, created_at, revoked_at FROM api_keys "
                "ORDER BY created_at, id").fetchall()
        return [_info(row) for row in rows]

    def revoke(self, name: str) -> KeyInfo:
        """Revoke the active key called ``name``; ApiKeyError when there is none."""
        with self._lock:
            done = self._conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (time.time(), name)).rowcount
            row = self._conn.execute(
                "SELECT name, tenant, scopes, created_at, revoked_at FROM api_keys "
                "WHERE name = ? ORDER BY revoked_at DESC LIMIT 1", (name,)).fetchone()
        if not done:
            raise ApiKeyError(f"no active key named {name!r} (`orchestrator keys list` shows "
                              "them)")
        return _info(row)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _info(row: tuple[Any, ...]) -> KeyInfo:
    name, tenant, scopes, created_at, revoked_at = row[:5]
    return KeyInfo(name=str(name), tenant=str(tenant),
                   scopes=frozenset(str(scopes).split(",")),
                   created_at=float(created_at),
                   revoked=revoked_at is not None)
