"""The HTTP server: an OpenAI-compatible chat API over one shared ``Orchestrator``, behind
API keys scoped to tenants.

Names are imported on first use, so that the key store (the ``orchestrator keys`` commands)
does not load FastAPI.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.server.app import create_app
    from orchestrator.server.errors import ApiError
    from orchestrator.server.keys import SCOPES, ApiKeyError, KeyInfo, KeyStore

_EXPORTS = {
    "create_app": "orchestrator.server.app",
    "ApiError": "orchestrator.server.errors",
    "SCOPES": "orchestrator.server.keys",
    "ApiKeyError": "orchestrator.server.keys",
    "KeyInfo": "orchestrator.server.keys",
    "KeyStore": "orchestrator.server.keys",
}

__all__ = ["SCOPES", "ApiError", "ApiKeyError", "KeyInfo", "KeyStore", "create_app"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator.server' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
