"""CORS: off unless the server names origins; then only those origins, with the headers a
browser client needs to read (the thread and run ids) and refusals it can read too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.server.keys import KeyStore
from tests.test_server_openai import LiveServer, serving
from tests.test_server_openai import no_proxy as no_proxy  # autouse: straight to 127.0.0.1

APP = "https://ops.example.com"
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type,x-thread-id"}
EVENTS_PREFLIGHT = {"Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "authorization,last-event-id"}


@pytest.fixture
def open_to_app(domain_db: Path, tmp_path: Path) -> Iterator[tuple[LiveServer, KeyStore]]:
    with serving(domain_db, tmp_path, cors_origins=(APP,)) as (live, _, keys):
        yield live, keys


def test_cors_is_off_by_default(domain_db: Path, tmp_path: Path) -> None:
    with serving(domain_db, tmp_path) as (live, _, _keys):
        answer = httpx.options(f"{live.url}/v1/chat/completions",
                               headers={"Origin": APP, **PREFLIGHT})
        assert "access-control-allow-origin" not in answer.headers


def test_a_named_origin_may_call_and_read_the_thread_and_run_ids(
        open_to_app: tuple[LiveServer, KeyStore]) -> None:
    live, keys = open_to_app
    preflight = httpx.options(f"{live.url}/v1/chat/completions",
                              headers={"Origin": APP, **PREFLIGHT})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == APP
    resume = httpx.options(f"{live.url}/api/runs/r1/events",
                           headers={"Origin": APP, **EVENTS_PREFLIGHT})
    assert resume.status_code == 200, resume.text  # a browser may resume with Last-Event-ID
    other = httpx.options(f"{live.url}/v1/chat/completions",
                          headers={"Origin": "https://evil.example", **PREFLIGHT})
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"

    key = keys.create("web", scopes=["chat"])
    reply = httpx.post(f"{live.url}/v1/chat/completions", timeout=60,
                       headers={"Origin": APP, "Authorization": f"Bearer {key}"},
                       json={"model": "orchestrator",
                             "messages": [{"role": "user", "content": "check web-1 health"}]})
    assert reply.status_code == 200, reply.text
    exposed = {h.strip().lower() for h in reply.headers["access-control-expose-headers"].split(",")}
    assert {"x-thread-id", "x-run-id"} <= exposed
    assert reply.headers["x-run-id"]

    refused = httpx.get(f"{live.url}/api/runs", headers={"Origin": APP})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == APP
