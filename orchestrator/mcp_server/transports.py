"""Serving an MCP server over stdio or streamable HTTP.

On stdio the protocol owns standard output: anything else the process prints (a library's
stray ``print``) goes to standard error instead, so it cannot corrupt the message stream.
Over HTTP the endpoint is ``/mcp``; it has no authentication of its own, so it listens only
on a loopback address, with the SDK's DNS-rebinding protection on.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Callable
from io import TextIOWrapper
from typing import Any

import anyio
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from orchestrator.errors import RequestError

MCP_PATH = "/mcp"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


async def serve_stdio(server: Server[Any, Any]) -> None:
    """Serve one MCP session on this process's stdin and stdout until the client closes."""
    protocol_out = anyio.wrap_file(TextIOWrapper(sys.stdout.buffer, encoding="utf-8"))
    with contextlib.redirect_stdout(sys.stderr):
        async with stdio_server(stdout=protocol_out) as (read, write):
            await server.run(read, write, server.create_initialization_options())


def http_app(server: Server[Any, Any]) -> Starlette:
    """The streamable HTTP app: MCP at ``/mcp``, sessions kept by the SDK's manager."""
    manager = StreamableHTTPSessionManager(
        app=server, security_settings=TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(routes=[Route(MCP_PATH, endpoint=_Endpoint(manager))], lifespan=lifespan)


class _Endpoint:
    """The ASGI app at ``/mcp`` (a class, so Starlette passes it the raw request)."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)


def serve_http(server: Server[Any, Any], host: str, port: int,
               on_listening: Callable[[str], None]) -> None:
    """Serve streamable HTTP on ``host:port`` (0: a free port) until stopped (SIGTERM,
    Ctrl-C); ``on_listening`` gets the endpoint's URL once connections are accepted.
    RequestError for a host that is not a loopback address."""
    import uvicorn

    if host not in LOOPBACK:
        raise RequestError(f"--host {host} is not a loopback address: the MCP endpoint has no "
                           "authentication of its own, so it listens only on 127.0.0.1, ::1 "
                           "or localhost (put an authenticating proxy in front to share it)")
    family = socket.AF_INET6 if host == "::1" else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RequestError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another "
                           "--port (0 picks a free one)") from None
    sock.listen(128)  # from here a client's connection waits in the backlog, not refused
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    on_listening(f"http://{shown}:{bound}{MCP_PATH}")
    # Without a timeout a stop would wait for every open session's stream for good.
    config = uvicorn.Config(http_app(server), log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=10)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
