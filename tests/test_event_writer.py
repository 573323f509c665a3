"""A run's events reach the run store in bursts: fewer transactions than events, each event
on record before anyone is told of it, and a listener's exception still fails the run."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.config import Settings
from orchestrator.event_writer import EventWriter
from orchestrator.events import Event
from orchestrator.leases import Owner
from orchestrator.storage.sqlite_runs import SqliteRunStore
from tests.conftest import INCIDENT_REQUEST

CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="none")


class CountingStore(SqliteRunStore):
    """The real SQLite run store, counting its event transactions; with ``remote``, the
    orchestrator treats it as a store across a network (written from a thread)."""

    def __init__(self, path: Path, remote: bool) -> None:
        super().__init__(path)
        self.remote = remote
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def append_events(self, run_id: str, events: Sequence[Event], owner: Owner | None = None
                      ) -> bool:
        self.batches.append(len(events))
        self.threads.add(threading.current_thread().name)
        return super().append_events(run_id, events, owner)


@pytest.mark.parametrize("remote", [False, True], ids=["on-the-loop", "remote-from-a-thread"])
def test_events_are_stored_in_bursts_and_each_is_on_record_when_told(
        domain_db: Path, tmp_path: Path, remote: bool) -> None:
    store = CountingStore(tmp_path / "runs.sqlite", remote)
    orch = Orchestrator("fake:latency=0.02", agents=it_ops_agents(), domain_db=domain_db,
                        runs=store)
    seen: list[tuple[str, bool]] = []
    contexts: set[str] = set()

    def on_event(event: Event) -> None:
        stored = store.events(event.run_id)
        seen.append((event.type, any(e.time == event.time and e.type == event.type
                                     for e in stored)))
        contexts.add(CALLER.get())

    token = CALLER.set("the caller's")
    try:
        result = orch.run(INCIDENT_REQUEST, on_event=on_event)
    finally:
        CALLER.reset(token)
    assert result.status == "ok"
    stored = store.events(result.run_id)
    assert [e.type for e in stored] == [t for t, _ in seen] == [e.type for e in result.events]
    assert all(on_record for _, on_record in seen), seen
    assert sum(store.batches) == len(stored)
    assert len(store.batches) < len(stored), store.batches  # some bursts held several
    # listeners run in the run's context (a Temporal activity's heartbeat needs it)
    assert contexts == {"the caller's"}
    # a remote store is written from the orchestrator's event thread, never on the loop
    assert (store.threads == {"MainThread"}) is not remote, store.threads


def test_a_listener_that_raises_fails_the_run_with_its_error(domain_db: Path,
                                                             tmp_path: Path) -> None:
    store = SqliteRunStore(tmp_path / "runs.sqlite")
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, runs=store)

    def on_event(event: Event) -> None:
        if event.type == "plan_made":
            raise ValueError("the listener broke")

    with pytest.raises(ValueError, match="the listener broke"):
        orch.run(INCIDENT_REQUEST, on_event=on_event)
    [run] = store.list_runs()
    assert run.status == "failed"
    # nothing after the failing listener's burst ran to the end
    assert "answer" not in [e.type for e in store.events(run.run_id)]


def test_a_checkpoint_waits_for_the_events_in_flight_and_only_for_them(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "runs.sqlite", remote=True)
    owner = Owner.here()
    store.start_run("r1", "t1", "a request", owner=owner, lease_s=30)

    async def run() -> tuple[bool, int, int, bool]:
        with ThreadPoolExecutor(1) as thread:
            writer = EventWriter(store, "r1", owner, None, thread)
            nothing_yet = writer.unstored() is None
            writer.add(Event(type="run_started", run_id="r1"))
            writer.add(Event(type="run_started", run_id="r1"))
            waiting = writer.unstored()  # this turn's burst, sent at once
            assert waiting is not None
            await waiting
            stored = len(store.events("r1"))
            writer.flush()
            return nothing_yet, stored, len(store.batches), writer.unstored() is None

    assert asyncio.run(run()) == (True, 2, 1, True)  # no wait once nothing is in flight


def test_without_a_run_store_the_listeners_still_hear_every_event(domain_db: Path) -> None:
    # record_runs off: no run store, so nothing is written, but the events still flow
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db,
                        settings=Settings(record_runs=False, knowledge=False))
    assert orch.runs is None
    heard: list[str] = []
    result = orch.run(INCIDENT_REQUEST, on_event=lambda event: heard.append(event.type))
    assert result.status == "ok"
    assert heard == [e.type for e in result.events]
    assert "plan_made" in heard and heard[-1] == "answer", heard
