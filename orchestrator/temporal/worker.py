"""``orchestrator worker``: a Temporal worker running the orchestrator's runs.

One orchestrator per worker process, over the settings' shared stores (checkpoints, run
store, write journal, business database), serves every activity it is given. SIGTERM and
Ctrl-C stop it cleanly: it stops taking work, gives running activities ``grace_s`` to end,
then cancels them (each run is recorded interrupted, and Temporal gives it to another
worker, which continues it from its checkpoint).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from datetime import timedelta

from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from orchestrator.api import Orchestrator
from orchestrator.config import Settings
from orchestrator.temporal.activities import RunActivities
from orchestrator.temporal.client import connect
from orchestrator.temporal.workflow import RunWorkflow

WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("orchestrator"))
"""The workflow runs in Temporal's sandbox; our package is imported once, outside it (the
workflow itself uses only its plain dataclasses, and does no I/O)."""


async def run_worker(settings: Settings, *, orchestrator: Orchestrator | None = None,
                     grace_s: float = 5.0, max_runs: int = 64,
                     on_ready: Callable[[str], None] | None = None) -> None:
    """Poll the settings' task queue until SIGTERM or SIGINT, running at most ``max_runs``
    runs at once; ``on_ready`` gets a line saying where the worker listens once it does."""
    client = await connect(settings)
    orch = orchestrator or Orchestrator.from_settings(settings)
    activities = RunActivities(orch)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        worker = Worker(client, task_queue=settings.temporal_task_queue,
                        workflows=[RunWorkflow], activities=[activities.advance_run],
                        workflow_runner=WORKFLOW_RUNNER,
                        graceful_shutdown_timeout=timedelta(seconds=grace_s),
                        max_concurrent_activities=max_runs)
        async with worker:
            if on_ready is not None:
                on_ready(f"worker {activities.worker} on task queue "
                         f"{settings.temporal_task_queue!r} at {settings.temporal_address} "
                         f"(namespace {settings.temporal_namespace!r})")
            await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        if orchestrator is None:
            await orch.aclose()
