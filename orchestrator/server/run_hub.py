"""The runs the native API started in this server process: their tasks, so a run can be
cancelled, and a wake-up for the readers of their live events.

Events are never kept here: the run store has each one the moment it happens (the engine
stores it before it calls ``on_event``), and a live stream reads them back from there. The
hub only says when there is something new to read, so a reader need not poll a run that
this process runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request

from orchestrator.errors import OrchestratorError
from orchestrator.events import Event, EventSink
from orchestrator.results import RunResult

log = logging.getLogger(__name__)

_T = TypeVar("_T")


def kept(work: Awaitable[_T], keep: set[asyncio.Task[Any]]) -> asyncio.Task[_T]:
    """``work`` in a task of its own, held in ``keep`` (the app's runs in flight, which it
    waits for on shutdown) until it ends: a request that is cancelled or whose client left
    does not stop it."""
    task = asyncio.ensure_future(work)
    keep.add(task)
    task.add_done_callback(keep.discard)
    return task


RunWork = Callable[[EventSink], Awaitable[RunResult]]
"""Starts a run given where its events go: ``lambda on_event: orch.arun(..., on_event=...)``."""


class RunHub:
    """Runs in flight in this process, by run id."""

    def __init__(self, keep: set[asyncio.Task[Any]]) -> None:
        """``keep`` holds each run's task until it ends (the app waits for them on shutdown)."""
        self.keep = keep
        self.tasks: dict[str, asyncio.Task[RunResult]] = {}
        self._news: dict[str, asyncio.Event] = {}

    async def start(self, work: RunWork) -> tuple[str | None, asyncio.Task[RunResult]]:
        """Start a run in a task of its own (a client that leaves does not stop it) and wait
        for its first event, which names it: its id and task. A run refused at once (a busy
        or paused thread) raises here; one that ended without an event (an earlier result
        returned again) gives None for the id."""
        named: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_event(event: Event) -> None:
            if not named.done():
                named.set_result(event.run_id)
                self.tasks[event.run_id] = task
            self._wake(event.run_id)

        task = kept(work(on_event), self.keep)
        task.add_done_callback(lambda done: self._ended(done, named))
        either: set[asyncio.Future[Any]] = {named, task}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if named.done():
            return named.result(), task
        task.result()  # the refusal, raised to the caller
        return None, task

    def _ended(self, task: asyncio.Task[RunResult], named: asyncio.Future[str]) -> None:
        if named.done():
            run_id = named.result()
            if self.tasks.get(run_id) is task:
                del self.tasks[run_id]
            self._wake(run_id)
            self._news.pop(run_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None and not isinstance(
                exc, OrchestratorError):
            log.error("a run started over HTTP failed", exc_info=exc)

    def _wake(self, run_id: str) -> None:
        news = self._news.pop(run_id, None)
        if news is not None:
            news.set()

    def listen(self, run_id: str) -> asyncio.Event | None:
        """What is set at ``run_id``'s next news (an event, its end); None for a run this
        process does not run. Take it before reading the store, so no news is missed."""
        if run_id not in self.tasks:
            return None
        return self._news.setdefault(run_id, asyncio.Event())


async def wait_for_news(news: asyncio.Event | None, timeout: float) -> None:
    """Return when ``news`` is set, or after ``timeout`` (a run this process does not run,
    ``news`` None, is polled at that pace)."""
    if news is None:
        await asyncio.sleep(timeout)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(news.wait(), timeout)


def run_hub(request: Request) -> RunHub:
    """The app's hub, made on first use."""
    state = request.app.state
    hub: RunHub | None = getattr(state, "run_hub", None)
    if hub is None:
        hub = state.run_hub = RunHub(state.runs_in_flight)
    return hub
