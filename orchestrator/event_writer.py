"""A run's events into the run store, as they arrive, in bursts written off the event loop.

The graph hands out events one at a time, but they come in bursts: the events of one step
(and of parallel subtasks finishing together) arrive in the same turn of the event loop. The
writer hands each burst, at the end of that turn (``call_soon``), to the orchestrator's one
:class:`BurstQueue` thread, which appends the bursts of every run waiting together in one
transaction: under load many runs share a commit, and no store call (a SQLite commit, a
PostgreSQL round trip) holds up the other runs on the loop. A run's bursts are written in
order; the run waits for its last one before its record ends, and before each checkpoint of
the run (:meth:`EventWriter.unstored`): a step's checkpoint committed ahead of its events
would lose them to a kill, as the resumed run goes on after that step.

Listeners (``on_event``) are called on the loop after their event is stored, in order, so
a reader woken by one (the server's live stream reads the store) always finds it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import queue
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from orchestrator.events import Event, EventSink
from orchestrator.leases import Owner
from orchestrator.runs import BaseRunStore, Burst
from orchestrator.storage.handoff import Handoff, take_lists

T = TypeVar("T")

MAX_BURSTS = 64
"""Most bursts one transaction takes (a bound on how long it holds the store's write lock)."""


class BurstQueue:
    """One thread that appends the bursts of every run to ``store``: those queued together
    go in one transaction (:meth:`BaseRunStore.append_bursts`), in the order queued."""

    def __init__(self, store: BaseRunStore, *, max_bursts: int = MAX_BURSTS) -> None:
        self._jobs: queue.SimpleQueue[list[_Job | _StoreCall[Any]] | None] = queue.SimpleQueue()
        self._handoff: Handoff[_Job | _StoreCall[Any]] = Handoff(self._jobs)
        self._closed = False
        self._closing = threading.Lock()  # no burst queued behind the stop (never served)
        jobs = self._jobs
        # The thread holds the queue weakly: one dropped without close() is still
        # collected, and its thread then ends.
        self._thread = threading.Thread(
            target=_serve, args=(weakref.ref(self, lambda _: jobs.put(None)), jobs, store,
                                 max_bursts), name="run-events", daemon=True)
        self._thread.start()

    def submit(self, burst: Burst, *, then: Callable[[], None] | None = None) -> Future[bool]:
        """Queue ``burst``; the future is done once its transaction is committed (True,
        False when its owner no longer held the run, or the store's error). ``then`` is
        called after that on the calling event loop, in the caller's context: the thread
        wakes each loop once for all the bursts of a transaction, not once a burst."""
        future: Future[bool] = Future()
        # Running from now on: nothing can cancel it (the thread would die setting its
        # result); a run waits for it through unstored()'s loop future, never this one.
        future.set_running_or_notify_cancel()
        notice = None if then is None else _Notice(
            asyncio.get_running_loop(), then, contextvars.copy_context())
        with self._closing:
            if self._closed:
                raise RuntimeError("the run store's event thread is closed")
            self._handoff.put((burst, future, notice))
        return future

    def call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """``fn()`` (a call of the run store) on the event thread, after the bursts queued
        before it; the future is of the calling loop. The store's other writes happen on
        this thread, so the call does not wait for the store's lock, nor for a free thread
        of asyncio's executor: at 50 runs at once, a run's start and end waited 15 ms on
        average for a thread there and 8 ms more for the lock, each time."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._closing:
            if self._closed:
                raise RuntimeError("the run store's event thread is closed")
            self._handoff.put(_StoreCall(fn, future))
        return future

    def hand_over(self) -> None:
        """Give the thread now what waits for the end of a loop's turn (for a caller about
        to block its loop until its bursts are written)."""
        self._handoff.flush()

    def close(self) -> None:
        """Write the bursts already queued, then stop the thread."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._handoff.close(None)
        self._thread.join()


def _serve(owner: weakref.ref[BurstQueue],
           jobs: queue.SimpleQueue[list[_Job | _StoreCall[Any]] | None],
           store: BaseRunStore, max_bursts: int) -> None:
    """The event thread: the bursts waiting, one transaction at a time, until stopped."""
    stopping = False
    rest: list[_Job | _StoreCall[Any]] = []
    while rest or not stopping:
        item = rest or jobs.get()
        if item is None or owner() is None:
            return
        batch, rest, stopped = take_lists(jobs, item, max_bursts, None)
        stopping = stopping or stopped
        _run_batch(store, batch)
        del batch, item  # nothing of the last runs kept alive while the thread waits


def _run_batch(store: BaseRunStore, batch: list[_Job | _StoreCall[Any]]) -> None:
    """The jobs of ``batch`` in order: the bursts between two store calls in one
    transaction, each call on its own; then each event loop woken once for all of them (in
    a function of its own, so the thread keeps no future, and so no run, once it is done).
    """
    notices: dict[asyncio.AbstractEventLoop, list[_Notice]] = {}
    bursts: list[_Job] = []
    for job in batch:
        if isinstance(job, _StoreCall):
            if bursts:  # told before the call runs: a checkpoint waiting for them goes on
                _write_batch(store, bursts, notices)
                _post(notices)
                bursts = []
            job.run(notices)
        else:
            bursts.append(job)
    if bursts:
        _write_batch(store, bursts, notices)
    _post(notices)


def _post(notices: dict[asyncio.AbstractEventLoop, list[_Notice]]) -> None:
    """Wake each loop once for its ``notices`` (then emptied)."""
    for loop, waiting in notices.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: flush() told them already
            loop.call_soon_threadsafe(_tell, waiting)
    notices.clear()


def _write_batch(store: BaseRunStore, batch: list[_Job],
                 notices: dict[asyncio.AbstractEventLoop, list[_Notice]]) -> None:
    """Append ``batch`` in one transaction, settle each burst's future and note its
    ``then`` in ``notices``."""
    done: list[bool | BaseException]
    try:
        done = list(store.append_bursts([burst for burst, _, _ in batch]))
    except BaseException as exc:  # the store failed (any way: the thread must go on,
        done = [exc] * len(batch)  # or every later burst waits for good)
    if len(done) != len(batch):
        done = [RuntimeError(f"the run store answered {len(done)} outcomes for "
                             f"{len(batch)} bursts: fix its append_bursts")] * len(batch)
    for (_, future, notice), outcome in zip(batch, done, strict=True):
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
        if notice is not None:
            notices.setdefault(notice.loop, []).append(notice)


def _tell(notices: list[_Notice]) -> None:
    """Each burst's ``then``, in its own context; one that raises does not keep the others
    from theirs (the loop's exception handler reports it)."""
    for i, notice in enumerate(notices):
        try:
            notice.context.run(notice.then)
        except Exception as exc:
            notice.loop.call_exception_handler({
                "message": "a run's event listener raised", "exception": exc})
        except BaseException:  # the others are still told, on the loop's next turn
            if notices[i + 1:]:
                notice.loop.call_soon(_tell, notices[i + 1:])
            raise


def _settable(exc: BaseException) -> BaseException:
    """``exc`` as a future can hold it (asyncio refuses StopIteration)."""
    if isinstance(exc, StopIteration):
        return RuntimeError(f"the run store raised StopIteration: {exc}")
    return exc


@dataclass(frozen=True)
class _Notice:
    """What to call, on which loop and in which context, once a burst is written."""

    loop: asyncio.AbstractEventLoop
    then: Callable[[], None]
    context: contextvars.Context


_Job = tuple[Burst, Future[bool], _Notice | None]


class _StoreCall(Generic[T]):
    """A store call queued on the event thread, and the loop future waiting for it."""

    def __init__(self, fn: Callable[[], T], future: asyncio.Future[T]) -> None:
        self.fn = fn
        self.future = future

    def run(self, notices: dict[asyncio.AbstractEventLoop, list[_Notice]]) -> None:
        if self.future.cancelled():  # its caller gave up before it began (as to_thread)
            return
        outcome: Any
        try:
            outcome, failed = self.fn(), False
        except BaseException as exc:  # the caller's to raise; the thread goes on
            outcome, failed = exc, True
        future = self.future
        loop = future.get_loop()
        notices.setdefault(loop, []).append(_Notice(loop, functools.partial(
            _settle_call, future, outcome, failed), contextvars.Context()))


def _settle_call(future: asyncio.Future[Any], outcome: Any, failed: bool) -> None:
    if future.done():  # its caller was cancelled (the call happened all the same)
        return
    if failed:
        future.set_exception(_settable(outcome))
    else:
        future.set_result(outcome)


class EventWriter:
    """Stores a run's events in bursts and then tells ``on_event``; see the module doc.

    ``bursts``: the orchestrator's event thread (None: no run store, so nothing is written
    and listeners hear each burst at once). After a write finds that ``owner`` no longer
    holds the run, :attr:`lost` is True and nothing more is written. An exception from the
    store or from ``on_event`` is kept in :attr:`error` for the run to raise (a callback
    runs outside the run's task). ``on_trouble`` is called when either happens, for the run
    to stop at once.
    """

    def __init__(self, bursts: BurstQueue | None, run_id: str, owner: Owner,
                 on_event: EventSink | None, *,
                 on_trouble: Callable[[], None] | None = None) -> None:
        self._bursts = bursts
        self._on_trouble = on_trouble
        self._run_id = run_id
        self._owner = owner
        self._on_event = on_event
        self._pending: list[Event] = []
        self._scheduled: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing: deque[tuple[Future[bool], list[Event]]] = deque()
        self._submitted = self._delivered = 0  # bursts handed to the event thread; told
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        """Who waits until this many bursts are written (:meth:`unstored`)."""
        self._added = self._heard = 0  # events added; events told (or dropped)
        self._then: deque[tuple[int, Callable[[], None]]] = deque()
        self.lost = False
        self.error: BaseException | None = None

    def add(self, event: Event) -> None:
        """Queue ``event``; it is written at the end of this turn of the loop."""
        self._pending.append(event)
        self._added += 1
        if self._scheduled is None:
            self._loop = asyncio.get_running_loop()
            self._scheduled = self._loop.call_soon(self._flush_burst)

    def _flush_burst(self) -> None:
        self._scheduled = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self.lost:
            self._told(len(batch))
            return
        if self._bursts is None:  # runs are not recorded: nothing to store
            self._settle(True, batch)
            self._told(len(batch))
            return
        try:
            # Told on this loop, in the run's context (e.g. a Temporal activity's).
            future = self._bursts.submit(Burst(self._run_id, batch, self._owner),
                                         then=self._deliver)
        except RuntimeError as exc:  # the orchestrator closed under the run: not a silent loss
            self._fail(exc)
            self._told(len(batch))
            return
        self._writing.append((future, batch))
        self._submitted += 1

    def unstored(self) -> Awaitable[None] | None:
        """None when every event added so far is stored (nothing to wait for, no round
        trip), else an awaitable that ends once they are (on the event thread, without
        blocking the loop) and raises the store's error if a write failed; a checkpoint
        writer awaits it first (see :data:`~orchestrator.storage.threaded_saver.WRITE_BARRIER`).
        """
        if self._scheduled is not None:  # this turn's burst: under way now, not at turn end
            self._scheduled.cancel()
            self._flush_burst()
        if all(f.done() and f.exception() is None for f, _ in self._writing):
            return None
        if self._bursts is not None:  # a checkpoint waits on them: not until the turn ends
            self._bursts.hand_over()
        # Woken by _deliver, which the event thread calls once a transaction is done (one
        # wake-up of the loop for all its bursts, not one for each burst waited for).
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._submitted, waiter))
        return waiter

    async def drain(self) -> None:
        """Store everything queued or being written and tell its listeners, without
        blocking the loop (a failed write is then in :attr:`error`)."""
        waiting = self.unstored()
        if waiting is not None:
            with contextlib.suppress(Exception):  # _deliver keeps it in self.error
                await waiting
        self._deliver()

    def flush(self) -> None:
        """Store everything queued or being written, and tell its listeners, before this
        returns (blocking: where the run cannot await, as it ends cancelled)."""
        if self._scheduled is not None:
            self._scheduled.cancel()
        self._flush_burst()
        if self._bursts is not None:  # at once: this loop is blocked until they are done
            self._bursts.hand_over()
        for future, _ in list(self._writing):
            future.exception()  # waits; a failed write is raised by _deliver
        self._deliver()

    def _deliver(self) -> None:
        """Tell listeners of the written bursts, oldest first, stopping at one in flight,
        and wake who waits for them (:meth:`unstored`)."""
        while self._writing and self._writing[0][0].done():
            future, batch = self._writing.popleft()
            failed = future.exception()
            self._wake(self._delivered, None)  # those waiting for the bursts before it
            self._delivered += 1
            if failed is not None:
                self._fail(failed)
                self._wake(0, failed)  # every one still waiting waits for this one too
            else:
                self._settle(future.result(), batch)
            self._told(len(batch))
        self._wake(self._delivered, None)

    def _wake(self, delivered: int, failed: BaseException | None) -> None:
        """Settle the waiters for at most ``delivered`` bursts (all of them, with ``failed``:
        the store's error)."""
        left: deque[tuple[int, asyncio.Future[None]]] = deque()
        for upto, waiter in self._waiters:
            if waiter.done():  # its caller was cancelled
                continue
            if failed is not None:
                waiter.set_exception(_settable(failed))
            elif upto <= delivered:
                waiter.set_result(None)
            else:
                left.append((upto, waiter))
        self._waiters = left

    def then(self, callback: Callable[[], None]) -> None:
        """``callback`` once the listeners were told every event added so far (at once when
        they were): a piece of the answer never overtakes the events before it."""
        if self._heard == self._added:
            callback()
        else:
            self._then.append((self._added, callback))

    def _told(self, count: int) -> None:
        self._heard += count
        while self._then and self._then[0][0] <= self._heard:
            try:
                self._then.popleft()[1]()
            except Exception as exc:  # a listener's bug: the run raises it
                self._fail(exc)

    def _settle(self, stored: bool, batch: list[Event]) -> None:
        if not stored:
            self.lost = True
            self._trouble()
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
            self._trouble()

    def _trouble(self) -> None:
        if self._on_trouble is not None:
            self._on_trouble()


