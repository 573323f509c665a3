"""Storage seams: stores picked from a URL, and the embedded SQLite default under load.

One checkpointer per orchestrator, opened on first use and shared by every run (sync calls
included), closed by ``close``/``aclose`` or ``with``; SQLite files wait for each other
instead of failing with ``database is locked``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.evals.bench.engine import bench_agents, request
from orchestrator.models.fake import FakeChatModel
from orchestrator.runs import BaseRunStore, RunStore
from orchestrator.storage import open_checkpointer, open_run_store, parse_store_url
from orchestrator.write_journal import WriteJournal

HEALTH = "check the health of web-3"


def checkpoint_threads() -> set[threading.Thread]:
    """The threads of open SQLite checkpointers (one each)."""
    return {t for t in threading.enumerate() if t.name.startswith("checkpoints")}


def settings_in(home: Path, **more: object) -> Settings:
    return Settings(home=home, knowledge=False, **more)  # type: ignore[arg-type]


@pytest.mark.parametrize(("location", "backend", "path"), [
    ("runs.sqlite", "sqlite", "runs.sqlite"),
    (Path("/data/runs.sqlite"), "sqlite", "/data/runs.sqlite"),
    ("sqlite:///data/runs.sqlite", "sqlite", "data/runs.sqlite"),
    ("sqlite:////data/runs.sqlite", "sqlite", "/data/runs.sqlite"),
    ("sqlite:///:memory:", "memory", None),
    (":memory:", "memory", None),
    ("memory://", "memory", None),
])
def test_store_urls_name_a_backend(location: str | Path, backend: str, path: str | None
                                   ) -> None:
    url = parse_store_url(location)
    assert url.backend == backend
    assert url.path == (Path(path) if path else None)


@pytest.mark.parametrize("location", ["postgres://bob:s3cret@db/orch",
                                      "postgresql://bob:s3cret@db/orch"])
def test_postgres_urls_name_the_postgres_backend_and_hide_the_password(location: str
                                                                       ) -> None:
    url = parse_store_url(location)
    assert (url.backend, url.url, url.path) == ("postgres", location, None)
    assert "s3cret" not in repr(url) and "s3cret" not in url.redacted
    with pytest.raises(ConfigError) as caught:  # no server at "db": one line, no password
        open_run_store(location)
    assert "s3cret" not in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_schemes_and_hosts_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown checkpointer URL scheme 'mysql'"):
        parse_store_url("mysql://db/orch", what="checkpointer")
    with pytest.raises(ConfigError, match="three slashes"):
        parse_store_url("sqlite://host/runs.sqlite")


def test_backends_meet_the_store_protocols(tmp_path: Path) -> None:
    store = open_run_store(f"sqlite:///{tmp_path}/runs.sqlite")
    assert isinstance(store, BaseRunStore) and isinstance(store, RunStore)
    assert (tmp_path / "runs.sqlite").exists()
    assert isinstance(open_run_store("memory://"), BaseRunStore)
    from orchestrator.storage import open_write_journal

    assert isinstance(open_write_journal(tmp_path / "writes.sqlite"), WriteJournal)


def test_an_in_memory_run_store_records_runs(domain_db: Path, tmp_path: Path) -> None:
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, runs="memory://",
                        settings=settings_in(tmp_path))
    result = orch.run(HEALTH)
    assert result.ok
    assert orch.runs is not None and orch.runs.run(result.run_id)["status"] == "ok"
    assert not (tmp_path / "runs.sqlite").exists()


async def test_a_url_checkpointer_is_a_langgraph_saver_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    async with open_checkpointer(f"sqlite:///{path}") as saver:
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        assert await saver.aget_tuple(config) is None  # type: ignore[arg-type]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_100_concurrent_runs_share_one_checkpointer_and_none_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The load that lost requests to ``database is locked`` when each run opened its own
    connection (100 at once, a five-second busy timeout)."""
    import orchestrator.storage.sqlite as backend

    opened: list[Path] = []
    connect = backend.connect
    monkeypatch.setattr(backend, "connect", lambda path: opened.append(path) or connect(path))
    settings = settings_in(tmp_path, max_parallel=8)
    before = checkpoint_threads()
    async with Orchestrator(FakeChatModel(), agents=bench_agents(), settings=settings,
                            checkpointer=settings.checkpoints_path) as orch:
        gate = asyncio.Semaphore(100)

        async def one(i: int) -> bool:
            async with gate:
                return (await orch.arun(request(2, False), thread_id=f"t{i}")).ok

        done = await asyncio.gather(*(one(i) for i in range(200)))
        assert all(done)
        state = await orch.history("t7")
        assert [role for role, _ in state] == ["user", "assistant"]
    assert opened.count(settings.checkpoints_path) == 1  # one connection for 200 runs
    assert not checkpoint_threads() - before  # closed on leaving the block (others may end)


def test_runs_wait_for_another_process_holding_the_checkpoint_file(
        domain_db: Path, tmp_path: Path) -> None:
    """Longer than the five seconds after which a run used to fail with ``database is
    locked``: the run waits and finishes."""
    path = tmp_path / "checkpoints.sqlite"
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, checkpointer=path,
                        settings=settings_in(tmp_path))
    assert orch.run(HEALTH).ok  # the file exists, in WAL mode
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock

    def release() -> None:
        time.sleep(5.5)
        other.execute("COMMIT")

    holder = threading.Thread(target=release)
    started = time.monotonic()
    holder.start()
    try:
        result = orch.run(HEALTH)
    finally:
        holder.join()
    assert result.ok, result.error
    assert time.monotonic() - started >= 5.5
    orch.close()
    other.close()


def test_sync_calls_share_the_checkpointer_and_close_releases_it(domain_db: Path,
                                                                  tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite"
    before = checkpoint_threads()
    with Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, checkpointer=path,
                      settings=settings_in(tmp_path)) as orch:
        assert orch.run(HEALTH, thread_id="conv").ok  # each call has an event loop of its own
        assert orch.run("check the health of web-1", thread_id="conv").ok
        assert len(checkpoint_threads() - before) == 1
    assert not checkpoint_threads() - before
    again = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db,
                         checkpointer=f"sqlite:///{path}", settings=settings_in(tmp_path))
    turns = asyncio.run(again.history("conv"))
    assert [role for role, _ in turns] == ["user", "assistant"] * 2
    again.close()


def test_a_new_turn_reads_its_threads_checkpoint_once(domain_db: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The check that nothing on the thread waits for an approval reads the latest
    checkpoint; the run then starts from that read instead of reading the row again."""
    from orchestrator.storage.sqlite import SqliteCheckpointSaver

    reads: list[str] = []
    get_tuple = SqliteCheckpointSaver.get_tuple

    def counted(self: SqliteCheckpointSaver, config: Any) -> Any:
        reads.append(config["configurable"]["thread_id"])
        return get_tuple(self, config)

    monkeypatch.setattr(SqliteCheckpointSaver, "get_tuple", counted)
    with Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db,
                      checkpointer=tmp_path / "checkpoints.sqlite",
                      settings=settings_in(tmp_path)) as orch:
        first = orch.run(HEALTH, thread_id="conv")
        reads.clear()
        second = orch.run("check the health of web-1", thread_id="conv")
        assert reads == ["conv"]
        reads.clear()
        fresh = orch.run(HEALTH)  # a new thread: nothing to read
        assert reads == []
        turns = asyncio.run(orch.history("conv"))
    assert first.ok and second.ok and fresh.ok
    assert [role for role, _ in turns] == ["user", "assistant"] * 2  # went on from turn 1


def test_a_read_ahead_answers_only_the_first_call_and_only_for_its_thread(tmp_path: Path
                                                                          ) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    from orchestrator.storage.threaded_saver import read_ahead

    async def scenario() -> None:
        with open_checkpointer(tmp_path / "checkpoints.sqlite") as saver:
            def config(thread: str) -> Any:
                return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}

            await saver.aput(config("t"), empty_checkpoint(), {}, {})
            stored = await saver.aget_tuple(config("t"))
            assert stored is not None
            stale = stored._replace(metadata={"stale": True})
            with read_ahead(saver, config("t"), stale):  # the first read of "t" gets it
                assert (await saver.aget_tuple(config("t"))).metadata == {"stale": True}
                assert (await saver.aget_tuple(config("t"))).metadata == stored.metadata
            with read_ahead(saver, config("t"), stale):  # another thread's read first: used up
                assert await saver.aget_tuple(config("u")) is None
                assert (await saver.aget_tuple(config("t"))).metadata == stored.metadata
            with read_ahead(saver, config("t"), stale):  # a write first: used up
                await saver.aput(config("t"), empty_checkpoint(), {}, {})
                assert (await saver.aget_tuple(config("t"))).metadata != {"stale": True}
            with read_ahead(saver, config("t"), stale):  # a given checkpoint: not the latest
                given = {"configurable": {**config("t")["configurable"],
                                          "checkpoint_id": stored.checkpoint["id"]}}
                assert (await saver.aget_tuple(given)).metadata == stored.metadata
                assert (await saver.aget_tuple(config("t"))).metadata != {"stale": True}

    asyncio.run(scenario())


def test_a_read_ahead_is_for_its_own_saver_only(tmp_path: Path) -> None:
    """Another store's read of the same thread gets that store's checkpoint (and uses the
    read ahead up); a saver that does not read through threads is never handed one."""
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.memory import InMemorySaver

    from orchestrator.storage.threaded_saver import read_ahead

    config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}

    async def scenario() -> None:
        with open_checkpointer(tmp_path / "a.sqlite") as first, \
                open_checkpointer(tmp_path / "b.sqlite") as second:
            await first.aput(config, empty_checkpoint(), {"store": "a"}, {})
            await second.aput(config, empty_checkpoint(), {"store": "b"}, {})
            stale = (await first.aget_tuple(config))._replace(metadata={"stale": True})
            with read_ahead(first, config, stale):
                assert (await second.aget_tuple(config)).metadata == {"store": "b"}
                assert (await first.aget_tuple(config)).metadata == {"store": "a"}
            memory = InMemorySaver()
            await memory.aput(config, empty_checkpoint(), {"store": "memory"}, {})
            with read_ahead(memory, config, stale):
                assert (await memory.aget_tuple(config)).metadata == {"store": "memory"}
                assert (await first.aget_tuple(config)).metadata == {"store": "a"}

    asyncio.run(scenario())
