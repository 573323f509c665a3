"""The PostgreSQL backend's shared parts: connection pools and schema set-up.

Every store (runs, write journal, API keys, checkpoints) opens a small pool of its own
(psycopg_pool), so a process holds a handful of connections whatever its concurrency: at most
the location's ``pool_size`` each (``ORCHESTRATOR_DATABASE_POOL_SIZE``), else the store's
default; a call that finds its pool busy waits for a connection. Our
tables live in the ``orchestrator`` schema of the database; LangGraph's checkpoint tables
keep their own names and migrations. ``orchestrator.schema_versions`` records the version
of each component's tables, so a later release knows what it is upgrading; a database
written by a newer release is refused rather than misread.

Set-up runs on first use and is safe when several processes start at once: it happens in
one transaction behind an advisory lock (:func:`schema_lock`), so one process creates the
tables and the others then find them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from orchestrator.errors import ConfigError
from orchestrator.storage.urls import StoreURL, redact_url, url_password

VARIABLE = "ORCHESTRATOR_DATABASE_URL"
CONNECT_TIMEOUT_S = 10
"""How long opening a connection may take before the server counts as unreachable."""
SCHEMA = "orchestrator"
SCHEMA_LOCK = 0x6F72636865737472
"""The advisory lock key every schema set-up takes (``orchestr`` in ASCII)."""
SCHEMA_LOCK_TIMEOUT_S = 120.0
NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"
"""The database's clock in epoch seconds: leases are set and judged by this one clock, so
machines whose clocks differ agree on when a claim expires."""

Migration = Sequence[str]
"""The statements that bring a component from one version to the next."""


def url_of(location: StoreURL) -> str:
    assert location.backend == "postgres" and location.url is not None
    return location.url


def describe(location: StoreURL, exc: BaseException) -> str:
    """A one-line reason from a driver error, with no password in it."""
    return hide_password(" ".join(str(exc).split()) or type(exc).__name__, url_of(location))


def hide_password(text: str, url: str) -> str:
    """``text`` without ``url``'s password: as written, decoded, or cut where a parser cut a
    password that was not percent-encoded (libpq may quote any of them)."""
    password = url_password(url)
    if not password:
        return text
    pieces = {piece for piece in re.split(r"[/?#@:]", password) if len(piece) >= 4}
    secrets = {password, unquote(password), *pieces}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def config_error(what: str, location: StoreURL, exc: BaseException) -> ConfigError:
    return ConfigError(f"cannot use the {what} at {redact_url(url_of(location))} ({VARIABLE}): "
                       f"{describe(location, exc)}")


def open_pool(location: StoreURL, *, what: str, max_size: int = 8,
              **kwargs: Any) -> ConnectionPool[Any]:
    """A pool of autocommit connections to ``location``, checked now: ConfigError (one line,
    naming :data:`VARIABLE`, password hidden) when the URL is bad or the server unreachable.

    ``kwargs`` go to each connection (e.g. ``row_factory``).
    """
    url = url_of(location)
    options = {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S, **kwargs}
    try:  # one plain connection first: its error says why (the pool's would only time out)
        psycopg.connect(url, **options).close()
    except (psycopg.Error, ValueError) as exc:
        raise config_error(what, location, exc) from None
    # ``check``: a connection the server dropped (a restart, a failover, an idle timeout)
    # is replaced when it is handed out, instead of failing the call that gets it.
    pool: ConnectionPool[Any] = ConnectionPool(url, min_size=1, max_size=max_size, kwargs=options,
                                          check=ConnectionPool.check_connection,
                                          open=False, name=f"orchestrator-{what}")
    try:
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
    except PoolTimeout as exc:
        pool.close()
        raise config_error(what, location, exc) from None
    return pool


@contextmanager
def schema_lock(conn: psycopg.Connection[Any], location: StoreURL, what: str
                ) -> Iterator[None]:
    """Hold the schema set-up lock (a session advisory lock on an autocommit connection).

    Taken by polling ``pg_try_advisory_lock``, not by waiting in ``pg_advisory_lock``: a
    waiting statement holds a snapshot, and LangGraph's set-up (``CREATE INDEX
    CONCURRENTLY``) waits for every snapshot to end, so a waiter would deadlock with it.
    """
    deadline = time.monotonic() + SCHEMA_LOCK_TIMEOUT_S
    while not _try_lock(conn):
        if time.monotonic() > deadline:
            raise ConfigError(f"cannot set up the {what} at {redact_url(url_of(location))} "
                              f"({VARIABLE}): another process held the schema lock for "
                              f"{SCHEMA_LOCK_TIMEOUT_S:g}s")
        time.sleep(0.02)
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))


def _try_lock(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (SCHEMA_LOCK,)).fetchone()
    return bool(row and (row["pg_try_advisory_lock"] if isinstance(row, dict) else row[0]))


def ensure_schema(pool: ConnectionPool[Any], location: StoreURL, *, component: str,
                  migrations: Sequence[Migration], what: str) -> None:
    """Bring ``component``'s tables to ``len(migrations)`` (migration ``i`` takes version
    ``i`` to ``i + 1``), once, under the schema lock; ConfigError when the database holds
    a newer version than this code knows."""
    target = len(migrations)
    try:
        with pool.connection() as conn, schema_lock(conn, location, what), \
                conn.transaction():
            create_schema(conn, SCHEMA)
            conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_versions ("
                         "component TEXT PRIMARY KEY, version INTEGER NOT NULL, "
                         f"updated_at DOUBLE PRECISION NOT NULL DEFAULT {NOW})")
            row = conn.execute(f"SELECT version FROM {SCHEMA}.schema_versions "
                               "WHERE component = %s", (component,)).fetchone()
            have = int(row[0]) if row else 0
            if have > target:
                raise ConfigError(
                    f"the {what} at {redact_url(url_of(location))} ({VARIABLE}) has schema "
                    f"version {have} of {component!r}, newer than this release knows "
                    f"({target}): upgrade the orchestrator")
            for migration in migrations[have:]:
                for statement in migration:
                    conn.execute(statement)
            if have < target:
                conn.execute(
                    f"INSERT INTO {SCHEMA}.schema_versions (component, version) "
                    "VALUES (%s, %s) ON CONFLICT (component) DO UPDATE SET "
                    f"version = excluded.version, updated_at = {NOW}", (component, target))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ConfigError(f"{config_error(what, location, exc)}: grant this user CREATE on "
                          f"the database, or have an administrator CREATE SCHEMA {SCHEMA} "
                          "AUTHORIZATION it") from None
    except psycopg.Error as exc:
        raise config_error(what, location, exc) from None


def create_schema(conn: psycopg.Connection[Any], name: str) -> None:
    """Create schema ``name`` unless it exists: ``CREATE SCHEMA IF NOT EXISTS`` would need
    CREATE on the database even then, which a user given a schema by its administrator
    lacks."""
    row = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (name,)).fetchone()
    if not (row and (next(iter(row.values())) if isinstance(row, dict) else row[0])):
        conn.execute(f"CREATE SCHEMA {name}")


class PostgresStore:
    """What the table-backed stores share: a pool, the schema on first open, transactions."""

    component: str = ""
    migrations: Sequence[Migration] = ()
    what: str = "store"
    max_connections: int = 8
    """The pool's size when the location sets none."""

    def __init__(self, location: StoreURL) -> None:
        self.location = location
        self._pool = open_pool(location, what=self.what,
                               max_size=location.pool_size or self.max_connections)
        try:
            ensure_schema(self._pool, location, component=self.component,
                          migrations=self.migrations, what=self.what)
        except ConfigError:
            self._pool.close()
            raise

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in autocommit (one statement, one transaction); a lost
        connection becomes ``ConnectionError`` (an OSError, which lease renewal retries)."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise ConnectionError(f"the {self.what} at {self.location.redacted}: "
                                  f"{describe(self.location, exc)}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in a transaction, committed when the block ends."""
        with self._connection() as conn, conn.transaction():
            yield conn

    def close(self) -> None:
        self._pool.close()
