"""``orchestrator serve`` and ``orchestrator keys create|list|revoke``.

FastAPI and uvicorn are imported inside the commands, so ``orchestrator --help`` stays fast.
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from orchestrator.server.keys import KeyStore

console = Console()
err_console = Console(stderr=True)

keys_app = typer.Typer(help="API keys for the HTTP server (stored hashed: keys.sqlite in the "
                       "data folder, or ORCHESTRATOR_DATABASE_URL).",
                       no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def register(app: typer.Typer) -> None:
    """Add ``serve`` and the ``keys`` group to the ``orchestrator`` command."""
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")


def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port.")] = 8000,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Model spec: fake, fake:latency=0.2, openai:<model>.")] = None,
    agents_dir: Annotated[Path | None, typer.Option(
        "--agents-dir", help="Folder of YAML agent cards (ORCHESTRATOR_AGENTS_DIR).")] = None,
    coordination: Annotated[str | None, typer.Option(
        "--coordination", "-c", help="rules, adaptive or hybrid, for every request (the "
        "models list shows it). Default: ORCHESTRATOR_COORDINATION.")] = None,
    max_body_bytes: Annotated[int, typer.Option(
        "--max-body-bytes", min=1, help="Larger request bodies are refused (413).")
    ] = 1_000_000,
    max_upload_bytes: Annotated[int, typer.Option(
        "--max-upload-bytes", min=1, help="Larger files are refused by the knowledge upload "
        "route (413).")] = 5_000_000,
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", help="A browser origin allowed to call the API (repeat); CORS is "
        "off when none is given.")] = None,
    runs_on: Annotated[str | None, typer.Option(
        "--runs", help="local: run requests in this process; temporal: submit each as a "
        "workflow that an `orchestrator worker` runs (ORCHESTRATOR_RUNS).")] = None,
    shutdown_grace: Annotated[float, typer.Option(
        "--shutdown-grace", min=0, help="Seconds a stopping server (SIGTERM, Ctrl-C) gives "
        "open requests, then runs still going, to finish; the rest are recorded "
        "interrupted and can be resumed.")] = 30.0,  # the server's SHUTDOWN_GRACE_S
) -> None:
    """Serve the orchestrator over HTTP: OpenAI-compatible chat at /v1, keys required."""
    import uvicorn

    from orchestrator.cli.app import _orchestrator, _settings
    from orchestrator.cli.temporal_commands import with_temporal
    from orchestrator.server import KeyStore, create_app

    settings = with_temporal(_settings(model, agents_dir, coordination), runs=runs_on)
    keys = KeyStore.from_settings(settings)
    if not any(not key.revoked for key in keys.list()):
        err_console.print("[yellow]No API keys yet[/yellow]: every request will be refused. "
                          "Create one with `orchestrator keys create NAME --scopes chat`.",
                          soft_wrap=True)
    dispatcher = None
    if settings.runs == "temporal":
        from orchestrator.cli.temporal_commands import temporal_reachable

        temporal_reachable(settings)
    orch = _orchestrator(settings)
    if settings.runs == "temporal":
        from orchestrator.temporal.dispatcher import TemporalDispatcher

        dispatcher = TemporalDispatcher(orch)
    app = create_app(orch, keys, max_body_bytes=max_body_bytes,
                     max_upload_bytes=max_upload_bytes,
                     cors_origins=tuple(cors_origin or ()), shutdown_grace_s=shutdown_grace,
                     dispatcher=dispatcher)
    collect_less()
    try:
        # Without a timeout uvicorn waits for every open connection before the app's own
        # grace starts, so one stalled stream would hold the stop for good.
        uvicorn.run(app, host=host, port=port, log_level="info",
                    timeout_graceful_shutdown=max(1, round(shutdown_grace)))
    finally:
        orch.close()
        keys.close()


SERVER_GC_THRESHOLD = 50_000
"""Allocations between two collections of the youngest generation (Python's default: 700)."""


def collect_less() -> None:
    """Fewer and cheaper garbage collections for a long-lived server. A run allocates tens
    of thousands of short-lived objects, so at Python's default threshold the collector ran
    hundreds of times a second under load, each older pass walking again the ~165,000
    objects start-up made (modules, agents, the app), which live as long as the process:
    a fifth of the server's CPU at 50 concurrent chats. Those are frozen out of the
    collector's sight, and the youngest generation is collected less often (at 10,000 the
    collector still took 0.4-0.6 ms of a request's ~12 ms on the loop, at 50,000 0.15);
    reference counting still frees most objects at once, and cycles are still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(SERVER_GC_THRESHOLD, *gc.get_threshold()[1:])


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it).")],
    scopes: Annotated[str, typer.Option(
        "--scopes", help="Comma-separated: chat, approve, ingest, admin.")] = "chat",
    tenant: Annotated[str, typer.Option(
        "--tenant", help="The tenant whose threads, runs and approvals the key sees.")
    ] = "default",
    as_json: JsonOption = False,
) -> None:
    """Create a key and print it: it is shown this once (only its hash is stored)."""
    with _keys() as keys:
        key = keys.create(name, scopes, tenant)
        info = keys.verify(key)
    assert info is not None
    if as_json:
        print(json.dumps({"name": info.name, "tenant": info.tenant,
                          "scopes": sorted(info.scopes), "key": key}))
        return
    print(key)
    err_console.print(f"Key {escape(name)!r} for tenant {escape(tenant)!r} "
                      f"({', '.join(sorted(info.scopes))}). Copy it now: it is not shown again.",
                      soft_wrap=True, highlight=False)


@keys_app.command("list")
def keys_list(as_json: JsonOption = False) -> None:
    """The keys: name, tenant, scopes, when created, and whether revoked (never the key)."""
    with _keys() as keys:
        found = keys.list()
    if as_json:
        print(json.dumps([{"name": k.name, "tenant": k.tenant, "scopes": sorted(k.scopes),
                           "created_at": k.created_at, "revoked": k.revoked} for k in found]))
        return
    if not found:
        console.print("No keys yet: `orchestrator keys create NAME --scopes chat`.")
        return
    table = Table(title="API keys")
    for column in ("name", "tenant", "scopes", "created", "status"):
        table.add_column(column)
    for k in found:
        table.add_row(escape(k.name), escape(k.tenant), ", ".join(sorted(k.scopes)),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(k.created_at)),
                      "[red]revoked[/red]" if k.revoked else "active")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key: requests with it are refused from now on, also by a running server."""
    with _keys() as keys:
        info = keys.revoke(name)
    console.print(f"Revoked key {escape(info.name)!r} (tenant {escape(info.tenant)!r}).",
                  highlight=False)


def _keys() -> KeyStore:
    """The data folder's key store (closed by ``with``)."""
    from orchestrator.cli.app import _settings
    from orchestrator.server.keys import KeyStore

    return KeyStore.from_settings(_settings(None, None))
