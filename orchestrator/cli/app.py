"""``orchestrator``: run, chat, agents, demo."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live

from orchestrator.config import Settings, load_settings
from orchestrator.errors import OrchestratorError
from orchestrator.models import DEFAULT_MODEL_SPEC

if TYPE_CHECKING:
    from orchestrator.api import Orchestrator

app = typer.Typer(
    name="orchestrator", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False,
    help="An LLM supervisor that plans requests and runs specialist agents in parallel.",
)
demo_app = typer.Typer(help="The demo business systems (the domain database).",
                       no_args_is_help=True)
app.add_typer(demo_app, name="demo")

console = Console()
err_console = Console(stderr=True)

ModelOption = Annotated[str | None, typer.Option(
    "--model", "-m", help="Model spec: fake, fake:latency=0.2, openai:<model>.")]
AgentsDirOption = Annotated[Path | None, typer.Option(
    "--agents-dir", help="Folder of YAML agent cards (ORCHESTRATOR_AGENTS_DIR).")]
ThreadOption = Annotated[str | None, typer.Option(
    "--thread", "-t", help="Conversation thread id; a follow-up in it sees earlier turns.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


class UserError(Exception):
    """Printed as one line; exit code 2."""


def _settings(model: str | None, agents_dir: Path | None) -> Settings:
    try:
        settings = load_settings(model=model, agents_dir=agents_dir)
    except ValidationError as exc:  # a bad ORCHESTRATOR_* value
        problems = "; ".join(f"ORCHESTRATOR_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                             for e in exc.errors())
        raise UserError(f"invalid settings: {problems}") from None
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot use the data folder {settings.home} (ORCHESTRATOR_HOME): "
                        f"{exc.strerror or exc}") from None
    return settings


def _orchestrator(settings: Settings, quiet: bool = False) -> Orchestrator:
    from orchestrator.api import Orchestrator  # imported late: keeps --help fast

    if settings.model is None and not quiet:
        err_console.print(f"[dim]No model configured: using the offline '{DEFAULT_MODEL_SPEC}' "
                          "model (set ORCHESTRATOR_MODEL or --model).[/dim]", soft_wrap=True)
    return Orchestrator(settings.model or DEFAULT_MODEL_SPEC, settings=settings,
                        checkpointer=settings.checkpoints_path,
                        domain_db=settings.domain_db_path)


def _run_one(orch: Orchestrator, text: str, thread: str | None, as_json: bool) -> bool:
    from orchestrator.cli.view import RunView, print_answer

    if as_json:
        result = orch.run(text, thread_id=thread)
        console.print_json(json.dumps(result.to_dict(), default=str))
        return result.status == "ok"
    orch.check_request(text)  # before the live view starts, so an error is one clean line
    view = RunView()
    with Live(view, console=console, refresh_per_second=8, transient=False):
        result = orch.run(text, thread_id=thread, on_event=view.on_event)
    console.print()
    print_answer(console, result)
    return result.status == "ok"


@app.command()
def run(
    text: Annotated[str, typer.Argument(help="The request, in plain words.")],
    model: ModelOption = None,
    thread: ThreadOption = None,
    as_json: JsonOption = False,
    agents_dir: AgentsDirOption = None,
) -> None:
    """Plan and run one request, show the plan and progress live, then the answer."""
    settings = _settings(model, agents_dir)
    orch = _orchestrator(settings, quiet=as_json)
    if not _run_one(orch, text, thread, as_json):
        raise typer.Exit(1)  # the plan failed, or some subtasks did not finish


@app.command()
def chat(
    model: ModelOption = None,
    thread: ThreadOption = None,
    agents_dir: AgentsDirOption = None,
) -> None:
    """Talk to the supervisor. Commands: /new, /agents, /thread, /help, /quit."""
    from orchestrator.cli.view import agents_table

    settings = _settings(model, agents_dir)
    orch = _orchestrator(settings)
    thread_id = thread or uuid.uuid4().hex
    console.print(f"[bold]orchestrator chat[/bold] - thread {thread_id}. /help for commands.")
    while True:
        try:
            line = console.input("[bold cyan]you>[/bold cyan] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not line:
            continue
        if line in ("/quit", "/exit", "/q"):
            return
        if line == "/new":
            thread_id = uuid.uuid4().hex
            console.print(f"[dim]new thread {thread_id}[/dim]")
        elif line == "/agents":
            console.print(agents_table(orch.agents))
        elif line == "/thread":
            console.print(f"[dim]thread {thread_id}[/dim]")
        elif line == "/help":
            console.print("/new: start a new conversation   /agents: list agents   "
                          "/thread: show the thread id   /quit: leave")
        elif line.startswith("/"):
            console.print(f"[red]unknown command {line.split()[0]}[/red]; /help lists them")
        else:
            try:
                _run_one(orch, line, thread_id, as_json=False)
            except OrchestratorError as exc:
                err_console.print(f"[red]error:[/red] {exc}")


@app.command("agents")
def agents_command(
    agents_dir: AgentsDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the agents the planner can route to."""
    from agents.registry import AgentRegistry
    from orchestrator.cli.view import agents_table

    settings = _settings(None, agents_dir)
    registry = AgentRegistry.default(settings.agents_dir)
    if as_json:
        console.print_json(json.dumps([
            {"name": s.name, "description": s.description, "skills": s.skills,
             "tools": list(s.tool_map), "collections": s.collections, "domain": s.domain,
             "source": s.source} for s in registry
        ]))
        return
    console.print(agents_table(registry.specs))


@demo_app.command("reset")
def demo_reset() -> None:
    """Recreate the demo business database (services, routes, alerts, incidents) from seed."""
    from orchestrator.domain_db import reset_domain_db

    settings = _settings(None, None)
    path = reset_domain_db(settings.domain_db_path)
    console.print(f"Demo database reset: {path}")


def main() -> None:
    """Entry point: user errors become one line and a non-zero exit, bugs keep tracebacks."""
    try:
        app()
    except (OrchestratorError, UserError) as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
