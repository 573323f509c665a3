"""Two HTTP server replicas on one PostgreSQL database (``ORCHESTRATOR_DATABASE_URL``): a key
made once works on both and a revoke on one is refused by the other at the next request; a
run paused on one replica is read and approved on the other, once."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from orchestrator import Orchestrator
from orchestrator.config import load_settings
from orchestrator.server import KeyStore, create_app
from tests.test_server_openai import LiveServer, error_of
from tests.test_server_openai import no_proxy as no_proxy  # autouse: straight to 127.0.0.1

FAILOVER = "planned failover for web-2"
ROUTE = "SELECT pool FROM routes WHERE service = 'web-2'"


@pytest.fixture
def replicas(postgres_url: str, domain_db: Path, orchestrator_home: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, KeyStore]]:
    """The URLs of two live replicas, and a key store of a third process (an admin's CLI)."""
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", postgres_url)
    with ExitStack() as stack:
        urls = []
        for _ in range(2):
            orch = Orchestrator("fake", domain_db=domain_db,
                                settings=load_settings(knowledge=False))
            stack.callback(orch.close)
            keys = stack.enter_context(KeyStore.from_settings())
            urls.append(stack.enter_context(LiveServer(create_app(orch, keys))).url)
        admin = stack.enter_context(KeyStore.from_settings())
        yield urls[0], urls[1], admin
    assert not (orchestrator_home / "keys.sqlite").exists()


def client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"})


def test_a_run_paused_on_one_replica_is_approved_once_on_the_other(
        replicas: tuple[str, str, KeyStore], domain_db: Path) -> None:
    first, second, admin = replicas
    key = admin.create("ana", "chat,approve", tenant="acme")
    paused = client(first, key).post("/api/runs", json={"request": FAILOVER,
                                                        "thread_id": "cr-7"}).json()
    assert paused["status"] == "paused"
    db = sqlite3.connect(domain_db)
    assert db.execute(ROUTE).fetchone()[0] == "web-primary"

    other = client(second, key)
    assert other.get(f"/api/runs/{paused['run_id']}").json()["status"] == "paused"
    done = other.post("/api/threads/cr-7/approvals", json={"approve": True, "reason": "CR-7"})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "ok" and done.json()["run_id"] == paused["run_id"]
    assert db.execute(ROUTE).fetchone()[0] == "web-backup-b"

    again = client(first, key).post("/api/threads/cr-7/approvals", json={"approve": True})
    assert again.status_code == 400 and "no paused run" in error_of(again)["message"]
    assert client(first, key).get(f"/api/runs/{paused['run_id']}").json()["status"] == "ok"


def test_a_key_works_on_every_replica_until_it_is_revoked_anywhere(
        replicas: tuple[str, str, KeyStore]) -> None:
    first, second, admin = replicas
    key = admin.create("ci-bot", "chat", tenant="acme")
    assert client(first, key).get("/api/approvals").status_code == 200
    assert client(second, key).get("/api/approvals").status_code == 200
    admin.revoke("ci-bot")
    assert client(first, key).get("/api/approvals").status_code == 401
    assert client(second, key).get("/api/approvals").status_code == 401
