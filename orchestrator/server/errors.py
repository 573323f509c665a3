"""Errors as the OpenAI API shapes them: ``{"error": {"message", "type", "param", "code"}}``.

Every error the server sends has this body, whatever raised it, so OpenAI clients turn it into
their own exceptions (``openai.AuthenticationError``, ``PermissionDeniedError``, ...). A bug
becomes a 500 with one line; its traceback goes to the server's log, never to the client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from orchestrator.errors import (
    DrivenElsewhereError,
    OrchestratorError,
    RequestError,
    RequestRunningError,
)

log = logging.getLogger(__name__)


class ApiError(OrchestratorError):
    """An error the server answers with ``status`` and an OpenAI-style body."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = (
            status, message, type, code, param)

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, code=self.code, param=self.param)

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def error_body(message: str, *, type: str, code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    """The JSON body of an error (also sent as an SSE ``data:`` line mid-stream)."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def internal_error(exc: BaseException) -> ApiError:
    """What a client sees of a bug: one line naming its kind, no traceback."""
    return ApiError(500, f"internal error ({type(exc).__name__}); the server log has the "
                    "details", type="server_error", code="internal_error")


def api_error_of(exc: BaseException) -> ApiError:
    """The HTTP error for an exception: a user error is 400 with its message (409 for a run
    another driver decides, or a request id whose run still runs), another error the
    orchestrator raised on purpose 500 with its message, a bug 500 with one line."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, DrivenElsewhereError):  # decided or resumed through another driver
        return ApiError(409, str(exc), code="driven_elsewhere")
    if isinstance(exc, RequestRunningError):  # its key's first run still runs
        return ApiError(409, str(exc), code="request_in_progress")
    if isinstance(exc, RequestError):  # an empty request, a busy or paused thread, ...
        return ApiError(400, str(exc), code="invalid_request")
    if isinstance(exc, OrchestratorError):  # a model that cannot be reached, ...
        return ApiError(500, str(exc), type="server_error", code=type(exc).__name__)
    return internal_error(exc)


def not_json(error: Any) -> str:
    """The message for a body that is not JSON: where it stops being JSON (pydantic puts
    that character's position where a field's name would be)."""
    at = [part for part in error.get("loc", ()) if isinstance(part, int)]
    where = f" at character {at[0]}" if at else ""
    reason = str(error.get("ctx", {}).get("error", "")).strip()
    return f"the request body is not valid JSON{where}" + (f": {reason}" if reason else "")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error, expected or not, with the OpenAI error shape."""

    async def orchestrator_error(_: Request, exc: Exception) -> JSONResponse:
        return api_error_of(exc).response()

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return ApiError(exc.status_code, str(exc.detail), code=code).response()

    async def invalid_body(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return ApiError(400, not_json(first), code="invalid_body").response()
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"invalid request body: {where + ': ' if where else ''}{first.get('msg', '')}"
        return ApiError(400, message, code="invalid_body", param=where or None).response()

    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return internal_error(exc).response()

    app.add_exception_handler(OrchestratorError, orchestrator_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_body)
    app.add_exception_handler(Exception, bug)
