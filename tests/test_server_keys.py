"""API keys: stored hashed, scoped, revocable at once, and managed from the CLI."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from orchestrator import Orchestrator
from orchestrator.server import ApiKeyError, KeyStore
from orchestrator.server.keys import digest
from tests.test_cli import cli
from tests.test_server_openai import PAGE, LiveServer, alerts, client, error_of, post, serving

Served = tuple[LiveServer, Orchestrator, KeyStore]


@pytest.fixture
def served(domain_db: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(domain_db, tmp_path) as running:
        yield running


def stored_bytes(home: Path) -> bytes:
    """Every byte the key store has on disk (the database and its WAL)."""
    return b"".join(path.read_bytes() for path in sorted(home.glob("keys.sqlite*")))


def test_a_key_is_random_shown_once_and_stored_only_as_its_hash(
        orchestrator_home: Path) -> None:
    with KeyStore.from_settings() as keys:
        key = keys.create("ci-bot", "chat, ingest", tenant="payments")
        other = keys.create("ci-bot-2", ["chat"])
        info = keys.verify(key)
        assert info is not None
        assert (info.name, info.tenant, info.scopes) == (
            "ci-bot", "payments", frozenset({"chat", "ingest"}))
        assert info.allows("ingest") and not info.allows("admin")
        assert keys.verify(key + "x") is None and keys.verify("sk-" + key[3:]) is None
        on_disk = stored_bytes(orchestrator_home)
    assert key.startswith("ok_") and len(key) == 46 and key != other
    assert key.encode() not in on_disk and key[3:].encode() not in on_disk
    assert other.encode() not in on_disk
    assert digest(key).encode() in on_disk


def test_names_scopes_and_tenants_are_checked_and_a_revoked_name_can_be_reused(
        orchestrator_home: Path) -> None:
    with KeyStore.from_settings() as keys:
        for bad in ({"scopes": "chat,root"}, {"scopes": ""}, {"tenant": "Acme"},
                    {"tenant": "a:b"}, {"name": "has space"}):
            args = {"name": "k", "scopes": "chat", "tenant": "default", **bad}
            with pytest.raises(ApiKeyError):
                keys.create(args["name"], args["scopes"], args["tenant"])
        first = keys.create("k", ["chat"])
        with pytest.raises(ApiKeyError, match="exists"):
            keys.create("k", ["chat"])
        assert keys.revoke("k").revoked
        assert keys.verify(first) is None
        with pytest.raises(ApiKeyError, match="no active key"):
            keys.revoke("k")
        second = keys.create("k", ["approve"])
        assert [(k.name, k.revoked) for k in keys.list()] == [("k", True), ("k", False)]
        info = keys.verify(second)
        assert info is not None and info.scopes == {"approve"}


def test_every_route_but_health_needs_a_valid_key_with_its_scope(
        served: Served, db: sqlite3.Connection) -> None:
    server, _, keys = served
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    body = {"model": "orchestrator", "messages": [{"role": "user", "content": PAGE}]}

    missing = post(server, None, body)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert error_of(missing)["code"] == "missing_api_key"
    listed = httpx.get(f"{server.url}/v1/models")
    assert listed.status_code == 401 and error_of(listed)["code"] == "missing_api_key"
    with pytest.raises(openai.AuthenticationError) as caught:
        client(server, "ok_" + "A" * 43).chat.completions.create(**body)
    assert caught.value.code == "invalid_api_key"

    approver = keys.create("approver", ["approve"])
    assert "orchestrator" in [m.id for m in client(server, approver).models.list()]
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client(server, approver).chat.completions.create(**body)
    assert denied.value.code == "missing_scope" and "'chat'" in denied.value.message
    forbidden = post(server, approver, body)
    assert forbidden.status_code == 403 and error_of(forbidden)["type"] == "permission_error"
    assert alerts(db) == []  # nothing ran for a refused key


def test_a_key_revoked_from_the_cli_is_refused_by_the_running_server(
        served: Served, db: sqlite3.Connection) -> None:
    server = served[0]
    made = cli("keys", "create", "laptop", "--scopes", "chat", "--tenant", "acme", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    chat = client(server, key)
    chat.chat.completions.create(model="orchestrator",
                                 messages=[{"role": "user", "content": PAGE}])
    assert alerts(db) == ["web-3"]

    revoked = cli("keys", "revoke", "laptop")
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(openai.AuthenticationError) as caught:
        chat.chat.completions.create(model="orchestrator",
                                     messages=[{"role": "user", "content": PAGE}])
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
    assert alerts(db) == ["web-3"]


def test_keys_commands_create_list_and_revoke(orchestrator_home: Path) -> None:
    made = cli("keys", "create", "alice", "--scopes", "chat,approve")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("ok_") and "not shown again" in made.stderr
    with KeyStore.from_settings() as keys:
        info = keys.verify(key)
    assert info is not None and (info.tenant, info.scopes) == ("default", {"chat", "approve"})

    table = cli("keys", "list")
    assert "alice" in table.stdout and "approve, chat" in table.stdout
    assert "active" in table.stdout and key not in table.stdout
    (listed,) = json.loads(cli("keys", "list", "--json").stdout)
    assert listed["name"] == "alice" and listed["revoked"] is False and "key" not in listed

    assert cli("keys", "revoke", "alice").returncode == 0
    (listed,) = json.loads(cli("keys", "list", "--json").stdout)
    assert listed["revoked"] is True
    again = cli("keys", "revoke", "alice")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        "error: no active key named 'alice' (`orchestrator keys list` shows them)"]
    bad = cli("keys", "create", "bob", "--scopes", "chat,root")
    assert bad.returncode == 2 and "unknown scope root" in bad.stderr
    assert "Traceback" not in bad.stderr + again.stderr
    assert key.encode() not in stored_bytes(orchestrator_home)


def test_a_key_is_checked_past_a_writer_and_from_a_thread_when_the_reader_is_busy(
        tmp_path: Path) -> None:
    """The server checks a key on its event loop: another process writing the key file does
    not hold the check up (WAL), a busy reader sends it to a thread, and a revoke counts at
    the next request."""
    import asyncio

    with KeyStore(tmp_path / "keys.sqlite") as keys:
        key = keys.create("ops", "chat")
        writer = sqlite3.connect(tmp_path / "keys.sqlite", isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # another process, mid-write
        writer.execute("UPDATE api_keys SET scopes = scopes")
        checked = asyncio.run(asyncio.wait_for(keys.averify(key), 5))
        assert checked is not None and checked.name == "ops"
        writer.execute("ROLLBACK")
        writer.close()
        reader_lock = keys._rows._reader_lock  # type: ignore[attr-defined]
        with reader_lock:  # the loop's read connection is in use: a thread reads instead
            checked = asyncio.run(keys.averify(key))
        assert checked is not None and checked.scopes == frozenset({"chat"})
        assert asyncio.run(keys.averify(key + "x")) is None
        keys.revoke("ops")
        assert asyncio.run(keys.averify(key)) is None
