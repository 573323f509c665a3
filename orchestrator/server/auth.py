"""Who is calling: the ``Authorization: Bearer <key>`` of each request, checked for a scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute

from orchestrator.server.errors import ApiError
from orchestrator.server.keys import KeyInfo, KeyStore


def bearer_key(request: Request) -> str | None:
    """The key in the request's ``Authorization: Bearer`` header, if any."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return (key.strip() or None) if scheme.lower() == "bearer" else None


def require(scope: str | None) -> Callable[[Request], Awaitable[KeyInfo]]:
    """A FastAPI dependency: the caller's key, which must allow ``scope`` (any valid key when
    None); 401 for a missing, unknown or revoked key, 403 for a key without the scope.
    Async, so a request does not go through a thread to be checked (see
    :meth:`KeyStore.averify`)."""

    async def caller(request: Request) -> KeyInfo:
        keys: KeyStore = request.app.state.keys
        key = bearer_key(request)
        if key is None:
            raise ApiError(401, "no API key: send 'Authorization: Bearer <key>' (create one "
                           "with `orchestrator keys create NAME --scopes chat`)",
                           code="missing_api_key")
        info = await keys.averify(key)
        if info is None:
            raise ApiError(401, "invalid or revoked API key", code="invalid_api_key")
        if scope is not None and not info.allows(scope):
            raise ApiError(403, f"the key {info.name!r} lacks the {scope!r} scope",
                           type="permission_error", code="missing_scope")
        return info

    caller.required_scope = scope  # type: ignore[attr-defined]  # read by declare_scopes
    return caller


def declare_scopes(router: APIRouter) -> APIRouter:
    """Write the scope each of the router's routes needs into its OpenAPI operation
    (``x-scope``), as its :func:`require` dependency says, so ``/docs`` shows it; the
    router, for ``app.include_router(declare_scopes(router))``."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        pending, scopes = [route.dependant], []
        while pending:
            dependant = pending.pop()
            pending.extend(dependant.dependencies)
            scope = getattr(dependant.call, "required_scope", None)
            if scope is not None:
                scopes.append(scope)
        needed = sorted(set(scopes))
        if needed:
            route.openapi_extra = {**(route.openapi_extra or {}),
                                   "x-scope": needed[0] if len(needed) == 1 else needed}
    return router
