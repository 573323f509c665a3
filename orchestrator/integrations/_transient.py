"""Which failures of another framework's agent are worth another try.

The engine retries an external agent's attempt when it raises ConnectionError or
TimeoutError (:mod:`orchestrator.agents.external`). Model clients raise their own types
(``openai.APIConnectionError``, ``httpx.ConnectTimeout``, ...), read here by name so that
no client library is imported to recognise its errors.
"""

from __future__ import annotations

_TIMEOUTS = frozenset({"openai.APITimeoutError", "httpx.TimeoutException",
                       "httpcore.TimeoutException", "asyncio.TimeoutError"})
_CONNECTIONS = frozenset({"openai.APIConnectionError", "openai.RateLimitError",
                          "openai.InternalServerError", "httpx.TransportError",
                          "httpcore.NetworkError", "aiohttp.ClientConnectionError"})


def _names(exc: BaseException) -> set[str]:
    """``package.ClassName`` for every class ``exc`` is an instance of."""
    return {f"{cls.__module__.split('.', 1)[0]}.{cls.__name__}" for cls in type(exc).__mro__}


def retryable(exc: BaseException) -> ConnectionError | TimeoutError | None:
    """``exc`` as the error the engine retries (chained by the caller with ``from exc``),
    or None when it is not a lost connection, a timeout or an overloaded service."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return exc
    names = _names(exc)
    message = f"{type(exc).__name__}: {exc}"
    if names & _TIMEOUTS:
        return TimeoutError(message)
    if names & _CONNECTIONS:
        return ConnectionError(message)
    return None
