"""Who is calling: the ``Authorization: Bearer <key>`` of each request, checked for a scope."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from orchestrator.server.errors import ApiError
from orchestrator.server.keys import KeyInfo, KeyStore


def bearer_key(request: Request) -> str | None:
    """The key in the request's ``Authorization: Bearer`` header, if any."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return (key.strip() or None) if scheme.lower() == "bearer" else None


def require(scope: str | None) -> Callable[[Request], KeyInfo]:
    """A FastAPI dependency: the caller's key, which must allow ``scope`` (any valid key when
    None); 401 for a missing, unknown or revoked key, 403 for a key without the scope."""

    def caller(request: Request) -> KeyInfo:
        keys: KeyStore = request.app.state.keys
        key = bearer_key(request)
        if key is None:
            raise ApiError(401, "no API key: send 'Authorization: Bearer <key>' (create one "
                           "with `orchestrator keys create NAME --scopes chat`)",
                           code="missing_api_key")
        info = keys.verify(key)
        if info is None:
            raise ApiError(401, "invalid or revoked API key", code="invalid_api_key")
        if scope is not None and not info.allows(scope):
            raise ApiError(403, f"the key {info.name!r} lacks the {scope!r} scope",
                           type="permission_error", code="missing_scope")
        return info

    return caller
