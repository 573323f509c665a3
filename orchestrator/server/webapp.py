"""The web app: a page at ``/``, the API's reference at ``/docs``, their static assets, and
``GET /api/me`` for the app.

The page and its assets hold no data, so they need no key (the page asks for one and sends it
with every API call). They are plain files under ``web/`` (HTML, CSS and JavaScript modules,
no build step), read from the package, so the app works offline. Only the files found there
at import are served: a request names one of them or gets a 404, whatever its path holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse
from pydantic import BaseModel

from orchestrator.server.auth import require
from orchestrator.server.errors import ApiError
from orchestrator.server.keys import KeyInfo

WEB_ROOT = Path(__file__).resolve().parent / "web"
_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
_ASSETS = {path.relative_to(WEB_ROOT).as_posix(): path for path in WEB_ROOT.rglob("*")
           if path.is_file() and path.suffix in _TYPES}
CONTENT_SECURITY_POLICY = ("default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                           "form-action 'self'; object-src 'none'")
"""The page shows what models and tools wrote and holds a key that may approve actions: it
runs only its own files, and no other site may frame it (clickjacking of Approve)."""
# The page is small and changes with the server: browsers check it again each time.
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer"}

router = APIRouter(tags=["web app"])


def _asset(name: str) -> FileResponse:
    path = _ASSETS.get(name)
    if path is None:
        raise ApiError(404, f"no web app file {name[:120]!r}", code="not_found")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_HEADERS)


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The web app's page."""
    return _asset("index.html")


@router.get("/docs", include_in_schema=False)
async def api_reference() -> FileResponse:
    """The API's reference, drawn in the page from ``/openapi.json`` (no CDN, no key)."""
    return _asset("docs.html")


@router.get("/app/{name:path}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    """One of the web app's files (scripts, styles, icon)."""
    return _asset(name)


class Caller(BaseModel):
    """The key a request came with, as the web app shows it."""

    name: str
    tenant: str
    scopes: list[str]


@router.get("/api/me")
async def me(caller: Annotated[KeyInfo, Depends(require(None))]) -> Caller:
    """Who the key is: its name, tenant and scopes (the web app shows only what it may do)."""
    return Caller(name=caller.name, tenant=caller.tenant, scopes=sorted(caller.scopes))
