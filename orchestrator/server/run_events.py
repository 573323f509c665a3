"""A run's events as Server-Sent Events, read from the run store, resumable.

Each event is sent as ``id: <seq>`` (its place in the run's stored events, 0, 1, 2, ...),
``event: <type>`` and ``data: <the event as JSON>``. A client that reconnects with
``Last-Event-ID: <seq>`` gets the events after that one. A run that has ended replays its
events; a live one's follow as the run store gets them. The stream ends with ``event: end``
(no id), whose data is the run's status then: ``paused`` means it waits for an approval, and
its later events come on a new request with the last id seen.

The events are the run store's, the one record of a run: the engine stores each event
before anyone is told of it, so what a stream sends is what ``orchestrator trace`` shows.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from orchestrator.events import Event
from orchestrator.records import RunRecords
from orchestrator.server.auth import require
from orchestrator.server.errors import ApiError
from orchestrator.server.keys import KeyInfo
from orchestrator.server.native import LIVE_STATUSES, NativeRoute, own_run, records_of
from orchestrator.server.run_hub import RunHub, run_hub, wait_for_news

router = APIRouter(prefix="/api/runs", tags=["runs"], route_class=NativeRoute)
POLL_S = 0.5
"""How often a run this process does not run (another process's) is read again."""
KEEPALIVE_S = 15.0
"""Longest silence on a stream: a comment line then keeps proxies from closing it."""
MAX_STREAMS_PER_KEY = 16
"""Event streams one key may hold open at once (a browser tab holds one per run it shows)."""
MAX_STREAMS = 256
"""Event streams the server holds open at once, all keys together."""


class StreamSlots:
    """Counts the open event streams, per key and in all: each reads the run store, so
    without a cap one key's idle streams would slow every tenant's runs."""

    def __init__(self, per_key: int = MAX_STREAMS_PER_KEY, total: int = MAX_STREAMS) -> None:
        self.per_key = per_key
        self.total = total
        self.open: Counter[tuple[str, str]] = Counter()

    def take(self, caller: KeyInfo) -> tuple[str, str]:
        """A slot for the caller's next stream; ApiError 429 when none is free."""
        holder = (caller.tenant, caller.name)
        if self.open[holder] >= self.per_key:
            raise ApiError(429, f"this key already has {self.per_key} event streams open: "
                           "close one (or read the run with GET /api/runs/{id})",
                           type="rate_limit_error", code="too_many_streams")
        if sum(self.open.values()) >= self.total:
            raise ApiError(429, f"the server has {self.total} event streams open: try again "
                           "shortly", type="rate_limit_error", code="too_many_streams")
        self.open[holder] += 1
        return holder

    def give_back(self, holder: tuple[str, str]) -> None:
        self.open[holder] -= 1
        if self.open[holder] <= 0:
            del self.open[holder]


def stream_slots(request: Request) -> StreamSlots:
    """The app's stream counter (made on first use)."""
    state = request.app.state
    if not hasattr(state, "event_stream_slots"):
        state.event_stream_slots = StreamSlots()
    slots: StreamSlots = state.event_stream_slots
    return slots


@router.get("/{run_id}/events", response_class=StreamingResponse, responses={
    200: {"content": {"text/event-stream": {}},
          "description": "The run's events (`id`, `event`, `data`), then `event: end`."}})
async def run_events(
    run_id: str, request: Request, caller: Annotated[KeyInfo, Depends(require("chat"))],
    last_event_id: Annotated[int | None, Header(
        alias="Last-Event-ID", ge=-1, le=2**62,  # within SQLite's integers, with room
        description="The last event id received: only later events are sent.")] = None,
) -> StreamingResponse:
    """The run's events: stored ones at once, then live ones until the run ends or pauses."""
    await own_run(request, caller, run_id)
    after = -1 if last_event_id is None else last_event_id
    slots = stream_slots(request)
    holder = slots.take(caller)
    return _HeldStream(
        lambda: slots.give_back(holder),
        _stream(records_of(request), run_hub(request), run_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class _HeldStream(StreamingResponse):
    """A stream that gives its slot back however it ends: done, failed, or its client gone
    (even before the first frame, when the body's generator never started)."""

    def __init__(self, give_back: Callable[[], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._give_back = give_back

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._give_back()


async def _stream(records: RunRecords, hub: RunHub, run_id: str, after: int
                  ) -> AsyncIterator[str]:
    sent = after + 1  # the seq of the next event to send
    quiet = 0.0
    while True:
        news = hub.listen(run_id)
        # The status first: once it says the run has ended, every event is stored.
        status = (await asyncio.to_thread(records.run, run_id))["status"]
        events = await asyncio.to_thread(records.events, run_id, sent)  # the new ones
        for seq, item in enumerate(events, start=sent):
            yield _frame(seq, item)
        if events:
            sent, quiet = sent + len(events), 0.0
        if status not in LIVE_STATUSES:
            yield f"event: end\ndata: {json.dumps({'run_id': run_id, 'status': status})}\n\n"
            return
        if quiet >= KEEPALIVE_S:
            yield ": keep-alive\n\n"
            quiet = 0.0
        await wait_for_news(news, POLL_S)
        quiet += POLL_S


def _frame(seq: int, event: Event) -> str:
    # Events are stored with seq 0, 1, 2, ... per run, in order, so a place in the list the
    # store returns is the event's seq. json.dumps escapes newlines: data stays one line.
    payload = {"seq": seq, **event.to_dict()}
    return f"id: {seq}\nevent: {event.type}\ndata: {json.dumps(payload, default=str)}\n\n"
