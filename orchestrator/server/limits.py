"""Caps on requests: a body over the limit is refused with 413, headers or a query string over
theirs with 431, and a JSON body with text no store can hold (:mod:`body_text`) with 400
(422 under ``/api``), before a route sees them."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.server.body_text import body_problem, is_json
from orchestrator.server.errors import ApiError

DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_MAX_UPLOAD_BYTES = 5_000_000
"""The largest file a knowledge upload may carry."""
MULTIPART_SLACK_BYTES = 64 * 1024
"""What an upload's body may carry besides its file (multipart boundaries and headers)."""
UPLOAD_PATH = re.compile(r"/api/knowledge/[^/]+/files")
MAX_HEADER_BYTES = 32_768
"""All request headers together (uvicorn's httptools parser sets no limit of its own)."""
MAX_QUERY_BYTES = 8_192


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` with a 413 JSON error; a file
    upload (``POST /api/knowledge/{collection}/files``) may carry ``max_upload_bytes`` of
    file instead.

    A declared ``Content-Length`` over the cap is refused without reading; a chunked body
    is read up to the cap (and no further) and handed on as it came, so routes never see a
    body larger than the cap.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_upload_bytes

    def _cap(self, scope: Scope) -> int:
        if scope.get("method") == "POST" and UPLOAD_PATH.fullmatch(scope.get("path", "")):
            return max(self.max_bytes, self.max_upload_bytes + MULTIPART_SLACK_BYTES)
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = sum(len(k) + len(v) for k, v in scope["headers"])
        if headers > MAX_HEADER_BYTES or len(scope.get("query_string", b"")) > MAX_QUERY_BYTES:
            error = ApiError(431, f"the request's headers or query string are too large (at "
                             f"most {MAX_HEADER_BYTES} and {MAX_QUERY_BYTES} bytes)",
                             code="request_too_large")
            await error.response()(scope, receive, send)
            return
        cap = self._cap(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            await self._refuse(scope, receive, send, cap)
            return
        received: list[Message] = []
        size = 0
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > cap:
                await self._refuse(scope, receive, send, cap)
                return
            if not message.get("more_body", False):
                break

        content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
        problem = body_problem(b"".join(m.get("body", b"") for m in received
                                        if m["type"] == "http.request")) if is_json(
            content_type) else None
        if problem is not None:
            status = 422 if scope.get("path", "").startswith("/api/") else 400
            error = ApiError(status, problem[0], code="invalid_body", param=problem[1])
            await error.response()(scope, receive, send)
            return

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        limit = (f"the upload limit of {self.max_upload_bytes} bytes a file"
                 if cap > self.max_bytes else f"the limit of {cap} bytes")
        error = ApiError(413, f"the request body is over {limit}", code="request_too_large")
        await error.response()(scope, receive, send)
