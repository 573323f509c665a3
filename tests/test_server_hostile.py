"""What a hostile review of the HTTP server found, each reproduced against uvicorn on
127.0.0.1 before its fix: tenant ``a`` reached tenant ``a-``'s collections (``-plans`` was
stored as ``a---plans``); event data nested 300 deep passed the size check and broke the
checkpoint with a 500; headers of 16 MB were accepted; ``keys.sqlite`` was world-readable."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import RequestError
from orchestrator.server.knowledge_api import shown_name, stored_name
from tests.test_server_native import Served, serving
from tests.test_server_openai import no_proxy as no_proxy  # autouse: straight to 127.0.0.1


@pytest.fixture
def served(domain_db: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(domain_db, tmp_path) as running:
        yield running


def test_a_tenant_name_cannot_make_another_tenants_collection_prefix(served: Served) -> None:
    for bad in ("a-", "a--b", "-a"):
        with pytest.raises(RequestError):
            served.keys.create(f"k{len(bad)}{bad.strip('-')}", "chat,ingest", tenant=bad)
    assert served.keys.create("ok", "chat", tenant="a-b")  # one dash inside is fine
    ingest = served.client("a", "chat,ingest", tenant="a")
    refused = ingest.get("/api/knowledge/search", params={"q": "plan", "collection": "-plans"})
    assert refused.status_code in (400, 404) and "error" in refused.json()
    # the store's name of "a"'s "-plans" would read as a "--" tenant's "plans": never shown
    assert shown_name("a", "a---plans") is None
    assert shown_name("a", stored_name("a", "plans")) == "plans"


def test_deeply_nested_event_data_is_a_clear_error_and_runs_nothing(served: Served) -> None:
    chat = served.client("ops")
    data = "1"
    for _ in range(300):
        data = '{"a":' + data + "}"
    body = '{"name": "service_down", "data": {"service": "web-3", "x": ' + data + "}}"
    answer = chat.post("/api/events", content=body, headers={
        "Content-Type": "application/json", "X-Thread-Id": "n1"})
    assert 400 <= answer.status_code < 500, answer.text
    assert "nested" in answer.json()["error"]["message"]
    assert chat.get("/api/runs").json()["runs"] == []
    again = chat.post("/api/runs", json={"request": "check the health of web-1",
                                         "thread_id": "n1"})
    assert again.status_code == 200 and again.json()["status"] == "ok"


def _raw(url: str, request: bytes) -> bytes:
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        out = b""
        while b"\r\n\r\n" not in out and (chunk := conn.recv(65536)):
            out += chunk
        return out


@pytest.mark.parametrize("where", ["header", "query"])
def test_oversized_headers_or_query_are_refused_with_431(served: Served, where: str) -> None:
    key = served.keys.create(f"big-{where}", "chat", tenant="acme").encode()
    junk = b"a" * 64_000
    path = b"/api/runs" + (b"?x=" + junk if where == "query" else b"")
    extra = b"X-Junk: " + junk + b"\r\n" if where == "header" else b""
    head = _raw(served.live.url, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + key + b"\r\n" + extra + b"\r\n")
    assert head.startswith(b"HTTP/1.1 431"), head[:120]
    assert b"application/json" in head.lower()


def test_the_key_store_is_readable_by_its_owner_only(served: Served) -> None:
    served.keys.create("private", "chat")
    assert stat.S_IMODE(os.stat(served.keys.path).st_mode) == 0o600
