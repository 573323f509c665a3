"""Group commit of the checkpointer's writes: the writes waiting together share one commit,
each caller resumes only once its write is committed, a failing write fails alone, and a
store dropped without ``close`` lets its thread and connection go."""

from __future__ import annotations

import asyncio
import gc
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest

from orchestrator import Orchestrator
from orchestrator.config import Settings
from orchestrator.evals.bench.engine import bench_agents, request
from orchestrator.models.fake import FakeChatModel
from orchestrator.storage.group_commit import GroupCommitter
from orchestrator.storage.handoff import Handoff
from orchestrator.storage.sqlite import connect


def table(path: Path) -> sqlite3.Connection:
    conn = connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY)")
    conn.commit()
    return conn


def committed(path: Path) -> list[int]:
    """What another connection (another process) sees in the file."""
    other = sqlite3.connect(path)
    try:
        return [row[0] for row in other.execute("SELECT x FROM t ORDER BY x")]
    finally:
        other.close()


async def test_writes_waiting_together_share_a_commit_and_return_once_committed(
        tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    conn = table(path)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    lock = threading.RLock()
    worker = GroupCommitter(conn, lock, name="test-commits")
    hold = threading.Event()

    def insert(x: int) -> int:
        if x == 0:
            hold.wait(10)  # the first call holds the worker while the others queue
        conn.execute("INSERT INTO t VALUES (?)", (x,))
        return x

    first = worker.submit(insert, 0)
    await asyncio.sleep(0.05)
    rest = [worker.submit(insert, x) for x in range(1, 20)]
    hold.set()
    assert await asyncio.gather(first, *rest) == list(range(20))
    assert committed(path) == list(range(20))  # every caller resumed after its commit
    commits = [s for s in statements if s == "COMMIT"]
    assert len(commits) == 2, statements  # the first alone, the 19 that waited together
    worker.close()
    conn.close()


async def test_a_failing_write_fails_alone_and_its_batch_mates_are_committed(
        tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    conn = table(path)
    worker = GroupCommitter(conn, threading.RLock(), name="test-commits")
    hold = threading.Event()

    def insert(x: int) -> None:
        if x == 1:
            hold.wait(10)
        conn.execute("INSERT INTO t VALUES (?)", (x,))
        if x == 3:  # a write that fails after it wrote: none of it may stay
            conn.execute("INSERT INTO t VALUES (?)", (30,))
            raise ValueError("broken write")

    first = worker.submit(insert, 1)
    await asyncio.sleep(0.05)
    batch = [worker.submit(insert, x) for x in (2, 3, 4)]
    hold.set()
    outcomes = await asyncio.gather(first, *batch, return_exceptions=True)
    assert outcomes[:2] == [None, None] and outcomes[3] is None
    assert isinstance(outcomes[2], ValueError)
    assert committed(path) == [1, 2, 4]
    worker.close()
    conn.close()


async def test_a_commit_that_fails_fails_every_write_of_its_batch(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    conn = table(path)
    conn.execute("PRAGMA busy_timeout = 0")
    worker = GroupCommitter(conn, threading.RLock(), name="test-commits")
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the file: the writes cannot land

    def insert(x: int) -> None:
        conn.execute("INSERT INTO t VALUES (?)", (x,))

    outcomes = await asyncio.gather(*(worker.submit(insert, x) for x in range(3)),
                                    return_exceptions=True)
    assert all(isinstance(o, sqlite3.OperationalError) for o in outcomes), outcomes
    other.execute("COMMIT")
    assert committed(path) == []
    assert await worker.call(insert, 7) is None  # the next batch works
    assert committed(path) == [7]
    worker.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        worker.submit(insert, 8)
    conn.close()
    other.close()


def test_a_committer_dropped_without_close_ends_its_thread(tmp_path: Path) -> None:
    conn = table(tmp_path / "g.sqlite")
    worker = GroupCommitter(conn, threading.RLock(), name="test-dropped")
    asyncio.run(worker.call(conn.execute, "INSERT INTO t VALUES (1)"))
    thread = worker._thread
    del worker
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()  # the store (and its connection) could be collected
    conn.close()


async def test_concurrent_runs_commit_their_checkpoints_together(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    """The engine's use: 40 runs at once write fewer commits than checkpoints, and every
    run's conversation is there afterwards."""
    import orchestrator.storage.sqlite as backend

    statements: list[str] = []
    opened = backend.connect

    def traced(path: Path) -> sqlite3.Connection:
        conn = opened(path)
        if path.name == "checkpoints.sqlite":
            conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(backend, "connect", traced)
    # All 40 at once: the start gate would spread their first steps out (and so their writes).
    settings = Settings(home=tmp_path, knowledge=False, starting_runs=0)  # type: ignore[call-arg]
    async with Orchestrator(FakeChatModel(latency=0.01), agents=bench_agents(),
                            settings=settings, checkpointer=settings.checkpoints_path) as orch:
        results = await asyncio.gather(*(orch.arun(request(2, False), thread_id=f"t{i}")
                                         for i in range(40)))
        assert all(r.ok for r in results)
        for i in (0, 39):
            assert [role for role, _ in await orch.history(f"t{i}")] == ["user", "assistant"]
    writes = sum(s.startswith("INSERT OR REPLACE INTO checkpoints") for s in statements)
    commits = statements.count("COMMIT")
    assert settings.checkpoints_path.name == "checkpoints.sqlite" and writes >= 40 * 4
    assert commits < writes / 2, (commits, writes)


async def test_calls_queued_in_one_turn_of_the_loop_are_committed_max_batch_at_a_time(
        tmp_path: Path) -> None:
    """The calls of a turn reach the worker in one hand-off; a transaction still takes at
    most ``max_batch`` of them (the bound on how long the file's write lock is held), the
    rest going first into the next one, in order."""
    conn = table(tmp_path / "t.sqlite")
    committer = GroupCommitter(conn, threading.RLock(), name="test", max_batch=4)
    sizes: list[int] = []
    run = committer._batch

    def counted(batch: list[Any]) -> None:
        sizes.append(len(batch))
        run(batch)

    committer._batch = counted  # type: ignore[method-assign]
    try:
        await asyncio.gather(*(committer.call(conn.execute, "INSERT INTO t VALUES (?)", (i,))
                               for i in range(30)))
    finally:
        committer.close()
    assert max(sizes) <= 4 and sum(sizes) == 30
    assert committed(tmp_path / "t.sqlite") == list(range(30))


def test_a_turns_hand_off_racing_close_is_served_before_the_stop() -> None:
    """close() on another thread while a loop hands over its turn's items: the items reach
    the worker before the stop, never behind it (where nobody would serve them)."""
    jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
    handing = threading.Event()

    class SlowQueue:
        """The queue, with a put of a turn's items that takes long (a GIL switch there)."""

        def put(self, item: Any) -> None:
            if isinstance(item, list):
                handing.set()
                time.sleep(0.2)
            jobs.put(item)

    handoff: Handoff[int] = Handoff(cast(Any, SlowQueue()))
    closer = threading.Thread(target=lambda: (handing.wait(5), handoff.close("stop")))
    closer.start()

    async def turn() -> None:
        handoff.put(1)
        await asyncio.sleep(0)  # the turn ends: its items are handed over
        await asyncio.sleep(0)

    asyncio.run(turn())
    closer.join(5)
    assert [jobs.get_nowait(), jobs.get_nowait()] == [[1], "stop"]
