"""The orchestrator as an MCP server (``orchestrator mcp``): a tool to run a request, one per
playbook, approvals when allowed, and read-only tools for runs and traces.

Example:
    ```python
    import anyio
    from orchestrator import Orchestrator
    from orchestrator.mcp_server import create_mcp_server, serve_stdio

    orch = Orchestrator.from_settings()
    anyio.run(serve_stdio, create_mcp_server(orch))
    ```
"""

from __future__ import annotations

from orchestrator.mcp_server.server import create_mcp_server
from orchestrator.mcp_server.transports import http_app, serve_http, serve_stdio

__all__ = ["create_mcp_server", "http_app", "serve_http", "serve_stdio"]
