"""The HTTP server's API keys in PostgreSQL: every replica reads the same table, so a key
works on all of them and a revoke is seen by each at its next request (a key is looked up
per request, never cached). Only SHA-256 digests are stored (see
``orchestrator.server.keys``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from orchestrator.storage.postgres import NOW, SCHEMA, PostgresStore

_TABLE = f"{SCHEMA}.api_keys"
_V1 = (f"CREATE TABLE {_TABLE} (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
       "name TEXT NOT NULL, tenant TEXT NOT NULL, scopes TEXT NOT NULL, "
       "key_sha256 TEXT NOT NULL UNIQUE, created_at DOUBLE PRECISION NOT NULL, "
       "revoked_at DOUBLE PRECISION)",
       f"CREATE UNIQUE INDEX api_keys_active_name ON {_TABLE} (name) "
       "WHERE revoked_at IS NULL")
_INFO = "name, tenant, scopes, created_at, revoked_at"


class PostgresKeyRows(PostgresStore):
    """The rows behind ``KeyStore``: insert, look up by digest, list, revoke."""

    component = "api_keys"
    migrations = (_V1,)
    what = "key store"
    max_connections = 4
    path: Path | None = None

    def insert(self, name: str, tenant: str, scopes: str, key_sha256: str) -> bool:
        """Add a key; False when an active key already has ``name``."""
        try:
            with self._connection() as conn:
                conn.execute(f"INSERT INTO {_TABLE} (name, tenant, scopes, key_sha256, "
                             f"created_at) VALUES (%s, %s, %s, %s, {NOW})",
                             (name, tenant, scopes, key_sha256))
        except psycopg.errors.UniqueViolation:
            return False
        return True

    def by_digest(self, key_sha256: str) -> tuple[Any, ...] | None:
        """``name, tenant, scopes, created_at, revoked_at, key_sha256`` of a key, or None."""
        with self._connection() as conn:
            row = conn.execute(f"SELECT {_INFO}, key_sha256 FROM {_TABLE} "
                               "WHERE key_sha256 = %s", (key_sha256,)).fetchone()
        return tuple(row) if row else None

    def by_digest_at_once(self, key_sha256: str) -> tuple[bool, tuple[Any, ...] | None]:
        return False, None  # across the network: from a thread

    def all(self) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            return [tuple(row) for row in conn.execute(
                f"SELECT {_INFO} FROM {_TABLE} ORDER BY created_at, id").fetchall()]

    def revoke(self, name: str) -> tuple[Any, ...] | None:
        """Revoke the active key ``name``; its row, or None when there is none."""
        with self._connection() as conn:
            row = conn.execute(f"UPDATE {_TABLE} SET revoked_at = {NOW} WHERE name = %s "
                               f"AND revoked_at IS NULL RETURNING {_INFO}", (name,)).fetchone()
        return tuple(row) if row else None
