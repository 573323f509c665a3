"""A run's events reach the run store in bursts: fewer transactions than events, each event
on record before anyone is told of it, and a listener's exception still fails the run."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import sqlite3
import threading
import weakref
from collections.abc import Awaitable, Sequence
from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.config import Settings
from orchestrator.event_writer import BurstQueue, EventWriter
from orchestrator.events import Event
from orchestrator.leases import Owner
from orchestrator.results import RunResult
from orchestrator.runs import Burst
from orchestrator.storage.sqlite_runs import SqliteRunStore
from tests.conftest import INCIDENT_REQUEST

CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="none")


class CountingStore(SqliteRunStore):
    """The real SQLite run store, counting its event transactions."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []
        self.threads: set[str] = set()
        self.transactions: list[list[str]] = []
        """The runs of each transaction of bursts, in order."""

    def append_bursts(self, bursts: Sequence[Burst]) -> list[bool | Exception]:
        self.transactions.append([burst.run_id for burst in bursts])
        self.batches.extend(len(burst.events) for burst in bursts)
        self.threads.add(threading.current_thread().name)
        return super().append_bursts(bursts)


def test_events_are_stored_in_bursts_and_each_is_on_record_when_told(
        domain_db: Path, tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "runs.sqlite")
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
    # every store is written from the orchestrator's event thread, never on the loop
    assert store.threads == {"run-events"}, store.threads


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
    store = CountingStore(tmp_path / "runs.sqlite")
    owner = Owner.here()
    store.start_run("r1", "t1", "a request", owner=owner, lease_s=30)

    async def run() -> tuple[bool, int, int, bool]:
        bursts = BurstQueue(store)
        try:
            writer = EventWriter(bursts, "r1", owner, None)
            nothing_yet = writer.unstored() is None
            writer.add(Event(type="run_started", run_id="r1"))
            writer.add(Event(type="run_started", run_id="r1"))
            waiting = writer.unstored()  # this turn's burst, sent at once
            assert waiting is not None
            await waiting
            stored = len(store.events("r1"))
            writer.flush()
            return nothing_yet, stored, len(store.batches), writer.unstored() is None
        finally:
            bursts.close()

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


def test_concurrent_runs_share_a_transaction_and_each_keeps_its_own_order(
        domain_db: Path, tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "runs.sqlite")
    orch = Orchestrator("fake:latency=0.02", agents=it_ops_agents(), domain_db=domain_db,
                        runs=store)

    async def many() -> list[RunResult]:
        return list(await asyncio.gather(*(orch.arun(INCIDENT_REQUEST) for _ in range(8))))

    try:
        results = asyncio.run(many())
    finally:
        orch.close()
    assert all(r.status == "ok" for r in results)
    for result in results:  # each run's record is whole and in the order it happened
        stored = store.events(result.run_id)
        assert [e.type for e in stored] == [e.type for e in result.events]
    # bursts of different runs went in one transaction (one commit for several runs)
    assert any(len(set(runs)) > 1 for runs in store.transactions), store.transactions
    assert sum(len(runs) for runs in store.transactions) == len(store.batches)


def test_a_burst_that_fails_fails_its_own_run_only(tmp_path: Path) -> None:
    store = SqliteRunStore(tmp_path / "runs.sqlite")
    owner = Owner.here()
    for run in ("good", "bad"):
        store.start_run(run, f"t-{run}", "a request", owner=owner, lease_s=30)
    store._conn.execute(
        "CREATE TRIGGER no_bad BEFORE INSERT ON events WHEN NEW.run_id = 'bad' "
        "BEGIN SELECT RAISE(ABORT, 'the disk said no'); END")
    done = store.append_bursts([
        Burst("good", [Event(type="run_started", run_id="good")], owner),
        Burst("bad", [Event(type="run_started", run_id="bad")], owner),
        Burst("good", [Event(type="answer", run_id="good", data={"answer": "x"})], owner)])
    assert done[0] is True and done[2] is True
    assert isinstance(done[1], sqlite3.Error) and "the disk said no" in str(done[1])
    assert [e.type for e in store.events("good")] == ["run_started", "answer"]
    assert store.events("bad") == []


class GatedStore(SqliteRunStore):
    """The real SQLite run store; while ``gate`` is shut, its event transactions wait."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.gate.set()

    def append_bursts(self, bursts: Sequence[Burst]) -> list[bool | Exception]:
        self.gate.wait()
        return super().append_bursts(bursts)


def test_a_run_stopped_while_its_checkpoint_waits_for_events_leaves_the_event_thread_alive(
        domain_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A run's task cancelled while a checkpoint awaits its events in flight (the keeper does
    # this when the lease is lost; so does a caller) used to cancel the event thread's
    # future: the thread then died setting its result, and every later run hung.
    store = GatedStore(tmp_path / "runs.sqlite")
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, runs=store)
    real_unstored = EventWriter.unstored

    def unstored(writer: EventWriter) -> Awaitable[None] | None:
        found = real_unstored(writer)
        if found is None:
            return None

        async def wait() -> None:
            waiting.set()
            try:
                await found
            except asyncio.CancelledError:
                store.gate.set()  # the cancel has reached the wait: let the write go on
                raise

        return wait()

    monkeypatch.setattr(EventWriter, "unstored", unstored)

    async def scenario() -> tuple[RunResult, list[str]]:
        store.gate.clear()
        first = asyncio.ensure_future(orch.arun(INCIDENT_REQUEST))
        await waiting.wait()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        monkeypatch.setattr(EventWriter, "unstored", real_unstored)
        second = await asyncio.wait_for(orch.arun(INCIDENT_REQUEST), timeout=60)
        return second, [run.status for run in store.list_runs()]

    waiting = asyncio.Event()
    try:
        second, statuses = asyncio.run(scenario())
    finally:
        store.gate.set()
        orch.close()
    assert second.status == "ok"
    assert [e.type for e in store.events(second.run_id)] == [e.type for e in second.events]
    # the stopped run's record ended too (it is not left "running" until its lease runs out)
    assert sorted(statuses) == ["interrupted", "ok"], statuses


class StoreGone(BaseException):
    """What a store may raise that is not an Exception (as gevent's GreenletExit is not)."""


class BreakingStore(SqliteRunStore):
    """The real SQLite run store; its first event transaction raises ``StoreGone``, its
    second returns one outcome too few (a plugin store's bug)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls = 0

    def append_bursts(self, bursts: Sequence[Burst]) -> list[bool | Exception]:
        self.calls += 1
        if self.calls == 1:
            raise StoreGone("the store went away")
        done = super().append_bursts(bursts)
        return done[:-1] if self.calls == 2 else done


def test_a_store_error_of_any_kind_fails_its_bursts_and_the_event_thread_goes_on(
        tmp_path: Path) -> None:
    # Anything escaping the event thread's loop killed it: every later burst then waited
    # for good (and a run's flush() blocks its loop on them).
    store = BreakingStore(tmp_path / "runs.sqlite")
    owner = Owner.here()
    store.start_run("r1", "t1", "a request", owner=owner, lease_s=30)
    bursts = BurstQueue(store)
    try:
        outcomes: list[object] = []
        for _ in range(3):  # one at a time: each its own transaction
            future = bursts.submit(Burst("r1", [Event(type="run_started", run_id="r1")], owner))
            error = future.exception(timeout=30)  # a dead thread: TimeoutError
            outcomes.append(type(error) if error is not None else future.result())
    finally:
        bursts.close()
    # each failed its own burst only; the third was written as usual
    assert outcomes == [StoreGone, RuntimeError, True]
    assert len(store.events("r1")) == 2  # the second's events were written, unconfirmed


def test_store_calls_on_the_event_thread_keep_their_order_with_bursts_and_raise_their_errors(
        tmp_path: Path) -> None:
    store = SqliteRunStore(tmp_path / "runs.sqlite")
    owner = Owner.here()
    bursts = BurstQueue(store)

    def gone() -> None:
        raise StoreGone("the store went away")

    async def scenario() -> tuple[int, int, bool]:
        started = bursts.call(lambda: store.start_run("r1", "t1", "a request", owner=owner,
                                                      lease_s=30))
        written = bursts.submit(Burst("r1", [Event(type="run_started", run_id="r1")], owner))
        counted = bursts.call(lambda: len(store.events("r1")))  # after the burst before it
        abandoned = bursts.call(lambda: len(store.events("r1")))
        abandoned.cancel()  # its caller gave up: the thread goes on
        await started
        with pytest.raises(StoreGone):
            await bursts.call(gone)
        after = await bursts.call(lambda: len(store.events("r1")))
        return await counted, after, written.result(timeout=30)

    try:
        assert asyncio.run(scenario()) == (1, 1, True)
    finally:
        bursts.close()


def test_a_listener_that_raises_stops_the_run_at_once_not_at_the_end_of_its_step(
        domain_db: Path, tmp_path: Path) -> None:
    # The step that runs the plan runs every subtask: once the listener had failed, the
    # alert and the incident after the diagnosis were still written before the run failed.
    store = SqliteRunStore(tmp_path / "runs.sqlite")
    orch = Orchestrator("fake:latency=0.3", agents=it_ops_agents(), domain_db=domain_db,
                        runs=store, settings=Settings(max_retries=0))

    def on_event(event: Event) -> None:
        if event.type == "tool_called" and event.data["tool"] == "find_root_cause":
            raise ValueError("the listener broke")

    with pytest.raises(ValueError, match="the listener broke"):
        orch.fire_event("service_down", {"service": "web-3"}, on_event=on_event)
    [run] = store.list_runs()
    assert run.status == "failed"
    db = sqlite3.connect(domain_db)
    assert [db.execute(f"SELECT count(*) FROM {table} WHERE service = 'web-3'").fetchone()[0]
            for table in ("alerts", "incidents")] == [0, 0]


def test_a_run_still_working_when_the_orchestrator_closes_fails_and_its_record_says_so(
        domain_db: Path, tmp_path: Path) -> None:
    # Closed under a run: its later bursts were refused in a loop callback, so the events
    # were dropped without a word and the run went on (the record kept one event of 20).
    store = SqliteRunStore(tmp_path / "runs.sqlite")  # the caller's: stays open
    orch = Orchestrator("fake:latency=0.1", agents=it_ops_agents(), domain_db=domain_db,
                        runs=store)

    async def scenario() -> None:
        first = asyncio.Event()
        run = asyncio.ensure_future(orch.arun(INCIDENT_REQUEST,
                                              on_event=lambda _: first.set()))
        await first.wait()
        await orch.aclose()
        await run

    with pytest.raises(RuntimeError, match="event thread is closed"):
        asyncio.run(scenario())
    [run] = store.list_runs()
    assert run.status == "failed"


def test_a_piece_of_the_answer_waits_for_the_events_before_it(tmp_path: Path) -> None:
    # Pieces went to on_answer_chunk at once, events once stored: a listener (the server's
    # stream) heard the answer before the last subtask's events (test_answer_streaming's
    # timeline failed about one run in two).
    store = GatedStore(tmp_path / "runs.sqlite")
    owner = Owner.here()
    store.start_run("r1", "t1", "a request", owner=owner, lease_s=30)
    heard: list[str] = []

    async def run() -> None:
        bursts = BurstQueue(store)
        try:
            writer = EventWriter(bursts, "r1", owner, lambda e: heard.append(e.type))
            writer.then(lambda: heard.append("piece 0"))  # nothing before it: at once
            store.gate.clear()
            writer.add(Event(type="subtask_finished", run_id="r1"))
            writer.then(lambda: heard.append("piece 1"))
            await asyncio.sleep(0)  # the burst goes to the event thread, and waits there
            assert heard == ["piece 0"]
            store.gate.set()
            await writer.drain()
        finally:
            store.gate.set()
            bursts.close()

    asyncio.run(run())
    assert heard == ["piece 0", "subtask_finished", "piece 1"]


def test_a_finished_run_keeps_nothing_of_itself_alive(domain_db: Path, tmp_path: Path) -> None:
    # Its tools ran on long-lived tool threads, its events on the event thread: neither may
    # keep the run (its context holds the writer, and so the listener and its events).
    class Listener:
        def __call__(self, event: Event) -> None:
            pass

    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db,
                        runs=SqliteRunStore(tmp_path / "runs.sqlite"))
    listener = Listener()
    heard = weakref.ref(listener)
    try:
        result = orch.run(INCIDENT_REQUEST, on_event=listener)
        assert result.status == "ok"
        del listener
        gc.collect()
        assert heard() is None
    finally:
        orch.close()


def test_flush_on_the_loop_writes_the_events_of_this_turn(tmp_path: Path) -> None:
    """flush() blocks the loop until the bursts are written (a run ending cancelled): the
    events of this turn, which would reach the event thread only at the turn's end, are
    handed over at once instead of waiting for an end that cannot come."""
    bursts = BurstQueue(SqliteRunStore(tmp_path / "runs.sqlite"))
    told: list[str] = []

    async def run_ends() -> None:
        writer = EventWriter(bursts, "r1", Owner.here(), lambda e: told.append(e.type))
        writer.add(Event(type="answer", run_id="r1"))
        writer.flush()

    ended = threading.Thread(target=lambda: asyncio.run(run_ends()), daemon=True)
    ended.start()
    ended.join(10)
    try:
        assert not ended.is_alive(), "flush() blocked the loop for good"
        assert told == ["answer"]
    finally:
        if not ended.is_alive():
            bursts.close()
