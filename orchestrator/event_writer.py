"""A run's events into the run store, as they arrive, one insert per burst.

The graph hands out events one at a time, but they come in bursts: the events of one step
(and of parallel subtasks finishing together) arrive in the same turn of the event loop. The
writer stores each burst in one transaction, at the end of that turn (``call_soon``), so a
run pays a few commits instead of one per event, and an event is still on record before the
loop waits for anything (a model call, a tool, a checkpoint).

A store whose calls cross a network (``BaseRunStore.remote``, e.g. PostgreSQL) is written
from one thread per orchestrator instead, in order, so a round trip never holds up the
other runs on the loop; the run's last burst is waited for before its record ends, and
before each checkpoint of the run (:meth:`EventWriter.unstored`): a step's checkpoint
committed ahead of its events would lose them to a kill, as the resumed run goes on after
that step.

Listeners (``on_event``) are called on the loop after their event is stored, in order, so
a reader woken by one (the server's live stream reads the store) always finds it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future

from orchestrator.events import Event, EventSink
from orchestrator.leases import Owner
from orchestrator.runs import BaseRunStore


class EventWriter:
    """Stores a run's events in bursts and then tells ``on_event``; see the module doc.

    ``executor``: a single-thread executor for a remote store (its order is the events'
    order); None writes on the loop. After a write finds that ``owner`` no longer holds the
    run, :attr:`lost` is True and nothing more is written. An exception from the store or
    from ``on_event`` is kept in :attr:`error` for the run to raise (a callback runs outside
    the run's task).
    """

    def __init__(self, store: BaseRunStore | None, run_id: str, owner: Owner,
                 on_event: EventSink | None, executor: Executor | None = None) -> None:
        self._store = store
        self._run_id = run_id
        self._owner = owner
        self._on_event = on_event
        self._executor = executor if store is not None else None
        self._pending: list[Event] = []
        self._scheduled: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing: deque[tuple[Future[bool], list[Event]]] = deque()
        self.lost = False
        self.error: BaseException | None = None

    def add(self, event: Event) -> None:
        """Queue ``event``; it is written at the end of this turn of the loop."""
        self._pending.append(event)
        if self._scheduled is None:
            self._loop = asyncio.get_running_loop()
            self._scheduled = self._loop.call_soon(self._flush_burst)

    def _flush_burst(self) -> None:
        self._scheduled = None
        batch, self._pending = self._pending, []
        if not batch or self.lost:
            return
        if self._executor is None:
            try:
                stored = self._write(batch)
            except Exception as exc:  # the store failed: the run raises it
                self._fail(exc)
                return
            self._settle(stored, batch)
            return
        future = self._executor.submit(self._write, batch)
        self._writing.append((future, batch))
        loop = self._loop
        assert loop is not None
        # Listeners run in the run's context (e.g. a Temporal activity's), not the thread's.
        context = contextvars.copy_context()
        future.add_done_callback(lambda _: _call_soon(loop, self._deliver, context))

    def unstored(self) -> Awaitable[None] | None:
        """None when every event added so far is stored (nothing to wait for, no round
        trip), else an awaitable that ends once they are (on the event thread, without
        blocking the loop) and raises the store's error if a write failed; a checkpoint
        writer awaits it first (see :data:`~orchestrator.storage.threaded_saver.WRITE_BARRIER`).
        """
        if self._scheduled is not None:  # this turn's burst: under way now, not at turn end
            self._scheduled.cancel()
            self._flush_burst()
        futures = [future for future, _ in self._writing]
        if all(f.done() and f.exception() is None for f in futures):
            return None
        return _stored(futures)

    def flush(self) -> None:
        """Store everything queued or being written, and tell its listeners, before this
        returns (when the run ends; blocks for a remote store's last round trip)."""
        if self._scheduled is not None:
            self._scheduled.cancel()
        self._flush_burst()
        for future, _ in list(self._writing):
            future.exception()  # waits; a failed write is raised by _deliver
        self._deliver()

    def _write(self, batch: list[Event]) -> bool:
        if self._store is None:  # runs are not recorded: nothing to store, listeners hear
            return True
        return self._store.append_events(self._run_id, batch, self._owner)

    def _deliver(self) -> None:
        """Tell listeners of the written bursts, oldest first, stopping at one in flight."""
        while self._writing and self._writing[0][0].done():
            future, batch = self._writing.popleft()
            failed = future.exception()
            if failed is not None:
                self._fail(failed)
            else:
                self._settle(future.result(), batch)

    def _settle(self, stored: bool, batch: list[Event]) -> None:
        if not stored:
            self.lost = True
            return
        if self._on_event is None or self.error is not None:
            return
        try:
            for item in batch:
                self._on_event(item)
        except Exception as exc:  # a listener's bug: the run raises it
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc


async def _stored(futures: list[Future[bool]]) -> None:
    """Once ``futures`` (bursts written in order on one thread) are done; raises the first
    failed one's error."""
    for future in futures:
        await asyncio.wrap_future(future)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None],
               context: contextvars.Context) -> None:
    """``callback`` on ``loop`` from the writer's thread; nothing once the loop is closed
    (the run's :meth:`EventWriter.flush` delivered everything already)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, context=context)
