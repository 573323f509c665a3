"""Shared fixtures: every test gets its own data folder and domain database."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

# Every event emitted in a test (and in the processes tests start) must match its schema
# (orchestrator.events.EVENT_DATA); set before the package is imported.
os.environ["ORCHESTRATOR_STRICT_EVENTS"] = "1"

from orchestrator.domain_db import reset_domain_db

INCIDENT_REQUEST = (
    "web-3 is down: find the root cause, reroute its traffic to a backup, "
    "alert the on-call team and log the incident"
)


@pytest.fixture(autouse=True)
def orchestrator_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Isolate ORCHESTRATOR_* settings and the data folder for each test."""
    home = tmp_path / "home"
    for var in ("ORCHESTRATOR_MODEL", "ORCHESTRATOR_AGENTS_DIR", "OPENAI_API_KEY",
                "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(home))
    # The hashing embedder keeps unit tests fast; tests of real retrieval quality use MiniLM.
    monkeypatch.setenv("ORCHESTRATOR_EMBEDDER", "hash")
    monkeypatch.delenv("ORCHESTRATOR_CHROMA_URL", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_KNOWLEDGE", raising=False)
    # Retries back off 10 ms here, not 0.5 s; the recovery tests check the backoff itself.
    monkeypatch.setenv("ORCHESTRATOR_RETRY_BACKOFF_S", "0.01")
    return home


@pytest.fixture
def domain_db(tmp_path: Path) -> Path:
    return reset_domain_db(tmp_path / "domain.sqlite")


@pytest.fixture
def db(domain_db: Path) -> Iterator[sqlite3.Connection]:
    """A read connection to the test's domain database."""
    conn = sqlite3.connect(domain_db)
    conn.row_factory = sqlite3.Row
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[object]:
    """One throwaway PostgreSQL cluster for the session (tests/support/postgres.py); a test
    takes a database of its own with ``postgres_url``."""
    from tests.support.postgres import start_cluster

    cluster = start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: object) -> str:
    """The URL of a new, empty database in the session's cluster."""
    from tests.support.postgres import Cluster

    assert isinstance(postgres_cluster, Cluster)
    return postgres_cluster.new_database()


@pytest.fixture(scope="session")
def temporal_server() -> Iterator[object]:
    """One Temporal dev server for the session (tests/support/temporal.py): its address in
    ``.address``; each test uses a task queue of its own."""
    from tests.support.temporal import start_dev_server

    server = start_dev_server()
    yield server
    server.stop()
