"""LangGraph checkpoints in PostgreSQL (langgraph-checkpoint-postgres), pooled.

:class:`PooledPostgresSaver` is LangGraph's synchronous ``PostgresSaver`` over a
``psycopg_pool.ConnectionPool``, with its async methods run on a thread pool of its own (one
hop per call, as the SQLite saver does). That meets the :class:`SharedCheckpointer`
contract plainly: its sync methods work from any thread, its async ones from any event loop
(``AsyncPostgresSaver`` belongs to the loop that made it, and the synchronous API makes a
loop per call). Each call takes its own connection from the pool, so concurrent runs write
in parallel instead of queueing on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from orchestrator.storage.postgres import (
    SCHEMA,
    config_error,
    create_schema,
    describe,
    open_pool,
    schema_lock,
)
from orchestrator.storage.threaded_saver import ThreadedAsyncSaver
from orchestrator.storage.urls import StoreURL

_T = TypeVar("_T")
MAX_CONNECTIONS = 16
"""Connections (and threads) one saver uses at most, checkpoint writes running at once, when
the location sets no ``pool_size``."""


class PooledPostgresSaver(ThreadedAsyncSaver, PostgresSaver):
    """``PostgresSaver`` on a pool, whose async methods work from any event loop."""

    def __init__(self, pool: ConnectionPool[Any], location: StoreURL) -> None:
        super().__init__(pool)
        self.location = location
        # The saver's lock serialises the use of one connection; each call here takes a
        # connection of its own from the pool, so the lock would only make runs queue.
        self.lock = contextlib.nullcontext()  # type: ignore[assignment]
        # One thread per connection: a call beyond that waits in the executor, not in a
        # thread that waits on the pool.
        self._threads = ThreadPoolExecutor(pool.max_size, thread_name_prefix="pg-checkpoints")

    async def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``fn`` on the saver's threads; a lost connection is ``ConnectionError`` (an
        OSError, one line, no password), as from the other stores."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._threads,
                                              functools.partial(fn, *args, **kwargs))
        except psycopg.OperationalError as exc:
            raise ConnectionError(f"the checkpoint store at {self.location.redacted}: "
                                  f"{describe(self.location, exc)}") from exc

    def close(self) -> None:
        """Wait for the calls under way, then close the pool."""
        self._threads.shutdown(wait=True)
        self.conn.close()


class PostgresCheckpointer:
    """``with`` or ``async with PostgresCheckpointer(location) as saver``: a
    :class:`PooledPostgresSaver` whose tables are set up (LangGraph's migrations) on open."""

    def __init__(self, location: StoreURL) -> None:
        self.location = location
        self._saver: PooledPostgresSaver | None = None

    def __enter__(self) -> PooledPostgresSaver:
        # LangGraph's tables (checkpoints, checkpoint_blobs, ...) go in our schema, next to
        # the run store, not in the user's default one: its queries name them unqualified.
        pool = open_pool(self.location, what="checkpoint store",
                         max_size=self.location.pool_size or MAX_CONNECTIONS,
                         prepare_threshold=0, row_factory=dict_row,
                         options=f"-c search_path={SCHEMA}")
        saver = PooledPostgresSaver(pool, self.location)
        try:
            # LangGraph's setup is not safe against itself in another process (both create
            # the tables, both insert the migration rows): one at a time.
            with pool.connection() as conn, schema_lock(conn, self.location,
                                                        "checkpoint store"):
                create_schema(conn, SCHEMA)
                PostgresSaver(conn).setup()
        except psycopg.Error as exc:
            saver.close()
            raise config_error("checkpoint store", self.location, exc) from None
        except BaseException:
            saver.close()
            raise
        self._saver = saver
        return saver

    def __exit__(self, *exc: object) -> None:
        saver, self._saver = self._saver, None
        if saver is not None:
            saver.close()

    async def __aenter__(self) -> PooledPostgresSaver:
        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.__exit__)
