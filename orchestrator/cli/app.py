"""``orchestrator``: run, chat, agents, demo."""

from __future__ import annotations

import getpass
import json
import signal
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from orchestrator.cli.mcp_command import register as register_mcp
from orchestrator.cli.serve import register as register_serve
from orchestrator.cli.temporal_commands import RunsOption, with_temporal
from orchestrator.cli.temporal_commands import register as register_temporal
from orchestrator.config import DEFAULT_MODEL_SPEC, Settings, ensure_home, load_settings
from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:
    from orchestrator.api import Orchestrator
    from orchestrator.approvals import ApprovalRequest
    from orchestrator.cli.view import RunView
    from orchestrator.events import AnswerChunkSink, Event, EventSink
    from orchestrator.results import RunResult

app = typer.Typer(
    name="orchestrator", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False,
    help="An LLM supervisor that plans requests and runs specialist agents in parallel.",
)
demo_app = typer.Typer(help="The demo business systems (the domain database).",
                       no_args_is_help=True)
app.add_typer(demo_app, name="demo")
kb_app = typer.Typer(help="Look into the knowledge base.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")

console = Console()
err_console = Console(stderr=True)

ModelOption = Annotated[str | None, typer.Option(
    "--model", "-m", help="Model spec: fake, fake:latency=0.2, openai:<model>.")]
AgentsDirOption = Annotated[Path | None, typer.Option(
    "--agents-dir", help="Folder of YAML agent cards (ORCHESTRATOR_AGENTS_DIR).")]
ThreadOption = Annotated[str | None, typer.Option(
    "--thread", "-t", help="Conversation thread id; a follow-up in it sees earlier turns.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
CoordinationOption = Annotated[str | None, typer.Option(
    "--coordination", "-c", help="rules (playbooks only), adaptive (the supervisor plans) "
    "or hybrid (a playbook first, else the supervisor). Default: ORCHESTRATOR_COORDINATION.")]
RequestIdOption = Annotated[str | None, typer.Option(
    "--request-id", help="Your idempotency key: sending the same id again returns that run's "
    "result (or continues it if it was interrupted) instead of doing the work twice.")]


class UserError(Exception):
    """Printed as one line; exit code 2."""


def _settings(model: str | None, agents_dir: Path | None, coordination: str | None = None
              ) -> Settings:
    try:
        settings = load_settings(model=model, agents_dir=agents_dir, coordination=coordination)
    except ValidationError as exc:  # a bad ORCHESTRATOR_* value
        problems = "; ".join(f"ORCHESTRATOR_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                             for e in exc.errors())
        raise UserError(f"invalid settings: {problems}") from None
    ensure_home(settings)
    return settings


def _orchestrator(settings: Settings, quiet: bool = False) -> Orchestrator:
    from orchestrator.api import Orchestrator  # imported late: keeps --help fast

    if settings.model is None and not quiet:
        err_console.print(f"[dim]No model configured: using the offline '{DEFAULT_MODEL_SPEC}' "
                          "model (set ORCHESTRATOR_MODEL or --model).[/dim]", soft_wrap=True)

    def announce() -> None:
        if not quiet:
            err_console.print("[dim]First run: building the demo knowledge base...[/dim]")

    return Orchestrator.from_settings(settings, on_first_build=announce)


def _say_if_new_thread(orch: Orchestrator, thread: str | None, quiet: bool) -> None:
    if thread is not None and not quiet and not orch.has_thread(thread):
        err_console.print(f"[dim]No conversation {thread!r} yet: this starts a new one under "
                          "that id.[/dim]", soft_wrap=True, highlight=False)


def _run_one(orch: Orchestrator, text: str, thread: str | None, as_json: bool,
             request_id: str | None = None) -> bool:
    orch.check_request(text)  # before the live view starts, so an error is one clean line
    return _show(lambda on_event, on_chunk: orch.run(
        text, thread_id=thread, on_event=on_event, request_id=request_id,
        on_answer_chunk=on_chunk), orch, as_json)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or the password database
        return "unknown"


class _RunTracker:
    """Passes events on and remembers the run under way, to say how to resume it."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.sink: EventSink | None = None

    def __call__(self, event: Event) -> None:
        self.run_id = self.run_id or event.run_id
        if self.sink is not None:
            self.sink(event)


@contextmanager
def _stopped_like_ctrl_c(tracker: _RunTracker) -> Iterator[None]:
    """SIGTERM (docker stop, Kubernetes) stops a run as Ctrl-C does: the run is cancelled,
    its record says ``interrupted``, one line says how to resume it; exit 130 (143 for
    SIGTERM)."""
    terminated: list[int] = []

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        terminated.append(signum)
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):  # asyncio's while a run is on: it cancels the run cleanly
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except KeyboardInterrupt:
        if tracker.run_id:
            err_console.print(f"interrupted: run {tracker.run_id[:12]} stopped and is recorded "
                              f"as interrupted; continue it with: orchestrator resume "
                              f"{tracker.run_id[:12]}", highlight=False, soft_wrap=True)
        else:
            err_console.print("interrupted before the run started: nothing to resume",
                              highlight=False)
        raise typer.Exit(143 if terminated else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _live(view: RunView) -> Iterator[None]:
    """The live view of a run; an error erases it, so the error is the one line shown."""
    live = Live(view, console=console, refresh_per_second=8, transient=False)
    with live:
        try:
            yield
        except BaseException:
            live.transient = True
            raise


def _show(start: Callable[[EventSink | None, AnswerChunkSink | None], RunResult],
          orch: Orchestrator | None, as_json: bool,
          resume: Callable[..., RunResult] | None = None) -> bool:
    """Run with a live view (or JSON), ask for approvals when the run pauses, show the answer.

    A decision asked for on the terminal goes to ``resume`` (default: ``orch.resume``; runs
    on Temporal send it to the run's workflow).

    The live view shows the answer as it streams; once the run ends the answer is printed
    once, below the view (so output that is not a terminal is the same as without
    streaming: the live view prints only its final state there)."""
    from orchestrator.cli.view import RunView, approval_details, print_answer, safe_text

    tracker = _RunTracker()
    with _stopped_like_ctrl_c(tracker):
        if as_json:
            result = start(tracker, None)
            console.print_json(json.dumps(result.to_dict(), default=str))
            return result.status == "ok"
        view = RunView()
        tracker.sink = view.on_event
        with _live(view):
            result = start(tracker, view.on_answer_chunk)
            view.end_answer()
        while result.status == "paused" and sys.stdin.isatty():
            console.print()
            print_answer(console, result, details=False)  # each is shown at its prompt
            decisions = {}
            for step in result.pending_approvals:
                console.print(approval_details(step))
                approved = typer.confirm(
                    f"Approve {safe_text(step.subtask_id, one_line=True)} "
                    f"({safe_text(step.agent, one_line=True)})?", default=False)
                reason = typer.prompt("Reason", default="approved" if approved else "denied")
                decisions[step.key] = {"approved": approved, "reason": reason}
            thread = result.thread_id
            assert resume is not None or orch is not None
            with _live(view):
                result = (resume or cast("Orchestrator", orch).resume)(
                    thread, decisions, approver=_os_user(), on_event=tracker,
                    on_answer_chunk=view.on_answer_chunk)
                view.end_answer()
    console.print()
    print_answer(console, result)
    if result.status == "paused":
        on_temporal = " --runs temporal" if resume is not None else ""  # to its workflow
        console.print(f"Approve or deny with: orchestrator approve {result.thread_id}"
                      f"{on_temporal} [--key KEY] [--deny] [--reason TEXT] [--as NAME]",
                      highlight=False)
    return result.status == "ok"


@app.command()
def run(
    text: Annotated[str, typer.Argument(help="The request, in plain words.")],
    model: ModelOption = None,
    thread: ThreadOption = None,
    as_json: JsonOption = False,
    agents_dir: AgentsDirOption = None,
    coordination: CoordinationOption = None,
    request_id: RequestIdOption = None,
    runs_on: RunsOption = None,
) -> None:
    """Plan and run one request, show the plan and progress live, then the answer."""
    settings = with_temporal(_settings(model, agents_dir, coordination), runs=runs_on)
    if settings.runs == "temporal":
        _run_on_temporal(settings, request_id, as_json, request=text, thread_id=thread)
        return
    orch = _orchestrator(settings, quiet=as_json)
    _say_if_new_thread(orch, thread, as_json)
    if not _run_one(orch, text, thread, as_json, request_id):
        raise typer.Exit(1)  # the plan failed, or some subtasks did not finish


def _run_on_temporal(settings: Settings, request_id: str | None, as_json: bool,
                     **job: Any) -> None:
    """Submit a request or event as a workflow and show it as it goes (``job``: the
    :func:`~orchestrator.temporal.client.run_job` fields); exit 1 unless it ends well."""
    from orchestrator.cli import temporal_commands as on_temporal
    from orchestrator.temporal.client import run_job

    if not _show(on_temporal.submit(settings, run_job(settings, **job), request_id), None,
                 as_json, on_temporal.resumer(settings)):
        raise typer.Exit(1)


@app.command()
def event(
    name: Annotated[str, typer.Argument(help="Event name, e.g. service_down.")],
    data: Annotated[str, typer.Option("--data", "-d", help="Event data as a JSON object.")
                    ] = "{}",
    model: ModelOption = None,
    as_json: JsonOption = False,
    agents_dir: AgentsDirOption = None,
    coordination: CoordinationOption = None,
    request_id: RequestIdOption = None,
    runs_on: RunsOption = None,
) -> None:
    """Fire an event: the playbook it triggers runs (or the supervisor plans it)."""
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise UserError(f"--data is not valid JSON ({exc.msg} at character {exc.pos}); "
                        """e.g. --data '{"service": "web-3"}'""") from None
    if not isinstance(payload, dict):
        raise UserError("""--data must be a JSON object, e.g. '{"service": "web-3"}'""")
    settings = with_temporal(_settings(model, agents_dir, coordination), runs=runs_on)
    if settings.runs == "temporal":
        _run_on_temporal(settings, request_id, as_json, event=name, data=payload)
        return
    orch = _orchestrator(settings, quiet=as_json)
    orch.check_event(name, payload)  # before the live view: a bad event is one clean line
    ok = _show(lambda on_event, on_chunk: orch.fire_event(
        name, payload, on_event=on_event, request_id=request_id, on_answer_chunk=on_chunk),
        orch, as_json)
    if not ok:
        raise typer.Exit(1)


_NOT_NAMED = "not named by --key or --step"


def _decisions(pending: list[ApprovalRequest], approved: bool, reason: str,
               steps: list[str], keys: list[str]) -> dict[str, dict[str, object]]:
    """One decision per pending approval, by key: the named ones (all when none is named)
    get ``approved``, the others are denied. UserError for a key or step not pending."""
    waiting = ", ".join(p.key for p in pending) or "nothing"
    unknown = [k for k in keys if k not in {p.key for p in pending}] + [
        s for s in steps if s not in {p.subtask_id for p in pending}]
    if unknown:
        raise UserError(f"no pending approval named {', '.join(unknown)}; waiting: {waiting}")
    named = [p.key for p in pending if not (keys or steps) or p.key in keys
             or p.subtask_id in steps]
    return {p.key: {"approved": approved, "reason": reason} if p.key in named
            else {"approved": False, "reason": _NOT_NAMED} for p in pending}


@app.command()
def approve(
    thread: Annotated[str, typer.Argument(help="The thread of the paused run.")],
    deny: Annotated[bool, typer.Option("--deny", help="Deny instead of approve.")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record.")] = "",
    key: Annotated[list[str] | None, typer.Option(
        "--key", help="Decide only the pending approval with this key (repeat); the other "
        "pending ones are denied.")] = None,
    step: Annotated[list[str] | None, typer.Option(
        "--step", help="Decide only this step's pending approvals (repeat); the other "
        "pending ones are denied.")] = None,
    approver: Annotated[str | None, typer.Option(
        "--as", help="Who decides, stored with the decision (default: your OS user).")
                        ] = None,
    as_json: JsonOption = False,
    model: ModelOption = None,
    agents_dir: AgentsDirOption = None,
    runs_on: RunsOption = None,
) -> None:
    """Approve or deny what a paused run is waiting for, and let it go on (with the same
    --model and --agents-dir as the run that paused). Each pending approval (key, tool,
    arguments, effect, why) is shown with its decision before it is applied; the decision
    covers only those: if the run pauses again, it waits for a new one."""
    from orchestrator.cli.view import approval_details, safe_text
    from orchestrator.runs import refuse_workflow_run

    settings = with_temporal(_settings(model, agents_dir), runs=runs_on)
    orch: Orchestrator | None = None
    if settings.runs == "temporal":  # the decision goes to the run's workflow
        from orchestrator.cli import temporal_commands as on_temporal

        pending = on_temporal.pending(settings, thread)
    else:
        orch = _orchestrator(settings, quiet=True)
        pending = orch.pending_approvals(thread)
        if pending and orch.runs is not None and (latest := orch.runs.thread_runs(thread)):
            # before the decision is shown: a workflow's run is decided through Temporal
            refuse_workflow_run(orch.runs.run(latest[-1].run_id), "approve")
    decision = _decisions(pending, not deny, reason, step or [], key or [])
    shown = err_console if as_json else console  # --json keeps stdout one JSON object
    if pending:
        shown.print(f"Deciding for thread {safe_text(thread, one_line=True)}:",
                    highlight=False, markup=False)
    for item in pending:
        verdict = decision[item.key]
        label = "approve" if verdict["approved"] else "deny"
        if verdict["reason"]:
            label += f" ({verdict['reason']})"
        shown.print(approval_details(item, decision=label))
    who = approver or _os_user()
    if orch is None:
        ok = _show(on_temporal.decide(settings, thread, decision, who), None, as_json,
                   on_temporal.resumer(settings))
    else:
        local = orch
        ok = _show(lambda on_event, on_chunk: local.resume(
            thread, decision, reason=reason, approver=who, on_event=on_event,
            on_answer_chunk=on_chunk), orch, as_json)
    if not ok:
        raise typer.Exit(1)


@app.command("resume")
def resume_command(
    run_id: Annotated[str, typer.Argument(help="The interrupted run's id (or a prefix).")],
    as_json: JsonOption = False,
    model: ModelOption = None,
    agents_dir: AgentsDirOption = None,
) -> None:
    """Continue an interrupted run (a crash, a kill, SIGTERM) from its checkpoint: finished
    subtasks are not redone and writes that happened are not repeated (use the same
    --model and --agents-dir as the run)."""
    settings = _settings(model, agents_dir)
    orch = _orchestrator(settings, quiet=True)
    if not _show(lambda on_event, on_chunk: orch.resume_run(
            run_id, on_event=on_event, on_answer_chunk=on_chunk), orch, as_json):
        raise typer.Exit(1)


@app.command()
def runs(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Recent runs, newest first, with their ids (for `orchestrator trace`); a run whose
    process stopped mid-run shows as interrupted (`orchestrator resume RUN_ID`)."""
    from orchestrator.cli.trace import runs_table
    from orchestrator.records import RunRecords

    found = RunRecords.from_settings(_settings(None, None)).runs(limit)
    if as_json:
        console.print_json(json.dumps([r.__dict__ for r in found]))
    elif not found:
        console.print("No runs yet: try `orchestrator run \"check the health of web-2\"`.")
    else:
        console.print(runs_table(found))


@app.command()
def trace(
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")],
    as_json: JsonOption = False,
) -> None:
    """A run's plan as a tree and its timeline per agent: what ran in parallel, what
    waited, where time and tokens went."""
    from orchestrator.cli.trace import trace_view
    from orchestrator.records import RunRecords

    found = RunRecords.from_settings(_settings(None, None)).trace(run_id)
    if as_json:
        console.print_json(json.dumps(found.to_dict(), default=str))
    else:
        console.print(trace_view(found))


@app.command()
def chat(
    model: ModelOption = None,
    thread: ThreadOption = None,
    agents_dir: AgentsDirOption = None,
    coordination: CoordinationOption = None,
) -> None:
    """Talk to the supervisor. Commands: /new, /agents, /thread, /help, /quit."""
    from orchestrator.agents.catalog import entries_of
    from orchestrator.cli.view import agents_table

    settings = _settings(model, agents_dir, coordination)
    orch = _orchestrator(settings)
    _say_if_new_thread(orch, thread, quiet=False)
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
            console.print(agents_table(entries_of(orch.agents)))
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
    stats: Annotated[bool, typer.Option(
        "--stats", help="How each agent has done across stored runs.")] = False,
) -> None:
    """List the agents the planner can route to (or their statistics with --stats)."""
    from orchestrator.agents.catalog import agent_catalog
    from orchestrator.cli.view import agents_table

    settings = _settings(None, agents_dir)
    if stats:
        from orchestrator.cli.trace import stats_table
        from orchestrator.records import RunRecords

        stats_found = RunRecords.from_settings(settings).agent_stats()
        if as_json:
            console.print_json(json.dumps([s.to_dict() for s in stats_found]))
        elif not stats_found:
            console.print("No agent has run yet: statistics appear after the first run.")
        else:
            console.print(stats_table(stats_found))
        return
    found = agent_catalog(settings.home, settings.agents_dir, settings.domains)
    if as_json:
        console.print_json(json.dumps([a.to_dict() for a in found]))
        return
    console.print(agents_table(found))


@app.command("playbooks")
def playbooks_cmd(agents_dir: AgentsDirOption = None, as_json: JsonOption = False) -> None:
    """List the playbooks that are on: their triggers (event, request pattern) and pack."""
    from orchestrator.cli.playbooks import playbooks_command

    playbooks_command(_settings(None, agents_dir), as_json)


@app.command("eval")
def eval_cmd(
    datasets: Annotated[list[Path] | None, typer.Argument(
        help="JSONL/YAML case files or folders.")] = None,
    pack: Annotated[list[str] | None, typer.Option(
        "--pack", help="Also run this domain pack's own eval cases (repeat).")] = None,
    model: ModelOption = None,
    repeat: Annotated[int, typer.Option("--repeat", "-k", min=1, help="Runs per case.")] = 1,
    concurrency: Annotated[int, typer.Option("--concurrency", "-j", min=1)] = 4,
    tag: Annotated[list[str] | None, typer.Option("--filter", help="Only cases with this tag.")
                   ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Report folder.")] = None,
    baseline: Annotated[Path | None, typer.Option(
        "--baseline", help="summary.json of an earlier run to compare and gate on.")] = None,
    record: Annotated[Path | None, typer.Option(
        "--record", help="Save every model request and reply to this cassette.")] = None,
    prices: Annotated[Path | None, typer.Option(
        "--prices", help="JSON/YAML: model -> {input, output} dollars per 1M tokens.")] = None,
    max_pass_drop: Annotated[float, typer.Option(
        help="Gate: allowed pass@1 drop (absolute).")] = 0.0,
    max_cost_rise: Annotated[float, typer.Option(
        help="Gate: allowed relative rise of cost and tokens.")] = 0.10,
) -> None:
    """Run eval cases offline and reproducibly; write results, summary and an HTML report."""
    from orchestrator.cli.evals import EvalOptions, eval_command
    from orchestrator.evals.baseline import GateThresholds

    settings = _settings(model, None)
    if pack:
        from orchestrator.agents.domains import pack_eval_cases

        datasets = [*(datasets or []), *pack_eval_cases(pack)]
    if not datasets:
        raise UserError("name eval case files or folders, or a domain pack with --pack NAME")
    options = EvalOptions(
        datasets=datasets, model=settings.model or DEFAULT_MODEL_SPEC, repeat=repeat,
        concurrency=concurrency, tags=tag or [], out=out, baseline=baseline, record=record,
        prices=prices, thresholds=GateThresholds(max_pass_drop, max_cost_rise))
    if not eval_command(settings, options):
        raise typer.Exit(1)


@demo_app.command("reset")
def demo_reset() -> None:
    """Recreate the demo business database from seed and re-ingest the demo knowledge base."""
    from orchestrator.demo import reset_demo

    settings = _settings(None, None)
    path, reports = reset_demo(settings)
    console.print(f"Demo database reset: {path}")
    for report in reports:
        console.print(f"Knowledge base {report.collection!r}: {report.chunks_added} chunks "
                      f"from {report.files} files ({report.seconds:.1f}s)")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to ingest.")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Target collection.")
                          ] = "default",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag every chunk (repeat).")
                   ] = None,
    as_json: JsonOption = False,
) -> None:
    """Add Markdown, text, HTML, PDF and JSONL files to the knowledge base."""
    from orchestrator.cli.kb import ingest_command

    report = ingest_command(_settings(None, None), paths, collection, tag or [], as_json)
    if not report.ok:
        raise typer.Exit(1)


@kb_app.command("list")
def kb_list_command(as_json: JsonOption = False) -> None:
    """Collections with their chunk and source counts."""
    from orchestrator.cli.kb import kb_list

    kb_list(_settings(None, None), as_json)


@kb_app.command("search")
def kb_search_command(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    collection: Annotated[list[str] | None, typer.Option(
        "--collection", "-c", help="Collection to search (repeat); all when omitted.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many hits.")] = 5,
    mode: Annotated[str, typer.Option("--mode", help="hybrid, dense or bm25.")] = "hybrid",
    source: Annotated[str | None, typer.Option("--source", help="Only this source.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Only chunks with this tag.")
                   ] = None,
    fusion: Annotated[str | None, typer.Option(
        "--fusion", help="Hybrid fusion: score or rrf (default ORCHESTRATOR_FUSION).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show what a query finds: source, chunk, score and text."""
    from orchestrator.cli.kb import kb_search

    kb_search(_settings(None, None), query, collection or [], k, mode, source, tag or [],
              as_json, fusion)


@kb_app.command("delete")
def kb_delete_command(
    collection: Annotated[str, typer.Argument(help="The collection to delete from.")],
    source: Annotated[str | None, typer.Option(
        "--source", help="Delete only this source (a JSONL file: all its documents).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete a collection, or one source's chunks in it."""
    from orchestrator.cli.kb import kb_delete

    if not kb_delete(_settings(None, None), collection, source, yes, as_json):
        raise typer.Exit(1)


register_serve(app)  # serve, keys (orchestrator/cli/serve.py)
register_mcp(app)  # mcp (orchestrator/cli/mcp_command.py)
register_temporal(app)  # worker, schedule (orchestrator/cli/temporal_commands.py)


def main() -> None:
    """Entry point: user errors become one line and a non-zero exit, bugs keep tracebacks."""
    from orchestrator.cli.temporal_commands import exit_if_temporal_used

    try:
        try:
            app()
        except (OrchestratorError, UserError) as exc:
            # the message is text, not markup: "[temporal]" or "'[x]'" must show as written
            err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False,
                              soft_wrap=True)
            sys.exit(2)
    except SystemExit as exc:
        exit_if_temporal_used(exc)
        raise
