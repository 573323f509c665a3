"""One long-lived checkpointer for an owner such as the ``Orchestrator``.

Opening a connection and compiling a graph per run costs milliseconds, and with SQLite one
connection per concurrent run makes the runs fight for the file's write lock (100
concurrent runs lost requests to ``database is locked``). A :class:`SharedCheckpointer`
opens its checkpointer once, on first use, and every run shares it until :meth:`close`.

The savers it opens work from any event loop (the SQLite one runs its statements on a thread
of its own, the PostgreSQL one on a pool of threads and connections), so one serves the
synchronous API too, where each call has a loop of its own.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver

from orchestrator.config import DatabaseServer
from orchestrator.storage.factory import CheckpointerScope, open_checkpointer
from orchestrator.storage.urls import StoreURL, store_url


class SharedCheckpointer:
    """A checkpointer opened on first use and shared until :meth:`close`; thread-safe.

    Args:
        location: A path, ``sqlite:///path``, ``postgresql://...``, ``:memory:`` /
            ``memory://``; checked at once (ConfigError for an unknown scheme).
    """

    def __init__(self, location: str | Path | StoreURL | DatabaseServer) -> None:
        self.location = store_url(location, what="checkpointer")
        self._lock = threading.Lock()
        self._scope: CheckpointerScope | None = None
        self._saver: BaseCheckpointSaver | None = None

    def saver(self) -> BaseCheckpointSaver:
        """The checkpointer, opened now if it is not open (which blocks for that once)."""
        saver = self._saver
        if saver is not None:
            return saver
        with self._lock:
            if self._saver is None:
                scope = open_checkpointer(self.location)
                self._saver = scope.__enter__()
                self._scope = scope
            return self._saver

    async def asaver(self) -> BaseCheckpointSaver:
        """:meth:`saver` without blocking the event loop while it opens."""
        return self._saver if self._saver is not None else await asyncio.to_thread(self.saver)

    def close(self) -> None:
        """Close the checkpointer (a later :meth:`saver` opens it again; in-memory threads are
        then gone). Runs still using it fail, so close when they are done."""
        with self._lock:
            scope, self._scope, self._saver = self._scope, None, None
        if scope is not None:
            scope.__exit__(None, None, None)

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop."""
        await asyncio.to_thread(self.close)
