"""What the native API's routes share: the caller's tenant and what it may see, and invalid
input answered with 422.

A tenant sees only its own threads and runs: thread ids are stored as ``<tenant>:<thread>``
(:mod:`orchestrator.server.threads`), so another tenant's run, thread or approval is
answered exactly as one that does not exist (404), never with its data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from orchestrator.api import Orchestrator
from orchestrator.errors import RequestError
from orchestrator.records import RunRecords
from orchestrator.runs import RunSummary
from orchestrator.server.errors import ApiError, not_json
from orchestrator.server.keys import KeyInfo
from orchestrator.server.threads import ChatThread, chat_thread

LIVE_STATUSES = frozenset({"running", "resuming"})
"""Statuses of a run that is still working (a paused run waits; the others have ended)."""
_SCAN_FIRST = 200


class NativeRoute(APIRoute):
    """A route whose invalid input (body, query, path, header) is a 422, as its OpenAPI
    description says; the OpenAI-compatible routes answer 400, as OpenAI does."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise invalid_input(exc) from None

        return checked


def invalid_input(exc: RequestValidationError) -> ApiError:
    """The 422 of the first problem pydantic found, in one line."""
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return ApiError(422, not_json(first), code="invalid_body")
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query",
                                                                        "path", "header"))
    return ApiError(422, f"invalid request: {where + ': ' if where else ''}"
                    f"{first.get('msg', 'not valid')}", code="invalid_body", param=where or None)


def orchestrator_of(request: Request) -> Orchestrator:
    orch: Orchestrator = request.app.state.orchestrator
    return orch


def records_of(request: Request) -> RunRecords:
    return orchestrator_of(request).records


def tenant_thread(caller: KeyInfo, thread_id: str | None, *, param: str = "thread_id",
                  request_id: str | None = None) -> ChatThread:
    """The caller's thread named ``thread_id`` (a new one when None: named after
    ``request_id``, if any); 422 for a malformed id."""
    try:
        return chat_thread(caller.tenant, thread_id, None, request_id)
    except ApiError as exc:
        raise ApiError(422, exc.message.replace("X-Thread-Id", param), code="invalid_thread",
                       param=param) from None


def client_thread_id(caller: KeyInfo, stored: str) -> str | None:
    """The id the caller knows a stored thread by; None for another tenant's thread."""
    prefix = f"{caller.tenant}:"
    return stored[len(prefix):] if stored.startswith(prefix) else None


def not_found(what: str) -> ApiError:
    return ApiError(404, f"no {what} here", code="not_found")


async def own_run(request: Request, caller: KeyInfo, run_id: str) -> dict[str, Any]:
    """The stored record of the caller's run ``run_id`` (the full id); 404 for an unknown
    run, another tenant's, or an id prefix (a prefix could tell one tenant of another's)."""
    records = records_of(request)
    try:
        record = await asyncio.to_thread(records.run, run_id)
    except RequestError:
        raise not_found(f"run {run_id!r}") from None
    if record["run_id"] != run_id or client_thread_id(caller, record["thread_id"]) is None:
        raise not_found(f"run {run_id!r}")
    return record


async def own_existing_thread(request: Request, caller: KeyInfo, thread_id: str) -> ChatThread:
    """The caller's thread ``thread_id``, which must exist; 404 otherwise (another tenant's
    thread of the same name is another thread, which does not exist)."""
    thread = tenant_thread(caller, thread_id)
    if not await orchestrator_of(request).ahas_thread(thread.stored):
        raise not_found(f"thread {thread_id!r}")
    return thread


def tenant_runs(records: RunRecords, caller: KeyInfo, *, limit: int,
                thread: str | None = None, statuses: frozenset[str] | None = None
                ) -> list[RunSummary]:
    """The caller's newest runs, at most ``limit``, on ``thread`` (a stored id) and with one
    of ``statuses`` when given. The run store lists runs newest first across tenants, so
    this reads a growing window until it has enough or has read them all."""
    prefix = f"{caller.tenant}:"
    window = max(_SCAN_FIRST, limit)
    while True:
        recent = records.runs(limit=window)
        found = [run for run in recent if run.thread_id.startswith(prefix)
                 and (thread is None or run.thread_id == thread)
                 and (statuses is None or run.status in statuses)]
        if len(found) >= limit or len(recent) < window:
            return found[:limit]
        window *= 4
