"""How many calls a model endpoint takes at once, and time spent waiting for it.

A local server (llama.cpp) has one or two slots: more calls than that queue on the server,
and the queueing counted against the subtask that waits. Here a model that declares its
slots (``metadata["orchestrator_slots"]``, set by a provider from the spec) gets a limiter;
a call waits for a free slot before it is sent, and the wait goes to the enclosing
:func:`waiting_clock`, which the engine leaves out of the subtask's timeout and latency.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.language_models import BaseLanguageModel

from orchestrator.start_gate import for_loop, leave_start_gate

T = TypeVar("T")


@dataclass
class Waits:
    """Seconds spent waiting (for a model slot) inside a :func:`waiting_clock` block,
    the wait under way included."""

    done: float = 0.0
    since: float | None = None
    """When the wait under way began (monotonic), None when nothing waits."""

    @property
    def seconds(self) -> float:
        return self.done + (time.monotonic() - self.since if self.since is not None else 0.0)


_waits: ContextVar[Waits | None] = ContextVar("model_slot_waits", default=None)
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = \
    weakref.WeakKeyDictionary()
"""Per event loop (asyncio semaphores belong to one), per endpoint: the limit holds for the
calls of one loop, which is all of them in a server or an ``async`` program; the synchronous
API runs each request in a loop of its own."""
_limiters_lock = threading.Lock()


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
    # A model has no ``bound``: asking it would go through pydantic's slow __getattr__.
    while not isinstance(runnable, BaseLanguageModel) and hasattr(runnable, "bound"):
        runnable = runnable.bound
    return runnable


def slots_of(model: Any) -> int | None:
    """The calls ``model``'s endpoint takes at once; None for no limit."""
    slots = (getattr(model_of(model), "metadata", None) or {}).get("orchestrator_slots")
    return int(slots) if slots else None


def endpoint_of(model: Any) -> str:
    """What shares the slots: the endpoint a provider names (``orchestrator_endpoint``),
    else the model object itself."""
    inner = model_of(model)
    return str((getattr(inner, "metadata", None) or {}).get("orchestrator_endpoint")
               or f"object:{id(inner)}")


@asynccontextmanager
async def model_slot(model: Any) -> AsyncIterator[None]:
    """Hold one of ``model``'s slots for a call (no-op for a model without a limit)."""
    leave_start_gate()  # the run waits on the model (or its endpoint) from here
    slots = slots_of(model)
    if slots is None:
        yield
        return
    semaphore = for_loop(_limiters, _limiters_lock, dict).setdefault(
        endpoint_of(model), asyncio.Semaphore(slots))
    waits = _waits.get()
    started = time.monotonic()
    if waits is not None:
        waits.since = started
    try:
        await semaphore.acquire()
    finally:
        if waits is not None:
            waits.done += time.monotonic() - started
            waits.since = None
    try:
        yield
    finally:
        semaphore.release()


async def run_within(make: Awaitable[T], limit: float, excluded: Callable[[], float],
                     hard_limit: float | None = None) -> T:
    """Await ``make`` for at most ``limit`` seconds, not counting the seconds ``excluded()``
    reports (waits for a model slot, a one-off model load), and never past ``hard_limit``
    seconds of wall time (the run's own limit); TimeoutError after that."""
    task = asyncio.ensure_future(make)
    started = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            left = limit - (now - started - excluded())
            if hard_limit is not None:
                left = min(left, hard_limit - (now - started))
            if left <= 0:
                raise TimeoutError
            done, _ = await asyncio.wait({task}, timeout=left)
            if done:
                return task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
