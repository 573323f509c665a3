"""Conversations over HTTP: ``GET /api/threads`` per tenant, the run a chat turn belongs to
(``run_started`` in the stream, ``X-Run-Id`` otherwise) and the runs named in a thread's
history; against the app under uvicorn on 127.0.0.1 with the offline model, checked in the
run store."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from orchestrator.leases import Owner
from orchestrator.records import RunRecords
from orchestrator.server.threads_api import turns_with_runs
from orchestrator.storage import open_run_store
from tests.test_server_native import FAILOVER, PAGE, TWO_CHECKS, Served
from tests.test_server_native import served as served  # fixture
from tests.test_server_openai import error_of
from tests.test_server_openai import no_proxy as no_proxy  # autouse: straight to 127.0.0.1

PROGRESS = ": orchestrator "


def run(chat: httpx.Client, request: str, thread: str) -> dict[str, Any]:
    response = chat.post("/api/runs", json={"request": request, "thread_id": thread})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def chat_body(text: str, *, stream: bool) -> dict[str, Any]:
    return {"model": "orchestrator", "stream": stream,
            "messages": [{"role": "user", "content": text}]}


def test_a_tenant_lists_only_its_own_threads_newest_first(served: Served) -> None:
    acme = served.client("ops", tenant="acme")
    globex = served.client("them", tenant="globex")
    first = run(acme, PAGE, "inc-1")
    run(globex, TWO_CHECKS, "inc-1")  # the same id under another tenant: another thread
    other = run(acme, TWO_CHECKS, "team/inc-2")
    last = run(acme, TWO_CHECKS, "inc-1")

    listed = acme.get("/api/threads").json()["threads"]
    assert [t["thread_id"] for t in listed] == ["inc-1", "team/inc-2"]
    inc1, inc2 = listed
    assert (inc1["title"], inc1["runs"], inc1["status"], inc1["last_run_id"]) == (
        PAGE, 2, "ok", last["run_id"])
    assert (inc2["title"], inc2["runs"], inc2["last_run_id"]) == (TWO_CHECKS, 1,
                                                                  other["run_id"])
    record = served.orch.records.run(last["run_id"])
    assert inc1["last_active_at"] >= record["started_at"] > served.orch.records.run(
        first["run_id"])["started_at"]
    assert inc1["last_active_at"] > inc2["last_active_at"]
    assert [t["thread_id"] for t in acme.get("/api/threads?limit=1").json()["threads"]] == [
        "inc-1"]

    (theirs,) = globex.get("/api/threads").json()["threads"]
    assert (theirs["thread_id"], theirs["title"], theirs["runs"]) == ("inc-1", TWO_CHECKS, 1)
    # Nothing of acme's is in globex's answer, not even the stored prefix.
    assert "acme" not in globex.get("/api/threads").text
    assert served.client("new", tenant="initech").get("/api/threads").json() == {"threads": []}


def test_a_paused_thread_lists_as_paused_until_it_is_decided(served: Served) -> None:
    ana = served.client("ana", "chat,approve")
    assert run(ana, FAILOVER, "cr-1")["status"] == "paused"
    (thread,) = ana.get("/api/threads").json()["threads"]
    assert (thread["thread_id"], thread["status"]) == ("cr-1", "paused")
    decided = ana.post("/api/threads/cr-1/approvals", json={"approve": True})
    assert decided.json()["status"] == "ok"
    (thread,) = ana.get("/api/threads").json()["threads"]
    assert (thread["status"], thread["runs"]) == ("ok", 1)


@pytest.mark.parametrize("limit", ["0", "-3", "1001", "ten", "1.5"])
def test_a_limit_out_of_range_or_not_a_number_is_a_clear_422(served: Served,
                                                              limit: str) -> None:
    refused = served.client("ops").get(f"/api/threads?limit={limit}")
    assert refused.status_code == 422
    error = error_of(refused)
    assert error["param"] == "limit" and error["code"] == "invalid_body"
    assert error["message"].startswith("invalid request: limit: ")


def test_threads_need_a_key_with_the_chat_scope(served: Served) -> None:
    assert httpx.get(f"{served.live.url}/api/threads", timeout=30).status_code == 401
    assert served.client("ingester", "ingest").get("/api/threads").status_code == 403


def test_a_streamed_chat_names_its_run_first_and_a_plain_one_in_a_header(
        served: Served) -> None:
    chat = served.client("ops", tenant="acme")
    with chat.stream("POST", "/v1/chat/completions", json=chat_body(TWO_CHECKS, stream=True),
                     headers={"X-Thread-Id": "s-1"}) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    progress = [json.loads(line[len(PROGRESS):]) for line in lines
                if line.startswith(PROGRESS)]
    (stored,) = served.orch.records.thread_runs("acme:s-1")
    assert progress[0] == {"type": "run_started", "run_id": stored.run_id}
    assert lines.index(PROGRESS + json.dumps(progress[0])) < next(
        i for i, line in enumerate(lines) if '"content": "Completed' in line)

    plain = chat.post("/v1/chat/completions", json=chat_body(PAGE, stream=False),
                      headers={"X-Thread-Id": "s-1"})
    first, second = served.orch.records.thread_runs("acme:s-1")
    assert first.run_id == stored.run_id
    assert plain.headers["X-Run-Id"] == second.run_id == plain.json()["orchestrator"]["run_id"]


def test_history_names_each_answers_run_and_only_for_its_tenant(served: Served) -> None:
    ana = served.client("ana", "chat,approve", tenant="acme")
    first = run(ana, TWO_CHECKS, "h-1")
    paused = run(ana, FAILOVER, "h-1")
    assert paused["status"] == "paused"
    turns = ana.get("/api/threads/h-1/history").json()["turns"]
    # The paused run has its request in the thread and no answer yet: the request names
    # its run and the run's status.
    assert turns == [{"role": "user", "text": TWO_CHECKS, "run_id": first["run_id"],
                      "status": "ok"},
                     {"role": "assistant", "text": first["answer"],
                      "run_id": first["run_id"], "status": "ok"},
                     {"role": "user", "text": FAILOVER, "run_id": paused["run_id"],
                      "status": "paused"}]
    decided = ana.post("/api/threads/h-1/approvals", json={"approve": True}).json()
    turns = ana.get("/api/threads/h-1/history").json()["turns"]
    assert turns[3] == {"role": "assistant", "text": decided["answer"],
                        "run_id": paused["run_id"], "status": "ok"}
    # The same thread id under another tenant is a thread that does not exist.
    them = served.client("them", tenant="globex")
    assert them.get("/api/threads/h-1/history").status_code == 404


def test_turns_are_matched_to_runs_in_order_passing_over_runs_without_a_turn() -> None:
    records = RunRecords(open_run_store(":memory:", max_text=40))
    owner = Owner.here()
    long = "check " + "web-1 " * 20
    for run_id, request in [("r1", "check web-1"), ("r2", "killed before its first step"),
                            ("r3", "check web-1"), ("r4", long)]:
        records.store.start_run(run_id, "acme:t", request, owner=owner, lease_s=30)
    turns = [("user", "check web-1"), ("assistant", "one"), ("user", "check web-1"),
             ("assistant", "two"), ("user", "not a run of this store"), ("assistant", "?"),
             ("user", long), ("assistant", "cut when stored, still matched")]
    matched = turns_with_runs(turns, records.thread_runs("acme:t"), records)
    assert [(t.role, t.run_id) for t in matched] == [
        ("user", "r1"), ("assistant", "r1"), ("user", "r3"), ("assistant", "r3"),
        ("user", None), ("assistant", None), ("user", "r4"), ("assistant", "r4")]
    assert {t.status for t in matched if t.run_id} == {"running"}


def test_turns_a_client_sent_before_its_request_keep_no_run_even_with_its_text() -> None:
    # A client that keeps its conversation sent "check web-1" and an answer of its own, then
    # "check web-1" again: the run is the last request's, not the copy's before it.
    records = RunRecords(open_run_store(":memory:"))
    records.store.start_run("r1", "acme:t", "check web-1", owner=Owner.here(), lease_s=30)
    turns = [("user", "check web-1"), ("assistant", "made up by the client"),
             ("user", "check web-1"), ("assistant", "the run's answer")]
    matched = turns_with_runs(turns, records.thread_runs("acme:t"), records)
    assert [(t.role, t.run_id) for t in matched] == [
        ("user", None), ("assistant", None), ("user", "r1"), ("assistant", "r1")]
