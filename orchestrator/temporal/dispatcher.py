"""The server's runs on Temporal (``orchestrator serve --runs temporal``).

Each request becomes a workflow that a worker runs; the replica that took the request
follows the run's events through the shared run store and answers with its result (an
answer is sent whole at the end: its pieces are not streamed across processes). A decision
on a paused run goes to the run's workflow from whichever replica gets it; the workflow
takes one decision per approval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from temporalio.client import Client

from orchestrator.api import Orchestrator
from orchestrator.approvals import ApprovalDecision, check_decision
from orchestrator.errors import RequestError
from orchestrator.events import AnswerChunkSink, EventSink
from orchestrator.results import RunResult
from orchestrator.temporal.client import TemporalRuns, connect, result_of, run_job


class TemporalDispatcher:
    """Submits the server's runs as workflows; the orchestrator's stores are the shared
    ones the workers write (``orch.runs`` for events and records)."""

    def __init__(self, orch: Orchestrator) -> None:
        if orch.runs is None:
            raise RequestError("runs on Temporal need the run store (ORCHESTRATOR_RECORD_RUNS "
                               "is off)")
        self.orch = orch
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def _runs(self) -> TemporalRuns:
        async with self._lock:  # connected on first use, on the server's own loop
            if self._client is None:
                self._client = await connect(self.orch.settings)
        assert self.orch.runs is not None
        return TemporalRuns(self._client, self.orch.settings, self.orch.runs)

    async def arun(self, request: str, *, thread_id: str | None = None,
                   on_event: EventSink | None = None, request_id: str | None = None,
                   on_answer_chunk: AnswerChunkSink | None = None,
                   history: Sequence[tuple[str, str]] = ()) -> RunResult:
        """Submit the request's workflow and follow it to its end or pause."""
        runs = await self._runs()
        text = self.orch.check_request(request)
        handle = await runs.submit(run_job(self.orch.settings, request=text,
                                           thread_id=thread_id, history=history), request_id)
        return result_of(await runs.follow(handle, on_event))

    async def aresume(self, thread_id: str,
                      decision: bool | ApprovalDecision | Mapping[str, Any], *,
                      reason: str = "", approver: str | None = None,
                      on_event: EventSink | None = None,
                      on_answer_chunk: AnswerChunkSink | None = None) -> RunResult:
        """Send the decision to the paused run's workflow, then follow the run on."""
        runs = await self._runs()
        pending = await self.orch.apending_approvals(thread_id)
        if not pending:
            raise RequestError(f"thread {thread_id!r} has no paused run to resume")
        check_decision(decision, pending)
        verdicts = {p.key: _verdict(decision, p.key, p.subtask_id, reason) for p in pending}
        handle = await runs.decide(thread_id, verdicts, approver or "unknown")
        return result_of(await runs.follow(handle, on_event, only_new=True))


def _verdict(decision: Any, key: str, subtask_id: str, reason: str) -> dict[str, Any]:
    """One approval's verdict from a decision for all (True/False) or keyed ones."""
    if isinstance(decision, ApprovalDecision):
        return {"approved": decision.approved, "reason": decision.reason or reason}
    if isinstance(decision, bool):
        return {"approved": decision, "reason": reason}
    if "approved" in decision:
        return {"approved": decision["approved"] is True,
                "reason": decision.get("reason") or reason}
    one = decision.get(key, decision.get(subtask_id, False))
    return _verdict(one, key, subtask_id, reason)
