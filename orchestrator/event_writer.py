"""A run's events into the run store, as they arrive, one insert per burst.

The graph hands out events one at a time, but they come in bursts: the events of one step
(and of parallel subtasks finishing together) arrive in the same turn of the event loop. The
writer stores each burst in one transaction, at the end of that turn (``call_soon``), so a
run pays a few commits instead of one per event, and an event is still on record before the
loop waits for anything (a model call, a tool, a checkpoint).

Listeners (``on_event``) are called after their event is stored, so a reader woken by one
(the server's live stream reads the store) always finds it there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from orchestrator.events import Event, EventSink
from orchestrator.leases import Owner
from orchestrator.runs import BaseRunStore


class EventWriter:
    """Stores a run's events in bursts and then tells ``on_event``; see the module doc.

    After a write finds that ``owner`` no longer holds the run, :attr:`lost` is True and
    nothing more is written. An exception from ``on_event`` is kept in :attr:`error` for the
    run to raise (a callback runs outside the run's task).
    """

    def __init__(self, store: BaseRunStore | None, run_id: str, owner: Owner,
                 on_event: EventSink | None) -> None:
        self._store = store
        self._run_id = run_id
        self._owner = owner
        self._on_event = on_event
        self._pending: list[Event] = []
        self._scheduled: asyncio.Handle | None = None
        self.lost = False
        self.error: BaseException | None = None

    def add(self, event: Event) -> None:
        """Queue ``event``; it is written at the end of this turn of the loop."""
        self._pending.append(event)
        if self._scheduled is None:
            self._scheduled = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write what is queued now (also called when the run ends)."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        batch, self._pending = self._pending, []
        if not batch or self.lost:
            return
        if self._store is not None and not self._store.append_events(
                self._run_id, batch, self._owner):
            self.lost = True
            return
        if self._on_event is not None and self.error is None:
            self._tell(self._on_event, batch)

    def _tell(self, sink: Callable[[Event], None], batch: list[Event]) -> None:
        try:
            for item in batch:
                sink(item)
        except Exception as exc:  # a listener's bug: the run raises it
            self.error = exc
