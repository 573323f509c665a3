"""How many calls a model endpoint takes at once, and time spent waiting for it.

A local server (llama.cpp) has one or two slots: more calls than that queue on the server,
and the queueing counted against the subtask that waits. Here a model that declares its
slots (``metadata["orchestrator_slots"]``, set by a provider from the spec) gets a limiter;
a call waits for a free slot before it is sent, and the wait goes to the enclosing
:func:`waiting_clock`, which the engine leaves out of the subtask's timeout and latency.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Waits:
    """Seconds spent waiting (for a model slot) inside a :func:`waiting_clock` block."""

    seconds: float = 0.0


_waits: ContextVar[Waits | None] = ContextVar("model_slot_waits", default=None)
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]] = \
    weakref.WeakKeyDictionary()


@contextmanager
def waiting_clock(waits: Waits | None = None) -> Iterator[Waits]:
    """Collect into ``waits`` the time calls in this block (and the tasks it starts) wait
    for a model slot."""
    waits = waits if waits is not None else Waits()
    token = _waits.set(waits)
    try:
        yield waits
    finally:
        _waits.reset(token)


def model_of(runnable: Any) -> Any:
    """The chat model under a runnable that binds tools or options to it."""
    while hasattr(runnable, "bound"):
        runnable = runnable.bound
    return runnable


def slots_of(model: Any) -> int | None:
    """The calls ``model``'s endpoint takes at once; None for no limit."""
    slots = (getattr(model_of(model), "metadata", None) or {}).get("orchestrator_slots")
    return int(slots) if slots else None


@asynccontextmanager
async def model_slot(model: Any) -> AsyncIterator[None]:
    """Hold one of ``model``'s slots for a call (no-op for a model without a limit)."""
    slots = slots_of(model)
    if slots is None:
        yield
        return
    loop = asyncio.get_running_loop()
    semaphore = _limiters.setdefault(loop, {}).setdefault(id(model_of(model)),
                                                          asyncio.Semaphore(slots))
    started = time.monotonic()
    async with semaphore:
        waits = _waits.get()
        if waits is not None:
            waits.seconds += time.monotonic() - started
        yield


async def run_within(make: Awaitable[T], limit: float, excluded: Callable[[], float]) -> T:
    """Await ``make`` for at most ``limit`` seconds, not counting the seconds ``excluded()``
    reports (waits for a model slot, a one-off model load); TimeoutError after that."""
    task = asyncio.ensure_future(make)
    started = time.monotonic()
    try:
        while True:
            left = limit - (time.monotonic() - started - excluded())
            if left <= 0:
                raise TimeoutError
            done, _ = await asyncio.wait({task}, timeout=left)
            if done:
                return task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
