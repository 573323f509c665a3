"""New runs enter their first steps a few at a time, in the order they came.

An event loop runs its ready tasks in turn, one step each, so runs that start together share
the loop step by step: fifty requests sent at once all reach their first model call only at
the end of the burst, each as late as the last. Through the gate, at most ``width`` runs are
in their first steps at once and the others wait in line (first come, first served): the
first ones reach their model call at once, and the burst's later steps come spread out
instead of all together.

A run leaves the gate where it first waits on the world (:func:`leave_start_gate`: a model
call or a wait for its endpoint's slot, a subtask starting, MCP servers starting) or when it
ends; one that holds its place longer than ``max_hold_s`` (a slow step before any model
call) lets the next run in anyway, so a run never waits in line on one that waits for it.
Resumes do not wait: they hold claims that only their run renews.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager, suppress
from contextvars import ContextVar
from typing import TypeVar

_V = TypeVar("_V")

MAX_HOLD_S = 1.0
"""Longest a run keeps its place before the next one is let in regardless."""


class _Place:
    """A run's place in the gate; given up once (:meth:`leave`)."""

    __slots__ = ("_slots", "_timer")

    def __init__(self, slots: asyncio.Semaphore, max_hold_s: float) -> None:
        self._slots: asyncio.Semaphore | None = slots
        self._timer = asyncio.get_running_loop().call_later(max_hold_s, self.leave)

    @property
    def held(self) -> bool:
        return self._slots is not None

    def leave(self) -> None:
        if self._slots is not None:
            slots, self._slots = self._slots, None
            self._timer.cancel()
            slots.release()


_PLACE: ContextVar[_Place | None] = ContextVar("orchestrator_start_place", default=None)


def leave_start_gate() -> None:
    """The current run waits on the world from here (a model call, a subtask): the next run
    may start. Does nothing outside a run, or once the run has left."""
    place = _PLACE.get()
    if place is not None:
        place.leave()


class StartGate:
    """At most ``width`` runs of one event loop in their first steps at once (0: no limit)."""

    def __init__(self, width: int, max_hold_s: float = MAX_HOLD_S) -> None:
        if width < 0:
            raise ValueError(f"the start gate's width must not be negative, not {width}")
        self.width, self.max_hold_s = width, max_hold_s
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] \
            = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @asynccontextmanager
    async def entered(self) -> AsyncIterator[None]:
        """Wait for a place, hold it for the run inside, give it up at the end at the
        latest. Inside a place still held (a resume from within a start) nothing waits
        again; a run started later from a run's context (once it left) waits as any."""
        inside = _PLACE.get()
        if not self.width or (inside is not None and inside.held):
            yield
            return
        slots = for_loop(self._slots, self._lock, lambda: asyncio.Semaphore(self.width))
        await slots.acquire()
        place = _Place(slots, self.max_hold_s)
        token = _PLACE.set(place)
        try:
            yield
        finally:
            place.leave()
            with suppress(ValueError):  # exited in another context (closed by the GC)
                _PLACE.reset(token)


def for_loop(per_loop: MutableMapping[asyncio.AbstractEventLoop, _V], lock: threading.Lock,
             make: Callable[[], _V]) -> _V:
    """The running loop's entry of a table kept per event loop (made on first use), from any
    thread. Entries of closed loops go when one is added: an asyncio semaphore that had a
    waiter refers to its loop, so a weak key alone never goes."""
    loop = asyncio.get_running_loop()
    found = per_loop.get(loop)
    if found is None:
        with lock:
            found = per_loop.get(loop)
            if found is None:
                for closed in [old for old in list(per_loop) if old.is_closed()]:
                    per_loop.pop(closed, None)
                found = per_loop[loop] = make()
    return found
