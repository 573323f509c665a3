"""Work for a store's thread, handed over once per turn of each event loop.

Putting an item on a thread's queue wakes the thread when it waits there: a futex wake,
and on a busy machine often a context switch away from the event loop while it holds the
GIL. Under load the loop queues many items a turn (the checkpoints and events of many
runs), so :class:`Handoff` gathers what a loop queues during one turn and puts it on the
queue as one list at the end of the turn (``call_soon``): the thread wakes once a turn, and
takes the lists waiting together as one batch (:func:`take_lists`). Off an event loop an
item goes at once.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Generic, TypeVar

_J = TypeVar("_J")


class Handoff(Generic[_J]):
    """Puts items on ``jobs`` in lists: a loop's items of one turn together, in order."""

    def __init__(self, jobs: queue.SimpleQueue[Any]) -> None:
        self._jobs = jobs
        self._lock = threading.Lock()
        self._waiting: dict[asyncio.AbstractEventLoop, list[_J]] = {}

    def put(self, item: _J) -> None:
        """Queue ``item`` behind those queued before it from the same loop (at once when
        no loop runs in this thread)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._jobs.put([item])
            return
        with self._lock:
            waiting = self._waiting.get(loop)
            first = waiting is None
            if waiting is None:
                waiting = self._waiting[loop] = []
            waiting.append(item)
        if first:
            loop.call_soon(self._hand, loop)

    def flush(self) -> None:
        """Put every loop's items now: before a caller blocks its loop until they are done
        (their turn's end would never come), and before the thread is told to stop."""
        with self._lock:
            self._put_waiting()

    def close(self, stop: object) -> None:
        """Put every loop's items, then ``stop``: nothing handed over later (a turn's end
        racing this call) can land behind it unserved."""
        with self._lock:
            self._put_waiting()
            self._jobs.put(stop)

    def _put_waiting(self) -> None:  # under the lock
        for items in self._waiting.values():
            self._jobs.put(items)
        self._waiting.clear()

    def _hand(self, loop: asyncio.AbstractEventLoop) -> None:
        # Put under the lock: close() cannot slip its stop in between the two.
        with self._lock:
            items = self._waiting.pop(loop, None)
            if items:
                self._jobs.put(items)


def take_lists(jobs: queue.SimpleQueue[Any], first: list[_J], limit: int, stop: object
               ) -> tuple[list[_J], list[_J], bool]:
    """A batch of at most ``limit`` items: those of ``first`` and of the lists already
    queued behind it, without waiting. Also returned: the rest of the last list taken (the
    next batch starts with it, before anything queued later), and whether ``stop`` came
    (the worker ends once the rest is done)."""
    batch, rest = first[:limit], first[limit:]
    while not rest and len(batch) < limit:
        try:
            items = jobs.get_nowait()
        except queue.Empty:
            break
        if items is stop:
            return batch, rest, True
        room = limit - len(batch)
        batch.extend(items[:room])
        rest = items[room:]
    return batch, rest, False
