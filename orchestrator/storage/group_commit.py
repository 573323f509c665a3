"""Group commit: one thread runs a connection's writes in turn and commits them together.

Under load many runs write checkpoints at once. Committed one by one, each write pays a
commit and a wait for its turn on the one connection, and a run that waits for its write
(durability "sync") waits for all the writes queued before it. This worker takes
every call already waiting, runs each in a savepoint of one transaction, commits once, and
only then tells each caller it is done: a call still returns after its write is committed,
but a batch of N writes costs one commit and one thread hop instead of N.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrator.storage.handoff import Handoff, take_lists

_T = TypeVar("_T")

MAX_BATCH = 64
"""Most calls one transaction takes (a bound on how long the file's write lock is held)."""


@dataclass
class _Call:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    ok: bool = False
    value: Any = None


_STOP = object()


class GroupCommitter:
    """Runs calls on one thread of its own, holding ``lock`` (the store's, re-entrant) for
    a whole batch; the calls waiting together share one transaction on ``conn``, each in
    its own savepoint, committed before any of their callers resumes.

    The calls must not commit themselves while :meth:`in_batch` is true (the store asks it
    before committing). A call that raises fails alone (its savepoint is rolled back); a
    commit that fails fails every call of the batch.
    """

    def __init__(self, conn: sqlite3.Connection, lock: AbstractContextManager[Any], *, name: str,
                 max_batch: int = MAX_BATCH) -> None:
        self._conn = conn
        self._lock = lock
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._handoff: Handoff[_Call] = Handoff(self._queue)
        jobs = self._queue
        # The thread holds the committer weakly: a store dropped without close() is still
        # collected (its connection closed), and the thread then ends.
        self._thread = threading.Thread(
            target=_serve, args=(weakref.ref(self, lambda _: jobs.put(_STOP)), jobs),
            name=name, daemon=True)
        self._closed = False
        self._thread.start()

    def in_batch(self) -> bool:
        """Whether the caller is this worker, inside a batch (so it must not commit)."""
        return threading.current_thread() is self._thread

    def submit(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> asyncio.Future[_T]:
        """Queue ``fn(*args, **kwargs)`` (after every call queued before from this loop;
        the calls of a turn of the loop reach the worker together, at its end); the future,
        of the running loop, is done once its batch is committed."""
        self._check_open()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._handoff.put(_Call(lambda: fn(*args, **kwargs), future, loop))
        return future

    async def call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``fn(*args, **kwargs)`` on the worker; returns once its batch is committed."""
        return await self.submit(fn, *args, **kwargs)

    def close(self) -> None:
        """Finish the calls already queued, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._handoff.close(_STOP)
            self._thread.join()

    def _check_open(self) -> None:
        if self._closed:
            raise sqlite3.ProgrammingError("the store is closed")

    def _take(self, first: list[_Call]) -> tuple[list[_Call], list[_Call], bool]:
        """A batch from ``first`` and the calls queued behind it, the calls left for the
        next batch, and whether to stop once they are done."""
        return take_lists(self._queue, first, self._max_batch, _STOP)

    def _batch(self, batch: list[_Call]) -> None:
        with self._lock:
            self._run(batch)
        _settle_all(batch)

    def _run(self, batch: list[_Call]) -> None:
        if len(batch) == 1:  # alone: its own transaction, no savepoint needed
            self._run_alone(batch[0])
            return
        try:  # one transaction: releasing the savepoints inside it does not commit
            if not self._conn.in_transaction:
                self._conn.execute("BEGIN")
        except sqlite3.Error as exc:
            for call in batch:
                call.value = exc
            return
        for call in batch:
            try:
                self._conn.execute("SAVEPOINT group_call")
            except sqlite3.Error as exc:
                call.value = exc
                continue
            try:
                call.value, call.ok = call.fn(), True
            except BaseException as exc:  # handed to its caller
                call.value = exc
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK TO group_call")
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("RELEASE group_call")
        try:
            self._conn.commit()
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):  # the commit's error is the one to report
                self._conn.rollback()
            for call in batch:
                if call.ok:
                    call.value, call.ok = exc, False


    def _run_alone(self, call: _Call) -> None:
        try:
            call.value, call.ok = call.fn(), True
        except BaseException as exc:  # handed to its caller
            call.value = exc
            with contextlib.suppress(sqlite3.Error):
                self._conn.rollback()
            return
        try:
            self._conn.commit()
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.rollback()
            call.value, call.ok = exc, False


def _serve(owner: weakref.ref[GroupCommitter], jobs: queue.SimpleQueue[Any]) -> None:
    """The worker thread: a batch at a time, until stopped or its committer is gone."""
    stopping = False
    rest: list[_Call] = []
    while rest or not stopping:
        item = rest or jobs.get()
        committer = owner()
        if item is _STOP or committer is None:
            return
        batch, rest, stopped = committer._take(item)
        stopping = stopping or stopped
        committer._batch(batch)
        del committer, batch, item  # nothing of the store kept alive while the thread waits


def _settle_all(batch: list[_Call]) -> None:
    """Resume the callers: one wake-up of each event loop for its calls of the batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
    for call in batch:
        by_loop.setdefault(call.loop, []).append(call)
    for loop, calls in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, calls)


def _settle(calls: list[_Call]) -> None:
    for call in calls:
        if call.future.done():  # its caller was cancelled
            continue
        if call.ok:
            call.future.set_result(call.value)
        else:
            call.future.set_exception(call.value)
