"""Synchronous tools run in their own bounded set of daemon threads.

asyncio's default executor is shared with everything else in the process (six threads on a
two-core machine) and ``asyncio.run`` waits for it on exit: a few hung tool calls would
stall every later run and keep ``Orchestrator.run`` from returning. Here each call gets a
daemon thread (a hung one is abandoned at its timeout, never joined), at most ``limit`` at
once per process; the call runs in a copy of the caller's context, so context variables
(the domain database, the write call under way) reach it.

A thread that finished its call waits :data:`IDLE_S` for the next one before it ends:
starting a thread blocks the event loop until the new thread runs, 1-2 ms on a busy
two-core machine, which a server making many calls a second pays on every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

IDLE_S = 30.0
"""How long a tool thread with nothing to do waits for a call before it ends."""

_slots_lock = threading.Lock()
_slots: dict[int, _Slots] = {}
_calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_idle_lock = threading.Lock()
_idle = 0
"""Threads waiting for a call, less the calls handed to them and not yet taken."""


class _Slots:
    """At most ``limit`` calls at once in the process; a call that finds them all taken
    waits in line and is woken when one is given back (by any thread, for any event loop).
    It used to poll every 50 ms: 50 runs reaching their tool calls together waited up to
    that long each, 120 times in 158 requests. A slot given back while calls wait is handed
    to the first of them there and then, so one arriving before it wakes cannot take it:
    first come, first served."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._lock = threading.Lock()
        self._waiting: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    async def take(self) -> None:
        """A slot, waiting (cancellably) in line while there is none."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiting:
                self._free -= 1
                return
            turn: asyncio.Future[None] = loop.create_future()
            self._waiting.append((loop, turn))
        try:
            await turn
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._waiting.remove((loop, turn))
                except ValueError:  # handed a slot already: on to the next
                    handed = True
                else:
                    handed = False
            if handed and not turn.cancelled():
                self.give_back()  # woken, then cancelled before it ran: not its to keep
            raise

    def give_back(self) -> None:
        """Free a slot: the first call waiting for one has it (from any thread)."""
        with self._lock:
            if not self._waiting:
                self._free += 1
                return
            loop, turn = self._waiting.popleft()
        try:
            loop.call_soon_threadsafe(self._hand, turn)
        except RuntimeError:  # its loop is closed: nobody waits there any more
            self.give_back()

    def _hand(self, turn: asyncio.Future[None]) -> None:
        if turn.done():  # cancelled meanwhile: the slot goes to the next
            self.give_back()
        else:
            turn.set_result(None)


def _semaphore(limit: int) -> _Slots:
    with _slots_lock:
        if limit not in _slots:
            _slots[limit] = _Slots(limit)
        return _slots[limit]


async def run_in_tool_thread(fn: Callable[[], T], *, limit: int = 16) -> T:
    """Run ``fn`` in a daemon thread (at most ``limit`` at once) and await its result.

    Cancelling the await (a timeout) abandons the thread: it keeps its slot until ``fn``
    returns, so hung calls can use up the slots but never block the event loop or exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()
    slots = _semaphore(limit)
    await slots.take()  # all slots busy (hung calls, or many runs at once): in line

    def settle(outcome: Any, failed: bool) -> None:
        if future.done():
            return
        if failed:
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def work() -> None:
        try:
            value = context.run(fn)
        except Exception as exc:  # handed to the awaiting task
            _call_soon(loop, settle, exc, True)
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: the tool's, not ours
            failure = RuntimeError(f"the tool raised {type(exc).__name__}: {exc}")
            _call_soon(loop, settle, failure, True)
        else:
            _call_soon(loop, settle, value, False)
        finally:
            slots.give_back()

    _start(work)
    return await future


def _start(work: Callable[[], None]) -> None:
    """Hand ``work`` to an idle tool thread, or to a new one when none is idle."""
    global _idle
    with _idle_lock:
        if _idle > 0:
            _idle -= 1
            _calls.put(work)
            return
    # Handed over in a list the thread empties: the Thread object keeps its arguments for
    # its whole life, and a call's closure holds its run (context, listeners, events).
    threading.Thread(target=_serve, args=([work],), name="orchestrator-tool",
                     daemon=True).start()


def _serve(first: list[Callable[[], None]]) -> None:
    global _idle
    work = first.pop()
    while True:
        work()  # catches what the tool raises: see run_in_tool_thread
        del work  # nothing of that call is kept while the thread waits for the next
        with _idle_lock:
            _idle += 1
        while True:
            try:
                work = _calls.get(timeout=IDLE_S)
                break
            except queue.Empty:
                with _idle_lock:
                    if _idle > 0:  # nobody counted on this thread: it ends
                        _idle -= 1
                        return
                # a call was handed over as the wait ran out: it is on its way


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    # A closed loop: nobody waits for this result any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)
