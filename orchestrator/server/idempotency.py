"""Requests sent again over HTTP run once: the ``Idempotency-Key`` header.

A client that retries (the OpenAI SDKs retry a request that timed out or failed with a 5xx
or 409, twice by default) would otherwise start the run again and repeat its writes. With
the header (``POST /v1/chat/completions``; ``POST /api/runs`` also takes ``request_id`` in
its body) the key is the run's request id, in the caller's tenant: sent again, it gets the
first run's result (waiting for it while it runs, in this server or another), or that run
continued when it was interrupted. A key sent with another request, or on another thread,
is refused.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

from orchestrator.errors import RequestRunningError
from orchestrator.results import RunResult
from orchestrator.server.errors import ApiError

IDEMPOTENCY_HEADER = "Idempotency-Key"
_KEY = re.compile(r"[A-Za-z0-9._:/-]{1,150}")
WAIT_S = 900.0
"""Longest a request sent again waits for its first run to end."""
POLL_S = 0.25
"""How often it looks."""


def request_key(tenant: str, given: str | None, param: str) -> str | None:
    """The run's request id for a client's key (None without one); ApiError 400 for a key
    that is not 1-150 letters, digits or . _ : / -."""
    if given is None:
        return None
    if not _KEY.fullmatch(given):
        raise ApiError(400, f"{param} must be 1-150 letters, digits or . _ : / - (a UUID, "
                       "for example)", code="invalid_idempotency_key", param=param)
    return f"{tenant}:{given}"


async def run_once(start: Callable[[], Awaitable[RunResult]], *, wait_s: float = WAIT_S
                   ) -> RunResult:
    """``start()``, again every :data:`POLL_S` while the run of the same request id is still
    running (the engine then gives that run's result)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await start()
        except RequestRunningError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(POLL_S)
