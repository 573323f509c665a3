"""ORCHESTRATOR_DATABASE_POOL_SIZE bounds each PostgreSQL pool of a process (run store,
write journal, API keys, checkpoints, business database): concurrent runs wait for a
connection instead of opening more, and all finish. A real server: ``postgres_url``
(tests/conftest.py); connections counted in ``pg_stat_activity`` while the runs go.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from orchestrator import Orchestrator
from orchestrator.config import DatabaseServer, Settings, load_settings
from orchestrator.domain_db import reset_domain_db
from orchestrator.domain_pg import _pools, close_pools
from orchestrator.server.keys import KeyStore
from tests.conftest import INCIDENT_REQUEST

POOL_SIZE = 2
RUNS = 12


@pytest.fixture(autouse=True)
def closed_pools() -> Iterator[None]:
    """The business database's pools (one per process) closed after each test."""
    yield
    close_pools()


class Sampler:
    """Counts, from a thread of its own, the connections to one database (its own left
    out) and each pool's size, until stopped; keeps the most seen."""

    def __init__(self, url: str, pools: Callable[[], dict[str, ConnectionPool[Any]]]) -> None:
        self.url, self.pools = url, pools
        self.most_connections = 0
        self.most_per_pool: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()").fetchone()
                self.most_connections = max(self.most_connections, row[0] if row else 0)
                for name, pool in self.pools().items():
                    size = pool.get_stats()["pool_size"]
                    self.most_per_pool[name] = max(self.most_per_pool.get(name, 0), size)
                self.samples += 1
                self._stop.wait(0.002)


def test_concurrent_runs_hold_at_most_the_pool_size_per_pool_and_all_finish(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As `orchestrator serve` and `orchestrator worker` get it: from the environment.
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_POOL_SIZE", str(POOL_SIZE))
    settings = load_settings(home=tmp_path / "home", knowledge=False)
    reset_domain_db(postgres_url)
    orch = Orchestrator.from_settings(settings)
    keys = KeyStore.from_settings(settings)
    key = keys.create("ci-bot", ["chat"])

    def pools() -> dict[str, ConnectionPool[Any]]:
        found: dict[str, ConnectionPool[Any]] = {
            "runs": orch.runs._pool,  # type: ignore[union-attr]
            "journal": orch._engine.journal._pool,  # type: ignore[attr-defined]
            "keys": keys._rows._pool,  # type: ignore[attr-defined]
            "business": next(iter(_pools.values())),
        }
        if orch._checkpoints is not None and orch._checkpoints._saver is not None:
            found["checkpoints"] = orch._checkpoints._saver.conn  # type: ignore[attr-defined]
        return found

    async def runs() -> list[Any]:
        return await asyncio.gather(*(orch.arun(INCIDENT_REQUEST, thread_id=f"t{i}")
                                      for i in range(RUNS)))

    try:
        with Sampler(postgres_url, pools) as sampler, ThreadPoolExecutor(8) as threads:
            checks = [threads.submit(keys.verify, key) for _ in range(40)]  # a server's
            results = asyncio.run(runs())
            assert all(check.result().name == "ci-bot" for check in checks)
        final = pools()
    finally:
        orch.close()
        keys.close()

    assert [r.status for r in results] == ["ok"] * RUNS, [r.answer for r in results]
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT count(*) FROM business.incidents "
                           "WHERE service = 'web-3'").fetchone()
        assert row == (RUNS,)  # every run wrote, through a pool of two
    assert set(final) == {"runs", "journal", "keys", "business", "checkpoints"}
    assert sampler.samples > 10
    assert sampler.most_connections <= POOL_SIZE * len(final), sampler.most_connections
    assert all(most <= POOL_SIZE for most in sampler.most_per_pool.values()), \
        sampler.most_per_pool
    assert {name: pool.max_size for name, pool in final.items()} == dict.fromkeys(final,
                                                                                  POOL_SIZE)
    # The bound was reached: runs waited for a connection rather than opening one.
    waited = {name: pool.get_stats().get("requests_queued", 0) for name, pool in final.items()}
    assert sum(waited.values()) > 0, waited


def test_unset_keeps_each_stores_own_pool_size(postgres_url: str, tmp_path: Path) -> None:
    default = Settings(home=tmp_path, database_url=postgres_url).stores
    assert default.runs == DatabaseServer(postgres_url)
    assert "@" not in repr(default)  # the URL, which may hold a password, is not shown
    sized = Settings(home=tmp_path, database_url=postgres_url, database_pool_size=3).stores
    assert {sized.runs, sized.checkpoints, sized.writes, sized.keys} == {
        DatabaseServer(postgres_url, pool_size=3)}
    from orchestrator.storage import open_run_store

    store = open_run_store(default.runs)
    try:
        assert store._pool.max_size == 8  # type: ignore[attr-defined]
    finally:
        store.close()


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_pool_size_is_one_line_from_serve_and_worker(command: str, value: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", command], text=True, capture_output=True,
        env={**os.environ, "COLUMNS": "200", "ORCHESTRATOR_DATABASE_POOL_SIZE": value},
        timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ORCHESTRATOR_DATABASE_POOL_SIZE" in errors[0], proc.stderr
