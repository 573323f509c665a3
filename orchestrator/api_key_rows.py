"""Where the HTTP server's API keys are kept: ``keys.sqlite`` in the data folder, or the
PostgreSQL database every replica shares. Rows only (digests, names, scopes); what a key
means and may do is ``orchestrator.server.keys``."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from orchestrator.config import DatabaseServer
from orchestrator.errors import ConfigError

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


_BY_DIGEST = ("SELECT name, tenant, scopes, created_at, revoked_at, key_sha256 FROM api_keys "
              "WHERE key_sha256 = ?")


class KeyRows(Protocol):
    """The rows behind ``KeyStore``. Rows read ``name, tenant, scopes, created_at,
    revoked_at`` (and ``key_sha256`` from :meth:`by_digest`)."""

    path: Path | None
    """The SQLite file; None for a database server."""

    def insert(self, name: str, tenant: str, scopes: str, key_sha256: str) -> bool:
        """Add a key; False when an active key already has ``name``."""

    def by_digest(self, key_sha256: str) -> tuple[Any, ...] | None: ...

    def by_digest_at_once(self, key_sha256: str) -> tuple[bool, tuple[Any, ...] | None]:
        """``(True, by_digest(...))`` when it can be read without waiting (for a lock, a
        network); ``(False, None)`` when the caller should ask :meth:`by_digest` from a
        thread."""

    def all(self) -> list[tuple[Any, ...]]: ...

    def revoke(self, name: str) -> tuple[Any, ...] | None:
        """Revoke the active key ``name``; its row, or None when there is none."""

    def close(self) -> None: ...


def open_key_rows(location: str | Path | DatabaseServer) -> KeyRows:
    """The key rows at ``location``: a SQLite file, or a PostgreSQL server."""
    from orchestrator.storage.urls import store_url

    url = store_url(location, what="key store")
    if url.backend == "postgres":
        from orchestrator.storage.postgres_keys import PostgresKeyRows

        return PostgresKeyRows(url)
    if url.path is None:
        raise ConfigError("the key store is a SQLite file or a PostgreSQL server, not memory")
    return SqliteKeyRows(url.path)


class SqliteKeyRows:
    """The rows behind :class:`KeyStore` in ``keys.sqlite`` (readable by its owner only)."""

    def __init__(self, path: Path) -> None:
        self.path: Path | None = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)  # key digests: readable by the owner only
        os.chmod(path, 0o600)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, timeout=60.0, check_same_thread=False,
                                     isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)
        # Reads on the event loop (one a request): WAL lets them go past a writer, and a
        # busy file fails at once (no busy handler), leaving the read to a thread. SQLite
        # may still retry a WAL read briefly inside; a key file is rarely written.
        self._reader_lock = threading.Lock()
        self._reader = sqlite3.connect(path, timeout=0.0, check_same_thread=False,
                                       isolation_level=None)

    def insert(self, name: str, tenant: str, scopes: str, key_sha256: str) -> bool:
        try:
            with self._lock:
                self._conn.execute(
                    "INSERT INTO api_keys (name, tenant, scopes, key_sha256, created_at) "
                    "VALUES (?, ?, ?, ?, ?)", (name, tenant, scopes, key_sha256, time.time()))
        except sqlite3.IntegrityError:
            return False
        return True

    def by_digest(self, key_sha256: str) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._conn.execute(
                _BY_DIGEST, (key_sha256,)).fetchone()
        return row

    def by_digest_at_once(self, key_sha256: str) -> tuple[bool, tuple[Any, ...] | None]:
        if not self._reader_lock.acquire(blocking=False):
            return False, None
        try:
            row: tuple[Any, ...] | None = self._reader.execute(
                _BY_DIGEST, (key_sha256,)).fetchone()
        except sqlite3.OperationalError:  # busy: from a thread, which may wait
            return False, None
        finally:
            self._reader_lock.release()
        return True, row

    def all(self) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(
                "SELECT name, tenant, scopes, created_at, revoked_at FROM api_keys "
                "ORDER BY created_at, id").fetchall()

    def revoke(self, name: str) -> tuple[Any, ...] | None:
        with self._lock:
            done = self._conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (time.time(), name)).rowcount
            row: tuple[Any, ...] | None = self._conn.execute(
                "SELECT name, tenant, scopes, created_at, revoked_at FROM api_keys "
                "WHERE name = ? ORDER BY revoked_at DESC LIMIT 1", (name,)).fetchone()
        return row if done else None

    def close(self) -> None:
        with self._lock, self._reader_lock:
            self._conn.close()
            self._reader.close()
