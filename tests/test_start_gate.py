"""The start gate: runs enter their first steps a few at a time, in the order they came, and
leave at their first wait on the world (a model call, a subtask), so a burst of requests gets
going in order and no run waits on one that waits for it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Orchestrator
from orchestrator.agents.external import ExternalReply, ExternalTask, Report
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.agents.policy import ToolKind
from orchestrator.agents.spec import AgentSpec
from orchestrator.config import Settings
from orchestrator.models import FakeChatModel
from orchestrator.playbooks import Playbook
from orchestrator.runs import RunStore
from orchestrator.start_gate import StartGate, leave_start_gate

# --- the gate itself --------------------------------------------------------------------------


async def _enter(gate: StartGate, name: str, order: list[str], left: asyncio.Event | None,
                 done: asyncio.Event) -> None:
    async with gate.entered():
        order.append(name)
        if left is not None:
            await left.wait()
            leave_start_gate()
        await done.wait()


def test_runs_go_in_one_at_a_time_in_arrival_order_and_leave_before_they_end() -> None:
    async def scenario() -> None:
        gate, order, done = StartGate(1), [], asyncio.Event()
        lefts = [asyncio.Event() for _ in range(4)]
        tasks = [asyncio.create_task(_enter(gate, f"r{i}", order, lefts[i], done))
                 for i in range(4)]
        for i in range(4):
            await asyncio.sleep(0.01)
            assert order == [f"r{j}" for j in range(i + 1)]  # the next waits for a leave
            lefts[i].set()
        await asyncio.sleep(0.01)
        assert order == ["r0", "r1", "r2", "r3"]  # all inside, none has ended
        assert not any(t.done() for t in tasks)
        done.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())


def test_a_run_that_ends_or_fails_gives_its_place_back() -> None:
    async def scenario() -> None:
        gate = StartGate(1)
        with pytest.raises(RuntimeError):
            async with gate.entered():
                raise RuntimeError("the run broke before any model call")
        async with gate.entered():
            pass
        await asyncio.wait_for(_enter(gate, "next", [], None, _set()), 1)

    asyncio.run(scenario())


def _set() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


def test_a_run_holding_its_place_too_long_lets_the_next_in_anyway() -> None:
    async def scenario() -> None:
        gate, order, done = StartGate(1, max_hold_s=0.05), [], asyncio.Event()
        first = asyncio.create_task(_enter(gate, "slow", order, asyncio.Event(), done))
        second = asyncio.create_task(_enter(gate, "next", order, None, done))
        await asyncio.wait_for(_until(lambda: order == ["slow", "next"]), 5)
        done.set()
        first.cancel()
        await asyncio.gather(first, second, return_exceptions=True)

    asyncio.run(scenario())


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.005)


def test_a_run_inside_does_not_wait_again_nor_a_cancelled_waiter_keep_a_place() -> None:
    async def scenario() -> None:
        gate, order = StartGate(1), []
        holding, release = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with gate.entered():  # a start that resumes an earlier run: same place
                await asyncio.wait_for(_enter(gate, "nested", order, None, _set()), 1)
                holding.set()
                await release.wait()

        held = asyncio.create_task(holder())
        await holding.wait()
        waiter = asyncio.create_task(_enter(gate, "gave up", order, None, _set()))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        await held
        await asyncio.wait_for(_enter(gate, "after", order, None, _set()), 1)
        assert order == ["nested", "after"]

    asyncio.run(scenario())


def test_a_run_started_from_a_run_that_left_waits_in_line_like_any_other() -> None:
    """A task made inside a run (a listener's follow-up) inherits its context: once that run
    has left the gate, a run the task starts waits for a place like any other."""
    async def scenario() -> None:
        gate, order = StartGate(1), []
        holder_in = asyncio.Event()
        spawned: list[asyncio.Task[None]] = []

        async def follow_up() -> None:
            await holder_in.wait()
            await _enter(gate, "follow-up", order, None, _set())

        async def parent() -> None:
            async with gate.entered():
                leave_start_gate()
                spawned.append(asyncio.create_task(follow_up()))

        async def holder() -> None:
            async with gate.entered():
                order.append("holder")
                holder_in.set()
                await asyncio.sleep(0.05)
                order.append("holder left")

        await parent()
        await asyncio.wait_for(asyncio.gather(holder(), *spawned), 5)
        assert order == ["holder", "holder left", "follow-up"]

    asyncio.run(scenario())


def test_waiting_for_a_model_endpoint_lets_the_next_run_in() -> None:
    """A run that waits for a slot of its model's endpoint waits on the world: it leaves
    the gate before the wait, so runs that need no such slot are not held up behind it."""
    from orchestrator.model_slots import model_slot

    async def scenario() -> None:
        model = FakeChatModel(metadata={"orchestrator_slots": 1})
        gate, order = StartGate(1, max_hold_s=3600), []
        busy, free = asyncio.Event(), asyncio.Event()

        async def busy_call() -> None:  # the endpoint's one slot, taken outside the gate
            async with model_slot(model):
                busy.set()
                await free.wait()

        async def queued_run() -> None:
            async with gate.entered():
                order.append("queued")
                async with model_slot(model):  # waits for the endpoint
                    order.append("called")

        taken = asyncio.create_task(busy_call())
        await busy.wait()
        queued = asyncio.create_task(queued_run())
        await asyncio.wait_for(_enter(gate, "next", order, None, _set()), 5)
        assert order == ["queued", "next"]  # in while the first still waits for the slot
        free.set()
        await asyncio.wait_for(asyncio.gather(taken, queued), 5)
        assert order == ["queued", "next", "called"]

    asyncio.run(scenario())


def test_a_gate_kept_per_event_loop_forgets_closed_loops() -> None:
    gate = StartGate(1)

    async def burst() -> None:  # a waiter: its loop's semaphore then refers to the loop
        async def one() -> None:
            async with gate.entered():
                await asyncio.sleep(0)
        await asyncio.gather(one(), one(), one())

    for _ in range(5):
        asyncio.run(burst())
    assert len(gate._slots) <= 1  # only the last loop's, until the next loop comes


def test_width_zero_lets_every_run_in_and_a_negative_width_is_refused() -> None:
    async def scenario() -> None:
        gate, order, done = StartGate(0), [], asyncio.Event()
        tasks = [asyncio.create_task(_enter(gate, f"r{i}", order, asyncio.Event(), done))
                 for i in range(5)]
        await asyncio.wait_for(_until(lambda: len(order) == 5), 5)
        done.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="must not be negative"):
        StartGate(-1)


# --- through the engine -----------------------------------------------------------------------

def test_a_burst_of_requests_plans_in_arrival_order_and_runs_overlap(domain_db: Path) -> None:
    orch = Orchestrator(FakeChatModel(latency=0.2), agents=it_ops_agents(), domain_db=domain_db,
                        settings=Settings(home=domain_db.parent, knowledge=False))
    orch._start_gate = StartGate(1, max_hold_s=3600)  # only a leave lets the next run in
    requests = [f"{service} is down: find the root cause"
                for service in ("web-1", "web-2", "web-3", "api-1", "db-1")]
    seen: list[tuple[str, int]] = []  # (event type, request), in the order they happened

    def listener(i: int) -> Any:
        def on_event(event: Any) -> None:
            if event.type in ("plan_made", "answer"):
                seen.append((event.type, i))
        return on_event

    async def burst() -> list[Any]:
        return await asyncio.gather(*(orch.arun(text, thread_id=f"burst-{i}",
                                                on_event=listener(i))
                                      for i, text in enumerate(requests)))

    results = asyncio.run(burst())
    orch.close()
    assert all(r.ok for r in results), [r.error for r in results]
    planned = [i for kind, i in seen if kind == "plan_made"]
    assert planned == [0, 1, 2, 3, 4]  # planned in the order the requests came
    # Each run let the next one in at its plan call, not at its end: every run had planned
    # before the first answer (each run makes four model calls of 0.2 s).
    assert seen.index(("answer", 0)) > seen.index(("plan_made", 4))
    with sqlite3.connect(domain_db.parent / "runs.sqlite") as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM runs")]
    assert statuses == ["ok"] * 5


class _Desk:
    """An external agent that finishes only once another run has made its plan."""

    kind = ToolKind(read_only=False, destructive=False)

    def __init__(self, planned: asyncio.Event) -> None:
        self.planned = planned

    async def run(self, task: ExternalTask, report: Report) -> ExternalReply:
        await asyncio.wait_for(self.planned.wait(), timeout=30)
        return ExternalReply(f"Opened ticket T-1: {task.goal}")


def test_a_playbook_run_lets_the_next_run_in_when_its_first_subtask_starts(
        domain_db: Path) -> None:
    """A playbook plans with no model call: its first subtask is where it leaves the gate
    (here an external agent that waits for the next run, which must get in meanwhile)."""
    async def scenario() -> tuple[Any, Any]:
        planned = asyncio.Event()
        desk = AgentSpec(name="service_desk", description="Opens tickets in the service desk.",
                         skills=["open a ticket"], external=_Desk(planned))
        playbook = Playbook.model_validate({
            "name": "desk_ticket", "trigger": {"pattern": "^ticket for (?P<what>.+)$"},
            "inputs": ["what"],
            "steps": [{"id": "open", "agent": "service_desk", "goal": "Open a ticket: {what}",
                       "kind": "act"}]})
        orch = Orchestrator("fake", agents=[*it_ops_agents(), desk], playbooks=[playbook],
                            domain_db=domain_db, settings=Settings(
                                home=domain_db.parent, knowledge=False, starting_runs=1))
        orch._start_gate = StartGate(1, max_hold_s=3600)  # only a leave lets the next in

        def on_event(event: Any) -> None:
            if event.type == "plan_made":
                planned.set()

        first = asyncio.create_task(orch.arun("ticket for the checkout outage"))
        await asyncio.sleep(0)
        second = asyncio.create_task(orch.arun("check web-1", on_event=on_event))
        done = await asyncio.gather(first, second)
        orch.close()
        return done[0], done[1]

    first, second = asyncio.run(scenario())
    assert first.ok and first.mode == "playbook:desk_ticket" and "T-1" in first.answer, first.error
    assert second.ok, second.error


def test_a_resume_does_not_wait_in_line(domain_db: Path, tmp_path: Path) -> None:
    """An approval resumes its run at once, whatever waits at the gate: a resume holds the
    run's claim, which only its run renews, so waiting in line could lose it."""
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db,
                        runs=RunStore(tmp_path / "runs.sqlite"),
                        checkpointer=tmp_path / "checkpoints.sqlite")
    paused = orch.run("planned failover for web-2")
    assert paused.status == "paused"
    orch._start_gate = StartGate(1, max_hold_s=3600)

    async def scenario() -> Any:
        release, inside = asyncio.Event(), asyncio.Event()

        async def occupant() -> None:  # a new run stuck in its first steps
            async with orch._start_gate.entered():
                inside.set()
                await release.wait()

        occupied = asyncio.create_task(occupant())
        await inside.wait()
        try:
            return await asyncio.wait_for(orch.aresume(paused.thread_id, True,
                                                       approver="alice"), 30)
        finally:
            release.set()
            await occupied

    done = asyncio.run(scenario())
    orch.close()
    assert done.ok, done.error
    with sqlite3.connect(domain_db) as db:
        assert db.execute("SELECT pool FROM routes WHERE service = 'web-2'").fetchone()[0] \
            != "web-primary"
