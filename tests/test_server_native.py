"""The native HTTP API end to end: runs (synchronous, background, listed, cancelled), their
events as resumable Server-Sent Events, thread history and approvals, against the app under
uvicorn on 127.0.0.1 with the offline model; checked in the business database, the run
store and the checkpoints."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator import Orchestrator
from orchestrator.config import load_settings
from orchestrator.server import KeyStore, create_app
from tests.test_server_openai import LiveServer, alerts, error_of
from tests.test_server_openai import no_proxy as no_proxy  # autouse: straight to 127.0.0.1

PAGE = "alert the on-call team that web-3 is down"
TWO_CHECKS = "check web-1 health, check web-2 health"
FAILOVER = "planned failover for web-2"
ROUTE = "SELECT pool FROM routes WHERE service = 'web-2'"


@dataclass
class Served:
    live: LiveServer
    orch: Orchestrator
    keys: KeyStore

    def client(self, name: str, scopes: str = "chat", tenant: str = "acme") -> httpx.Client:
        key = self.keys.create(name, scopes, tenant=tenant)
        return httpx.Client(base_url=self.live.url, timeout=60,
                            headers={"Authorization": f"Bearer {key}"})


@contextmanager
def serving(domain_db: Path, folder: Path, model: str = "fake") -> Iterator[Served]:
    orch = Orchestrator(model, domain_db=domain_db, checkpointer=folder / "checkpoints.sqlite",
                        settings=load_settings(knowledge=False))
    try:
        with KeyStore.from_settings() as keys, LiveServer(create_app(orch, keys)) as live:
            yield Served(live, orch, keys)
    finally:
        orch.close()


@pytest.fixture
def served(domain_db: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(domain_db, tmp_path) as running:
        yield running


@pytest.fixture
def slow(domain_db: Path, tmp_path: Path) -> Iterator[Served]:
    """A model that takes 0.5 s a call: a run is still going when the next request comes."""
    with serving(domain_db, tmp_path, "fake:latency=0.5") as running:
        yield running


@dataclass
class Frame:
    id: int | None
    event: str
    data: dict[str, Any]


def frames_of(response: httpx.Response) -> Iterator[Frame]:
    """The SSE events of a streamed response, as they arrive."""
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
        elif fields:
            yield Frame(int(fields["id"]) if "id" in fields else None, fields["event"],
                        json.loads(fields["data"]))
            fields = {}


def read_events(chat: httpx.Client, run_id: str, last_id: int | None = None) -> list[Frame]:
    """Every SSE event of a run's stream, to its end."""
    headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
    with chat.stream("GET", f"/api/runs/{run_id}/events", headers=headers) as response:
        return list(frames_of(response))


def test_a_synchronous_run_writes_once_and_is_on_record(
        served: Served, db: sqlite3.Connection) -> None:
    chat = served.client("ops")
    reply = chat.post("/api/runs", json={"request": PAGE, "thread_id": "inc-1"})
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "ok" and body["thread_id"] == "inc-1"
    assert body["answer"].startswith("Paged Dana Okafor")
    assert [s["agent"] for s in body["plan"]["subtasks"]] == ["notifications"]
    assert [r["status"] for r in body["results"].values()] == ["done"]
    assert body["usage"]["llm_calls"] > 0
    assert alerts(db) == ["web-3"]  # the page happened, once

    record = served.orch.records.run(body["run_id"])
    assert (record["thread_id"], record["status"], record["answer"]) == (
        "acme:inc-1", "ok", body["answer"])
    stored = chat.get(f"/api/runs/{body['run_id']}").json()
    assert (stored["status"], stored["answer"], stored["thread_id"]) == (
        "ok", body["answer"], "inc-1")
    assert stored["usage"] == body["usage"] and stored["started_at"] > 0

    history = chat.get("/api/threads/inc-1/history").json()
    assert history == {"thread_id": "inc-1", "turns": [
        {"role": "user", "text": PAGE, "run_id": body["run_id"], "status": "ok"},
        {"role": "assistant", "text": body["answer"], "run_id": body["run_id"], "status": "ok"}]}
    # A thread id may hold a slash, as in chat requests.
    chat.post("/api/runs", json={"request": TWO_CHECKS, "thread_id": "team/inc-2"})
    turns = chat.get("/api/threads/team/inc-2/history").json()["turns"]
    assert turns[0]["text"] == TWO_CHECKS and turns[0]["status"] == "ok" and len(turns) == 2
    bad = chat.post("/api/runs", json={"request": PAGE, "thread_id": "../x"})
    assert bad.status_code == 422 and error_of(bad)["param"] == "thread_id"
    assert alerts(db) == ["web-3"]


def test_a_background_run_answers_202_at_once_then_completes(
        slow: Served, db: sqlite3.Connection) -> None:
    chat = slow.client("ops")
    started = chat.post("/api/runs", json={"request": PAGE, "background": True})
    assert started.status_code == 202
    run_id, thread = started.json()["run_id"], started.json()["thread_id"]
    assert started.headers["Location"] == f"/api/runs/{run_id}"
    assert chat.get(f"/api/runs/{run_id}").json()["status"] == "running"
    assert alerts(db) == []  # not yet: the planner is still thinking

    with chat.stream("GET", f"/api/runs/{run_id}/events") as response:
        live = frames_of(response)
        first = next(live)
        # Sent while the run goes on (each model call takes 0.5 s), not at its end.
        assert (first.id, first.event) == (0, "run_started")
        assert chat.get(f"/api/runs/{run_id}").json()["status"] == "running"
        frames = [first, *live]
    assert frames[-1] == Frame(None, "end", {"run_id": run_id, "status": "ok"})
    done = chat.get(f"/api/runs/{run_id}").json()
    assert done["status"] == "ok" and done["answer"].startswith("Paged Dana Okafor")
    assert done["thread_id"] == thread
    assert alerts(db) == ["web-3"]
    stored = slow.orch.records.events(run_id)
    assert [f.event for f in frames[:-1]] == [e.type for e in stored]
    assert [f.id for f in frames[:-1]] == list(range(len(stored)))


def test_the_event_stream_replays_a_finished_run_and_resumes_after_last_event_id(
        served: Served) -> None:
    chat = served.client("ops")
    run_id = chat.post("/api/runs", json={"request": TWO_CHECKS}).json()["run_id"]
    stored = served.orch.records.events(run_id)

    frames = read_events(chat, run_id)
    events = frames[:-1]
    assert [f.id for f in events] == list(range(len(stored))) and len(stored) > 5
    assert [f.event for f in events] == [e.type for e in stored]
    assert events[0].event == "run_started" and events[-1].event == "answer"
    assert [f.data["seq"] for f in events] == [f.id for f in events]
    assert events[-1].data["data"] == stored[-1].data and events[-1].data["run_id"] == run_id
    assert frames[-1] == Frame(None, "end", {"run_id": run_id, "status": "ok"})

    later = read_events(chat, run_id, last_id=3)
    assert [f.id for f in later[:-1]] == list(range(4, len(stored)))
    assert [f.data for f in later[:-1]] == [f.data for f in events[4:]]
    assert read_events(chat, run_id, last_id=len(stored) - 1) == [frames[-1]]
    bad = chat.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 422 and error_of(bad)["param"] == "Last-Event-ID"
    # Past the largest id the store can compare with: refused, not a stream cut short.
    huge = chat.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": str(2**62 + 1)})
    assert huge.status_code == 422 and error_of(huge)["param"] == "Last-Event-ID"
    last = read_events(chat, run_id, 2**62)
    assert [f.event for f in last] == ["end"]


def test_runs_are_listed_per_tenant_and_filtered(served: Served) -> None:
    acme, globex = served.client("acme-ops"), served.client("globex-ops", tenant="globex")
    first = acme.post("/api/runs", json={"request": TWO_CHECKS, "thread_id": "a"}).json()
    second = acme.post("/api/runs", json={"request": PAGE, "thread_id": "b"}).json()
    paused = acme.post("/api/runs", json={"request": FAILOVER, "thread_id": "c"}).json()
    theirs = globex.post("/api/runs", json={"request": TWO_CHECKS, "thread_id": "a"}).json()

    listed = acme.get("/api/runs").json()["runs"]
    assert [r["run_id"] for r in listed] == [paused["run_id"], second["run_id"],
                                             first["run_id"]]
    assert [r["thread_id"] for r in listed] == ["c", "b", "a"]
    assert [r["run_id"] for r in acme.get("/api/runs", params={"thread_id": "a"}).json()[
        "runs"]] == [first["run_id"]]
    assert [r["run_id"] for r in acme.get("/api/runs", params={"status": "paused"}).json()[
        "runs"]] == [paused["run_id"]]
    assert [r["run_id"] for r in acme.get("/api/runs", params={"limit": 1}).json()[
        "runs"]] == [paused["run_id"]]
    assert [r["run_id"] for r in globex.get("/api/runs").json()["runs"]] == [theirs["run_id"]]
    wrong = acme.get("/api/runs", params={"status": "done", "limit": 0})
    assert wrong.status_code == 422 and error_of(wrong)["code"] == "invalid_body"


def test_another_tenant_gets_404_for_a_run_thread_or_approval(
        served: Served, db: sqlite3.Connection) -> None:
    acme = served.client("acme-ops")
    globex = served.client("globex-boss", scopes="chat,approve", tenant="globex")
    run = acme.post("/api/runs", json={"request": FAILOVER, "thread_id": "cr-1"}).json()
    assert run["status"] == "paused"
    before = db.execute(ROUTE).fetchone()[0]

    for response in (
            globex.get(f"/api/runs/{run['run_id']}"),
            globex.get(f"/api/runs/{run['run_id'][:8]}"),
            globex.get(f"/api/runs/{run['run_id']}/events"),
            globex.post(f"/api/runs/{run['run_id']}/cancel"),
            globex.get("/api/threads/cr-1/history"),
            globex.get("/api/threads/acme:cr-1/history"),
            globex.get("/api/approvals", params={"thread_id": "cr-1"}),
            globex.post("/api/threads/cr-1/approvals", json={"approve": True})):
        assert response.status_code == 404, response.request.url
        assert error_of(response)["code"] == "not_found"
        assert "reroute" not in response.text and "web-2" not in response.text
    assert globex.get("/api/approvals").json() == {"approvals": []}
    assert globex.get("/api/runs").json() == {"runs": []}
    assert db.execute(ROUTE).fetchone()[0] == before
    assert served.orch.pending_approvals("acme:cr-1")  # still waiting for acme


def test_a_paused_run_shows_its_exact_call_and_an_approval_records_the_key_name(
        served: Served, db: sqlite3.Connection) -> None:
    chat = served.client("ops")
    boss = served.client("ana", scopes="chat,approve")
    paused = chat.post("/api/runs", json={"request": FAILOVER, "thread_id": "cr-42"}).json()
    assert paused["status"] == "paused" and db.execute(ROUTE).fetchone()[0] == "web-primary"
    (waiting,) = paused["pending_approvals"]

    listed = chat.get("/api/approvals", params={"thread_id": "cr-42"}).json()["approvals"]
    assert listed == chat.get("/api/approvals").json()["approvals"] == [waiting]
    assert waiting["thread_id"] == "cr-42" and waiting["tool"] == "reroute_traffic"
    assert waiting["args"] == {"service": "web-2"}
    assert "web-primary -> web-backup-b" in waiting["preview"] and waiting["why"]
    assert chat.get(f"/api/runs/{paused['run_id']}").json()["pending_approvals"] == [waiting]

    done = boss.post("/api/threads/cr-42/approvals",
                     json={"approve": True, "reason": "change CR-42"})
    assert done.status_code == 200
    assert done.json()["status"] == "ok" and done.json()["run_id"] == paused["run_id"]
    assert db.execute(ROUTE).fetchone()[0] == "web-backup-b"
    decided = [e for e in served.orch.records.events(paused["run_id"])
               if e.type == "approval_decided"]
    assert [(e.data["approved"], e.data["approver"], e.data["reason"]) for e in decided] == [
        (True, "ana", "change CR-42")]
    assert chat.get("/api/approvals").json() == {"approvals": []}
    again = boss.post("/api/threads/cr-42/approvals", json={"approve": True})
    assert again.status_code == 400 and "no paused run" in error_of(again)["message"]


def test_a_denial_changes_nothing_and_is_recorded(
        served: Served, db: sqlite3.Connection) -> None:
    chat = served.client("ops")
    boss = served.client("ana", scopes="chat,approve")
    paused = chat.post("/api/runs", json={"request": FAILOVER, "thread_id": "cr-7"}).json()
    denied = boss.post("/api/threads/cr-7/approvals",
                       json={"approve": False, "reason": "not in the window"}).json()
    assert denied["status"] != "paused" and denied["run_id"] == paused["run_id"]
    assert db.execute(ROUTE).fetchone()[0] == "web-primary"
    (decided,) = [e for e in served.orch.records.events(paused["run_id"])
                  if e.type == "approval_decided"]
    assert (decided.data["approved"], decided.data["approver"], decided.data["reason"]) == (
        False, "ana", "not in the window")


def test_a_decision_is_strict_and_needs_the_approve_scope(
        served: Served, db: sqlite3.Connection) -> None:
    chat = served.client("ops")
    boss = served.client("ana", scopes="approve,chat")
    chat.post("/api/runs", json={"request": FAILOVER, "thread_id": "cr-9"})

    for body in ({"approve": "false"}, {"approve": "true"}, {"approve": 1}, {"approve": None},
                 {}, {"approve": True, "approver": "someone-else"},
                 {"approve": True, "reason": 5}):
        refused = boss.post("/api/threads/cr-9/approvals", json=body)
        assert refused.status_code == 422, body
        assert error_of(refused)["code"] == "invalid_body"
    not_json = boss.post("/api/threads/cr-9/approvals", content=b"{approve",
                         headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422
    forbidden = chat.post("/api/threads/cr-9/approvals", json={"approve": True})
    assert forbidden.status_code == 403 and error_of(forbidden)["code"] == "missing_scope"

    assert db.execute(ROUTE).fetchone()[0] == "web-primary"  # nothing ran
    (waiting,) = served.orch.pending_approvals("acme:cr-9")
    assert waiting.tool == "reroute_traffic"
    assert chat.get("/api/runs", params={"status": "paused"}).json()["runs"][0][
        "thread_id"] == "cr-9"


def test_cancel_stops_a_background_run_and_it_is_recorded_interrupted(
        slow: Served, db: sqlite3.Connection) -> None:
    chat = slow.client("ops")
    started = chat.post("/api/runs", json={"request": PAGE, "thread_id": "inc-9",
                                           "background": True})
    run_id = started.json()["run_id"]
    cancelled = chat.post(f"/api/runs/{run_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "interrupted"
    assert slow.orch.records.run(run_id)["status"] == "interrupted"
    assert chat.get(f"/api/runs/{run_id}").json()["status"] == "interrupted"
    assert read_events(chat, run_id)[-1].data == {"run_id": run_id, "status": "interrupted"}
    assert alerts(db) == []  # stopped before its page

    again = chat.post(f"/api/runs/{run_id}/cancel")
    assert again.status_code == 409 and "has ended (interrupted)" in error_of(again)["message"]
    # The thread is free again: the next request on it runs.
    after = chat.post("/api/runs", json={"request": PAGE, "thread_id": "inc-9"}).json()
    assert after["status"] == "ok" and alerts(db) == ["web-3"]


def test_routes_need_a_key_and_are_described_in_openapi(served: Served) -> None:
    assert httpx.get(f"{served.live.url}/api/runs", timeout=30).status_code == 401
    schema = httpx.get(f"{served.live.url}/openapi.json", timeout=30).json()
    paths = schema["paths"]
    assert {"/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/cancel",
            "/api/runs/{run_id}/events", "/api/threads/{thread_id}/history",
            "/api/approvals", "/api/threads/{thread_id}/approvals"} <= set(paths)
    decision = schema["components"]["schemas"]["ApprovalDecisionBody"]
    assert decision["additionalProperties"] is False
    assert decision["properties"]["approve"]["type"] == "boolean"
    assert "text/event-stream" in paths["/api/runs/{run_id}/events"]["get"]["responses"][
        "200"]["content"]
    assert httpx.get(f"{served.live.url}/docs", timeout=30).status_code == 200
    # Each route says the scope its key needs (the reference page shows it).
    assert paths["/api/threads/{thread_id}/approvals"]["post"]["x-scope"] == "approve"
    assert paths["/api/runs"]["post"]["x-scope"] == "chat"
    assert paths["/api/knowledge/{collection}/files"]["post"]["x-scope"] == "ingest"
    assert "x-scope" not in paths["/health"]["get"] and "x-scope" not in paths["/api/me"]["get"]


def test_a_decision_naming_the_calls_it_saw_is_refused_once_they_changed(
        served: Served, db: sqlite3.Connection) -> None:
    chat = served.client("ops")
    boss = served.client("ana", scopes="chat,approve")
    paused = chat.post("/api/runs", json={"request": FAILOVER, "thread_id": "cr-7"}).json()
    (shown,) = chat.get("/api/approvals", params={"thread_id": "cr-7"}).json()["approvals"]

    for stale in ([shown["key"] + "x"], [shown["key"], "t9:reroute_traffic:{}"]):
        refused = boss.post("/api/threads/cr-7/approvals",
                            json={"approve": True, "reason": "seen", "keys": stale})
        assert refused.status_code == 409, refused.text
        assert error_of(refused)["code"] == "approval_changed"
        assert db.execute(ROUTE).fetchone()[0] == "web-primary"  # nothing was decided
    assert boss.post("/api/threads/cr-7/approvals",
                     json={"approve": True, "keys": []}).status_code == 422

    done = boss.post("/api/threads/cr-7/approvals",
                     json={"approve": True, "reason": "seen", "keys": [shown["key"]]})
    assert done.status_code == 200 and done.json()["run_id"] == paused["run_id"]
    assert done.json()["status"] == "ok" and db.execute(ROUTE).fetchone()[0] == "web-backup-b"
    decided = [e for e in chat.get(f"/api/runs/{paused['run_id']}/events").text.splitlines()
               if e.startswith("event: approval_decided")]
    assert len(decided) == 1


def test_a_run_sent_again_with_its_request_id_runs_once(
        slow: Served, db: sqlite3.Connection) -> None:
    chat = slow.client("ops")
    started = chat.post("/api/runs", json={"request": PAGE, "background": True,
                                           "request_id": "page-7"})
    assert started.status_code == 202
    run_id, thread = started.json()["run_id"], started.json()["thread_id"]
    # Sent again while it runs (the model takes 0.5 s a call): it waits for that run and
    # gets its result; by header or in the body, it is the same key.
    again = chat.post("/api/runs", json={"request": PAGE}, headers={"Idempotency-Key": "page-7"})
    assert again.status_code == 200
    assert (again.json()["run_id"], again.json()["thread_id"]) == (run_id, thread)
    assert again.json()["status"] == "ok"
    assert again.json()["answer"].startswith("Paged Dana Okafor")
    later = chat.post("/api/runs", json={"request": PAGE, "request_id": "page-7",
                                         "background": True})
    assert later.status_code == 200 and later.json()["run_id"] == run_id
    assert alerts(db) == ["web-3"]  # paged once
    assert [r.run_id for r in slow.orch.records.runs()] == [run_id]

    differ = chat.post("/api/runs", json={"request": PAGE, "request_id": "page-7"},
                       headers={"Idempotency-Key": "page-8"})
    assert differ.status_code == 422 and error_of(differ)["param"] == "request_id"
    other = chat.post("/api/runs", json={"request": TWO_CHECKS, "request_id": "page-7"})
    assert other.status_code == 400 and "another request" in error_of(other)["message"]
    assert len(slow.orch.records.runs()) == 1


def test_a_trace_tells_a_wait_for_a_decision_apart_from_work_and_from_waiting_to_start(
        served: Served) -> None:
    boss = served.client("ana", scopes="chat,approve")
    paused = boss.post("/api/runs", json={"request": FAILOVER, "thread_id": "w-1"}).json()
    trace = boss.get(f"/api/runs/{paused['run_id']}/trace").json()
    spans = {s["id"]: s for s in trace["subtasks"]}
    assert spans["reroute"]["status"] == "approval"  # not "running"
    ((asked, decided),) = spans["reroute"]["approval_waits"]
    assert asked >= 0 and decided is None
    time.sleep(0.3)  # a person reads the card: the wait the trace must not call work
    boss.post("/api/threads/w-1/approvals", json={"approve": True})
    trace = boss.get(f"/api/runs/{paused['run_id']}/trace").json()
    reroute = {s["id"]: s for s in trace["subtasks"]}["reroute"]
    ((asked, decided),) = reroute["approval_waits"]
    assert reroute["status"] == "done" and decided - asked >= 0.3
    assert reroute["approval_wait_s"] == pytest.approx(decided - asked, abs=1e-3)
    # Its span runs from its first start: the decision is not a wait to start.
    assert reroute["start_offset_s"] <= asked and reroute["waited_s"] < 0.3
    assert reroute["elapsed_s"] >= reroute["approval_wait_s"]
    lane = {a["agent"]: a for a in trace["agents"]}["traffic"]
    assert lane["busy_s"] == pytest.approx(reroute["elapsed_s"] - reroute["approval_wait_s"],
                                           abs=1e-3)
    assert trace["run"]["approval_wait_s"] == reroute["approval_wait_s"]
    assert trace["run"]["wall_s"] >= reroute["approval_wait_s"] > trace["run"]["elapsed_s"]

    denied = boss.post("/api/runs", json={"request": FAILOVER, "thread_id": "w-2"}).json()
    boss.post("/api/threads/w-2/approvals", json={"approve": False, "reason": "not now"})
    trace = boss.get(f"/api/runs/{denied['run_id']}/trace").json()
    assert {s["id"]: s["status"] for s in trace["subtasks"]}["reroute"] == "denied"
