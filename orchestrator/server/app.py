"""The FastAPI app: one ``Orchestrator`` shared by every request, behind API keys."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from orchestrator.api import Orchestrator
from orchestrator.server.a2a import mount_a2a
from orchestrator.server.auth import declare_scopes
from orchestrator.server.catalog import router as catalog_router
from orchestrator.server.chat import router as chat_router
from orchestrator.server.dispatch import RunDispatcher
from orchestrator.server.errors import install_error_handlers
from orchestrator.server.keys import KeyStore
from orchestrator.server.knowledge_api import router as knowledge_router
from orchestrator.server.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_UPLOAD_BYTES, BodyLimit
from orchestrator.server.progress import RUN_HEADER
from orchestrator.server.run_events import router as run_events_router
from orchestrator.server.runs import router as runs_router
from orchestrator.server.threads import THREAD_HEADER
from orchestrator.server.threads_api import router as threads_router
from orchestrator.server.traces_api import router as traces_router
from orchestrator.server.webapp import router as webapp_router

SHUTDOWN_GRACE_S = 30.0
"""How long a stopping server lets runs in flight finish, by default; the rest are stopped
and recorded as interrupted (``POST /api/runs/{id}/resume`` or ``orchestrator resume``
continues them)."""


def create_app(orchestrator: Orchestrator, keys: KeyStore, *,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               cors_origins: Sequence[str] = (),
               shutdown_grace_s: float = SHUTDOWN_GRACE_S,
               dispatcher: RunDispatcher | None = None) -> FastAPI:
    """The HTTP server's app over ``orchestrator`` (its models, knowledge and stores are
    loaded once and shared by all requests); the caller closes both when it is done.

    Example:
        ```python
        orch = Orchestrator.from_settings()
        app = create_app(orch, KeyStore.from_settings(orch.settings))
        uvicorn.run(app, host="127.0.0.1", port=8000)
        ```

    Args:
        orchestrator: Runs every request.
        keys: The API keys; every route but ``GET /health`` needs one.
        max_body_bytes: Larger request bodies are refused with 413.
        max_upload_bytes: Larger files are refused with 413 by the knowledge upload route,
            whose body may be this large (plus its multipart framing).
        cors_origins: Browser origins allowed to call the API; none (CORS off) by default.
        shutdown_grace_s: When the server stops, runs still going get this long to finish
            before they are stopped and recorded as interrupted.
        dispatcher: Where chat and native runs and decisions go (default: ``orchestrator``,
            in this process; a ``TemporalDispatcher`` submits them as workflows).
    """
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be positive, not {max_body_bytes}")
    if max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be positive, not {max_upload_bytes}")
    if not shutdown_grace_s >= 0:
        raise ValueError(f"shutdown_grace_s must be 0 or more, not {shutdown_grace_s}")
    in_flight: set[asyncio.Task[Any]] = set()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if in_flight:
            left = (await asyncio.wait(set(in_flight), timeout=shutdown_grace_s))[1]
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)

    # /docs is our own page (webapp.py): FastAPI's loads its script from a CDN, on the
    # origin whose storage holds the web app's key, and needs the network.
    app = FastAPI(title="agent-orchestrator", lifespan=lifespan, docs_url=None, redoc_url=None,
                  summary="An LLM supervisor that plans requests and runs specialist agents "
                  "in parallel; OpenAI-compatible chat.")
    app.state.orchestrator = orchestrator
    app.state.dispatcher = dispatcher
    app.state.keys = keys
    app.state.runs_in_flight = in_flight
    app.state.max_upload_bytes = max_upload_bytes
    install_error_handlers(app)
    app.include_router(declare_scopes(chat_router))
    app.include_router(declare_scopes(runs_router))
    app.include_router(declare_scopes(run_events_router))
    app.include_router(declare_scopes(threads_router))
    app.include_router(declare_scopes(catalog_router))
    app.include_router(declare_scopes(knowledge_router))
    app.include_router(declare_scopes(traces_router))
    app.include_router(declare_scopes(webapp_router))
    mount_a2a(app)  # the A2A card and JSON-RPC endpoint (orchestrator.server.a2a)

    @app.get("/health", tags=["server"])
    async def health() -> dict[str, str]:
        """Whether the server is up; needs no key."""
        return {"status": "ok"}

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, max_upload_bytes=max_upload_bytes)
    if cors_origins:  # added last: outermost, so refusals carry the CORS headers too
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", THREAD_HEADER,
                                          "Last-Event-ID"],
                           expose_headers=[THREAD_HEADER, RUN_HEADER])
    return app
