"""External specialists (``AgentSpec.external``): an agent run by something other than the
engine's tool loop gets the subtask's goal and inputs only, its steps are events and
records, and the engine's guarantees hold around it: a question never goes to an agent
that may change things, a failure is retried, a hang is cut at the subtask's timeout, usage
and the run record are kept."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Orchestrator
from orchestrator.agents.external import (
    ExternalReply,
    ExternalStatus,
    ExternalTask,
    ExternalToolCall,
    ExternalUnreachable,
    Report,
)
from orchestrator.agents.policy import ToolKind
from orchestrator.agents.spec import AgentSpec
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.nodes.external import run_external
from orchestrator.results import SubtaskResult
from orchestrator.storage.sqlite import SqliteWriteJournal

ACTS = ToolKind(read_only=False, destructive=False)
READS = ToolKind(read_only=True, destructive=False, idempotent=True)


class Desk:
    """A service desk reached from outside the engine: it opens tickets, or fails, or
    hangs, as a test tells it."""

    def __init__(self, kind: ToolKind = ACTS, *, unreachable_first: int = 0,
                 lost_first: int = 0, hang: bool = False, refuse: bool = False) -> None:
        self.kind = kind
        self.tasks: list[ExternalTask] = []
        self.unreachable_first, self.lost_first = unreachable_first, lost_first
        self.hang, self.refuse = hang, refuse

    async def run(self, task: ExternalTask, report: Report) -> ExternalReply:
        self.tasks.append(task)
        if len(self.tasks) <= self.unreachable_first:
            raise ExternalUnreachable("the service desk refused the connection")
        if len(self.tasks) <= self.lost_first:  # after it took the task: it may have acted
            raise ConnectionError("the service desk closed the connection")
        if self.hang:
            await asyncio.sleep(3600)
        if self.refuse:
            return ExternalReply("", status="failed", error="the desk is read-only today")
        if task.kind == "answer":  # it says nothing of how it looked: its own reading
            return ExternalReply("Open tickets: T-1 (checkout outage).")
        report(ExternalStatus("working", "opening the ticket"))
        report(ExternalToolCall("create_ticket", {"title": task.goal}, "ticket T-1 opened",
                                write=True))
        return ExternalReply(f"Opened ticket T-1: {task.goal}", llm_calls=1, input_tokens=40,
                             output_tokens=12)


def desk_agent(desk: Desk) -> AgentSpec:
    return AgentSpec(name="service_desk", description="Opens tickets in the service desk.",
                     skills=["open a ticket", "file an incident ticket"], external=desk)


def orchestrator(tmp_path: Path, desk: Desk, **settings: object) -> Orchestrator:
    return Orchestrator("fake", agents=[desk_agent(desk)], settings=Settings(
        home=tmp_path, knowledge=False, retry_backoff_s=0, **settings))  # type: ignore[arg-type]


def test_an_external_agent_does_its_subtask_and_its_steps_are_on_record(tmp_path: Path
                                                                        ) -> None:
    desk = Desk()
    orch = orchestrator(tmp_path, desk)
    result = orch.run("open a ticket for the checkout outage")

    assert result.ok, result.error
    (task,) = desk.tasks
    assert task.kind == "act" and "checkout outage" in task.goal and task.inputs == ()
    assert task.context_id == f"{result.run_id}:{task.subtask_id}"
    assert "T-1" in result.answer
    (sub,) = result.results.values()
    assert sub.agent == "service_desk" and sub.status == "done"
    assert [(c.name, c.write, c.status) for c in sub.tool_calls] == [
        ("create_ticket", True, "ok")]
    assert sub.usage.llm_calls == 1 and sub.usage.input_tokens == 40
    kinds = [e.type for e in result.events if e.agent == "service_desk"]
    assert kinds == ["subtask_started", "agent_status", "tool_called", "attempt_finished",
                     "subtask_finished"]
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        stored = [r[0] for r in db.execute(
            "SELECT type FROM events WHERE run_id = ? AND agent = 'service_desk' ORDER BY seq",
            (result.run_id,))]
        llm_calls = db.execute("SELECT llm_calls FROM runs WHERE run_id = ?",
                               (result.run_id,)).fetchone()[0]
    assert stored == kinds
    assert llm_calls == result.usage.llm_calls >= 2  # the plan and the desk's own call
    orch.close()


def test_a_question_never_reaches_an_agent_that_may_change_things(tmp_path: Path) -> None:
    desk = Desk()
    orch = orchestrator(tmp_path, desk)
    orch.run("which tickets are open for the checkout outage?")
    assert desk.tasks == []  # not declared read-only: the planner is not offered it
    orch.close()
    # And were a plan to give it a question anyway, the engine would not run it.
    question = SubtaskResult(id="t1", goal="which tickets are open?", agent="service_desk",
                             kind="answer")
    asyncio.run(run_external(desk_agent(desk), desk, question, [], run_id="r1"))
    assert desk.tasks == [] and question.status == "failed"
    assert question.failure_kind == "refused" and "not declared read-only" in (
        question.error or "")


def test_a_read_only_external_agent_answers_questions(tmp_path: Path) -> None:
    desk = Desk(READS)
    orch = orchestrator(tmp_path, desk)
    result = orch.run("which tickets are open for the checkout outage?")
    assert [t.kind for t in desk.tasks] == ["answer"]
    assert result.ok, result.error
    (sub,) = result.results.values()
    assert sub.status == "done" and "T-1" in sub.output
    assert [(c.name, c.write) for c in sub.tool_calls] == [("service_desk", False)]
    orch.close()


def test_an_agent_that_could_not_be_reached_is_tried_again(tmp_path: Path) -> None:
    desk = Desk(unreachable_first=1)
    orch = orchestrator(tmp_path, desk, max_retries=2)
    result = orch.run("open a ticket for the checkout outage")
    assert result.ok, result.error
    assert len(desk.tasks) == 2
    retried = [e for e in result.events if e.type == "retried"]
    assert len(retried) == 1 and "refused the connection" in retried[0].data["after"]
    orch.close()


def test_an_action_lost_mid_way_is_not_done_twice(tmp_path: Path) -> None:
    """Contact lost after a remote agent took the task: it may have acted, so the action
    is not sent again (nor to another agent), and the run says its outcome is unknown."""
    desk = Desk(lost_first=1)
    orch = orchestrator(tmp_path, desk, max_retries=2)
    result = orch.run("open a ticket for the checkout outage")
    assert len(desk.tasks) == 1
    (sub,) = result.results.values()
    assert sub.status == "unknown" and sub.failure_kind == "outcome_unknown"
    assert "closed the connection" in (sub.error or "") and "not tried again" in (
        sub.error or "")
    assert result.status == "unknown" and not result.ok
    orch.close()


class ReportingDesk(Desk):
    """An agent run in this process: every change it makes is reported as it happens."""

    reports_writes = True


def test_an_agent_that_reports_its_writes_is_tried_again_when_it_made_none(tmp_path: Path
                                                                           ) -> None:
    desk = ReportingDesk(lost_first=1)
    orch = orchestrator(tmp_path, desk, max_retries=2)
    result = orch.run("open a ticket for the checkout outage")
    assert result.ok, result.error
    assert len(desk.tasks) == 2  # nothing was changed the first time, as it reported
    orch.close()


def test_a_failed_task_fails_its_subtask_with_the_agents_reason(tmp_path: Path) -> None:
    orch = orchestrator(tmp_path, Desk(refuse=True))
    result = orch.run("open a ticket for the checkout outage")
    (sub,) = result.results.values()
    assert sub.status == "failed" and "read-only today" in (sub.error or "")
    assert result.status != "ok"
    orch.close()


@pytest.mark.parametrize(("desk", "request_text", "status", "kind"), [
    (Desk(hang=True), "open a ticket for the checkout outage", "unknown", "outcome_unknown"),
    (ReportingDesk(hang=True), "open a ticket for the checkout outage", "failed",
     "timeout"),
    (Desk(READS, hang=True), "which tickets are open for the checkout outage?", "failed",
     "timeout"),
])
def test_a_hung_agent_is_cut_at_the_subtask_timeout(
        tmp_path: Path, desk: Desk, request_text: str, status: str, kind: str) -> None:
    """Cut off, a remote action's outcome is unknown (it is not sent again); an agent that
    reports its writes and made none, or one that only reads, simply timed out."""
    orch = orchestrator(tmp_path, desk, subtask_timeout_s=0.5, max_retries=1,
                        max_reassigns=0, max_replans=0)
    result = orch.run(request_text)
    (sub,) = result.results.values()
    assert (sub.status, sub.failure_kind) == (status, kind), sub.error
    assert len(desk.tasks) == (1 if status == "unknown" else 2)
    orch.close()


def test_an_external_agent_cannot_also_list_tools() -> None:
    def create_ticket(title: str) -> str:
        """Open a ticket."""
        return title

    with pytest.raises(ConfigError, match="cannot also list tools"):
        AgentSpec(name="desk", description="Opens tickets.", tools=[create_ticket],
                  external=Desk())


def _resumed(desk: Desk, journal: Any) -> SubtaskResult:
    """The subtask as a resumed run meets it again: the same run and subtask, a fresh
    result (the checkpoint did not hold the attempt), the same write journal."""
    again = SubtaskResult(id="t1", goal="open a ticket for the checkout outage",
                          agent="service_desk", kind="act")
    asyncio.run(run_external(desk_agent(desk), desk, again, [], run_id="r1",
                             journal=journal))
    return again


def test_after_a_crash_an_action_under_way_is_not_sent_again(tmp_path: Path) -> None:
    """The process stopped while a remote agent had the action: the resumed run does not
    send it again (it may have happened); the subtask says its outcome is unknown."""
    journal = SqliteWriteJournal(tmp_path / "writes.sqlite")
    desk = Desk(hang=True)
    first = SubtaskResult(id="t1", goal="open a ticket for the checkout outage",
                          agent="service_desk", kind="act")

    async def stopped() -> None:  # the process dies mid-action: the attempt never returns
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run_external(desk_agent(desk), desk, first, [],
                                                run_id="r1", journal=journal), 0.2)
    asyncio.run(stopped())
    assert len(desk.tasks) == 1

    restarted = Desk()  # the agent as the resumed process reaches it (it would answer now)
    again = _resumed(restarted, SqliteWriteJournal(tmp_path / "writes.sqlite"))
    assert restarted.tasks == []  # not sent again
    assert (again.status, again.failure_kind) == ("unknown", "outcome_unknown")
    assert "not sent again" in (again.error or "")


def test_after_a_crash_an_action_done_keeps_its_reply_and_is_not_sent_again(
        tmp_path: Path) -> None:
    journal = SqliteWriteJournal(tmp_path / "writes.sqlite")
    desk = Desk()
    first = SubtaskResult(id="t1", goal="open a ticket for the checkout outage",
                          agent="service_desk", kind="act")
    asyncio.run(run_external(desk_agent(desk), desk, first, [], run_id="r1",
                             journal=journal))
    assert first.status == "done" and len(desk.tasks) == 1
    # The process stopped before the checkpoint kept the result: the run is resumed.
    again = _resumed(desk, SqliteWriteJournal(tmp_path / "writes.sqlite"))
    assert len(desk.tasks) == 1  # the journal says it was done: its reply stands
    assert again.status == "done" and again.output == first.output
    (call,) = again.tool_calls
    assert call.replayed and call.write and call.name == "service_desk"
