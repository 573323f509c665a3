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
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse

from orchestrator.events import Event
from orchestrator.records import RunRecords
from orchestrator.server.auth import require
from orchestrator.server.keys import KeyInfo
from orchestrator.server.native import LIVE_STATUSES, NativeRoute, own_run, records_of
from orchestrator.server.run_hub import RunHub, run_hub, wait_for_news

router = APIRouter(prefix="/api/runs", tags=["runs"], route_class=NativeRoute)
POLL_S = 0.5
"""How often a run this process does not run (another process's) is read again."""
KEEPALIVE_S = 15.0
"""Longest silence on a stream: a comment line then keeps proxies from closing it."""


@router.get("/{run_id}/events", response_class=StreamingResponse, responses={
    200: {"content": {"text/event-stream": {}},
          "description": "The run's events (`id`, `event`, `data`), then `event: end`."}})
async def run_events(
    run_id: str, request: Request, caller: Annotated[KeyInfo, Depends(require("chat"))],
    last_event_id: Annotated[int | None, Header(
        alias="Last-Event-ID", ge=-1,
        description="The last event id received: only later events are sent.")] = None,
) -> StreamingResponse:
    """The run's events: stored ones at once, then live ones until the run ends or pauses."""
    await own_run(request, caller, run_id)
    after = -1 if last_event_id is None else last_event_id
    return StreamingResponse(
        _stream(records_of(request), run_hub(request), run_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _stream(records: RunRecords, hub: RunHub, run_id: str, after: int
                  ) -> AsyncIterator[str]:
    sent = after + 1  # the seq of the next event to send
    quiet = 0.0
    while True:
        news = hub.listen(run_id)
        # The status first: once it says the run has ended, every event is stored.
        status = (await asyncio.to_thread(records.run, run_id))["status"]
        events = await asyncio.to_thread(records.events, run_id)
        for seq in range(sent, len(events)):
            yield _frame(seq, events[seq])
        if len(events) > sent:
            sent, quiet = len(events), 0.0
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
