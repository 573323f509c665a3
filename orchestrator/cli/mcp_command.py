"""``orchestrator mcp``: serve the orchestrator as an MCP server, over stdio or streamable HTTP.

The MCP SDK is imported inside the command, so ``orchestrator --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

err_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add ``mcp`` to the ``orchestrator`` command."""
    app.command("mcp")(mcp)


def mcp(
    transport: Annotated[Literal["stdio", "http"], typer.Option(
        "--transport", help="stdio (an MCP client starts this command) or http (streamable "
        "HTTP at /mcp).")] = "stdio",
    host: Annotated[str, typer.Option(
        "--host", help="HTTP: a loopback interface (127.0.0.1, ::1, localhost).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="HTTP: the port (0 picks a free one).")] = 8765,
    allow_approvals: Annotated[bool, typer.Option(
        "--allow-approvals", help="Offer the decide_approval tool, so MCP clients may approve "
        "what paused runs wait for (otherwise a person runs `orchestrator approve`).")
    ] = False,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Model spec: fake, fake:latency=0.2, openai:<model>.")] = None,
    agents_dir: Annotated[Path | None, typer.Option(
        "--agents-dir", help="Folder of YAML agent cards (ORCHESTRATOR_AGENTS_DIR).")] = None,
    coordination: Annotated[str | None, typer.Option(
        "--coordination", "-c", help="rules, adaptive or hybrid. Default: "
        "ORCHESTRATOR_COORDINATION.")] = None,
) -> None:
    """Serve the orchestrator as an MCP server: run_request, a tool per playbook, and
    read-only list_runs, get_run and get_trace."""
    import anyio

    from orchestrator.cli.app import _orchestrator, _settings
    from orchestrator.mcp_server import create_mcp_server, serve_http, serve_stdio

    settings = _settings(model, agents_dir, coordination)
    orch = _orchestrator(settings)
    flags = [*(["--model", model] if model else []),
             *(["--agents-dir", str(agents_dir)] if agents_dir else [])]
    server = create_mcp_server(orch, allow_approvals=allow_approvals, cli_flags=flags)
    try:
        if transport == "stdio":
            err_console.print("[dim]Serving MCP on stdio.[/dim]")
            anyio.run(serve_stdio, server)
        else:
            serve_http(server, host, port, lambda url: err_console.print(
                f"MCP server (streamable HTTP) at {url}", highlight=False, soft_wrap=True))
    except KeyboardInterrupt:
        pass
    finally:
        orch.close()
