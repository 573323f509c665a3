"""The native API: agents with statistics, playbooks and events, knowledge, traces; against
the app under uvicorn on 127.0.0.1 with the offline model, a real knowledge store (hash
embedder) and the test's business database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator import Orchestrator
from orchestrator.retrieval.store import KnowledgeStore
from orchestrator.server import KeyStore
from tests.test_server_openai import PAGE, TWO_CHECKS, LiveServer, alerts, error_of, serving

MAX_BODY = 200_000
MAX_UPLOAD = 400_000
RUNBOOK = b"""# Failover of the quasar pool

When the quasar pool is saturated, move traffic to quasar-backup-7 and page the owner.
"""


class Api:
    """An httpx client of one key against the live server."""

    def __init__(self, live: LiveServer, key: str) -> None:
        self.client = httpx.Client(base_url=live.url, timeout=60,
                                   headers={"Authorization": f"Bearer {key}"})

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params)

    def search(self, q: str, **params: Any) -> httpx.Response:
        return self.get("/api/knowledge/search", q=q, **params)

    def upload(self, collection: str, name: str, content: bytes,
               kind: str = "text/markdown") -> httpx.Response:
        return self.client.post(f"/api/knowledge/{collection}/files",
                                files={"file": (name, content, kind)})


Served = tuple[LiveServer, Orchestrator, KeyStore]


@pytest.fixture
def served(domain_db: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(domain_db, tmp_path, KnowledgeStore(tmp_path / "chroma", embedder="hash"),
                 max_body_bytes=MAX_BODY, max_upload_bytes=MAX_UPLOAD) as running:
        yield running


@pytest.fixture
def live(served: Served) -> LiveServer:
    return served[0]


@pytest.fixture
def orch(served: Served) -> Orchestrator:
    return served[1]


@pytest.fixture
def keys(served: Served) -> KeyStore:
    return served[2]


def api(live: LiveServer, keys: KeyStore, name: str, scopes: str = "chat",
        tenant: str = "default") -> Api:
    return Api(live, keys.create(name, scopes, tenant=tenant))


def chat(client: Api, text: str, thread: str) -> dict[str, Any]:
    reply = client.client.post("/v1/chat/completions", headers={"X-Thread-Id": thread}, json={
        "model": "orchestrator", "messages": [{"role": "user", "content": text}]})
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["orchestrator"])


def test_agents_list_the_packs_agents_their_tool_kinds_and_stats_that_count_a_run(
        live: LiveServer, keys: KeyStore) -> None:
    ops = api(live, keys, "ops")
    before = {a["name"]: a for a in ops.get("/api/agents").json()}
    assert {"monitoring", "traffic", "notifications", "inventory", "diagnostics"} <= set(before)
    tools = {t["name"]: t for t in before["traffic"]["tools"]}
    assert (tools["reroute_traffic"]["reads"], tools["reroute_traffic"]["requires_approval"]
            ) == (False, True)
    assert (tools["show_route"]["reads"], tools["show_route"]["requires_approval"]) == (
        True, False)
    (alert,) = before["notifications"]["tools"]
    assert (alert["name"], alert["reads"], alert["requires_approval"]) == (
        "alert_oncall", False, False)
    assert before["monitoring"]["description"] and before["monitoring"]["skills"]
    assert before["notifications"]["stats"]["runs"] == 0

    chat(ops, PAGE, "stats-1")
    after = {a["name"]: a for a in ops.get("/api/agents").json()}
    stats = after["notifications"]["stats"]
    assert stats["runs"] == 1 and stats["attempts"] == 1 and stats["successes"] == 1
    assert stats["success_rate"] == 1.0
    assert after["traffic"]["stats"]["runs"] == 0


def test_playbooks_are_listed_and_an_event_runs_its_playbook_once_on_record(
        live: LiveServer, keys: KeyStore, orch: Orchestrator, db: sqlite3.Connection) -> None:
    ops = api(live, keys, "ops", tenant="acme")
    books = {p["name"]: p for p in ops.get("/api/playbooks").json()}
    assert books["service_down"]["event"] == "service_down"
    assert books["service_down"]["pack"] == "it_ops"
    assert [s["id"] for s in books["service_down"]["steps"]] == [
        "diagnose", "reroute", "alert", "log"]
    assert "stock_out" in books

    fired = ops.client.post("/api/events", headers={"X-Thread-Id": "evt-1"},
                            json={"name": "service_down", "data": {"service": "web-3"}})
    assert fired.status_code == 200, fired.text
    run = fired.json()
    assert (run["status"], run["mode"], run["thread_id"]) == (
        "ok", "playbook:service_down", "evt-1")
    assert {s["agent"] for s in run["subtasks"]} == {
        "diagnostics", "traffic", "notifications", "incident_log"}
    assert alerts(db) == ["web-3"]
    assert db.execute("SELECT count(*) FROM incidents WHERE service = 'web-3'").fetchone()[0] == 1
    (record,) = orch.records.runs()
    assert (record.run_id, record.thread_id, record.status) == (run["run_id"], "acme:evt-1",
                                                               "ok")
    assert orch.records.run(run["run_id"])["event"] == {"name": "service_down",
                                                       "data": {"service": "web-3"}}


def test_an_unknown_or_malformed_event_is_a_clear_error_and_runs_nothing(
        live: LiveServer, keys: KeyStore, orch: Orchestrator, db: sqlite3.Connection) -> None:
    ops = api(live, keys, "ops")
    typo = ops.client.post("/api/events", json={"name": "servce_down", "data": {}})
    assert typo.status_code == 404
    error = error_of(typo)
    assert error["code"] == "unknown_event" and error["param"] == "name"
    assert "unknown event 'servce_down'" in error["message"]
    assert "service_down" in error["message"]  # the known events are named
    # A body that does not fit the schema is a 422, as everywhere under /api; a name the
    # engine refuses is its 400.
    for body, status in (({"name": "Service Down!"}, 400),
                         ({"name": "service_down", "data": ["web-3"]}, 422),
                         ({"name": "service_down", "extra": 1}, 422), ({"data": {}}, 422)):
        bad = ops.client.post("/api/events", json=body)
        assert bad.status_code == status, body
        error_of(bad)
    cut = ops.client.post("/api/events", content=b'{"name":',
                          headers={"Content-Type": "application/json"})
    assert cut.status_code == 422 and error_of(cut)["param"] is None
    assert "not valid JSON at character" in error_of(cut)["message"]
    search = ops.client.get("/api/knowledge/search", params={"q": "x", "k": "many"})
    assert search.status_code == 422 and error_of(search)["param"] == "k"
    assert alerts(db) == [] and orch.records.runs(limit=5) == []


def test_an_uploaded_file_is_found_with_its_citation_until_it_is_deleted(
        live: LiveServer, keys: KeyStore) -> None:
    editor = api(live, keys, "editor", "chat,ingest")
    uploaded = editor.upload("handbook", "quasar.md", RUNBOOK)
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json() == {"collection": "handbook", "source": "quasar.md", "documents": 1,
                               "chunks_added": 1, "skipped": 0}
    listed = {c["name"]: c for c in editor.get("/api/knowledge/collections").json()}
    assert listed["handbook"]["chunks"] == 1 and listed["handbook"]["sources"] == 1

    found = editor.search("quasar pool failover backup", collection="handbook", k=3).json()
    top = found["hits"][0]
    assert (top["collection"], top["source"], top["citation"]) == (
        "handbook", "quasar.md", "quasar.md#0")
    assert "quasar-backup-7" in top["text"]
    assert editor.search("quasar-backup-7").json()["hits"][0]["citation"] == "quasar.md#0"

    gone = editor.client.delete("/api/knowledge/handbook/sources/quasar.md")
    assert gone.status_code == 200 and gone.json()["chunks"] == 1
    assert editor.search("quasar pool failover", collection="handbook").json()["hits"] == []
    again = editor.client.delete("/api/knowledge/handbook/sources/quasar.md")
    assert again.status_code == 404 and error_of(again)["code"] == "source_not_found"


def test_an_unsupported_or_too_large_upload_is_refused_and_nothing_is_ingested(
        live: LiveServer, keys: KeyStore, orch: Orchestrator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    editor = api(live, keys, "editor", "chat,ingest")
    exe = editor.upload("handbook", "tool.exe", b"MZ\x00\x00", "application/octet-stream")
    assert exe.status_code == 415
    assert error_of(exe)["code"] == "unsupported_file_type" and ".md" in exe.json()[
        "error"]["message"]
    # An upload's body may be larger than other bodies, up to the upload limit and its framing.
    over_body = editor.upload("handbook", "big.md", b"# big\n" + b"x" * (MAX_UPLOAD + 70_000))
    assert over_body.status_code == 413 and error_of(over_body)["code"] == "request_too_large"
    assert f"upload limit of {MAX_UPLOAD} bytes a file" in error_of(over_body)["message"]
    over_file = editor.upload("handbook", "big.md", b"# big\n" + b"x" * (MAX_UPLOAD + 10))
    assert over_file.status_code == 413 and error_of(over_file)["code"] == "file_too_large"
    empty = editor.upload("handbook", "empty.md", b"   \n")
    assert empty.status_code == 422 and "empty file" in error_of(empty)["message"]
    bad_name = editor.upload("bad--name", "a.md", RUNBOOK)
    assert bad_name.status_code == 400 and error_of(bad_name)["code"] == "invalid_collection"
    # A name with a path is refused in words, not cut down to its last part.
    for named in ("../../../tmp/pwn.md", "..\\..\\pwn.md", "docs/a.md"):
        pathed = editor.upload("handbook", named, RUNBOOK)
        assert pathed.status_code == 400, named
        assert error_of(pathed)["code"] == "invalid_file_name"
        assert "must not hold a path" in error_of(pathed)["message"]
    assert editor.get("/api/knowledge/collections").json() == []
    assert orch.knowledge is not None


def test_a_file_larger_than_the_body_limit_uploads_up_to_the_upload_limit(
        live: LiveServer, keys: KeyStore) -> None:
    editor = api(live, keys, "editor", "chat,ingest")
    words = b" ".join(b"quasar-%d" % i for i in range(25_000))  # about 310 KB, over MAX_BODY
    assert MAX_BODY < len(words) < MAX_UPLOAD
    done = editor.upload("handbook", "big.md", b"# Big\n\nquasar pool failover.\n" + words)
    assert done.status_code == 201, done.text
    assert editor.search("quasar pool failover", collection="handbook").json()["hits"]
    # Only the upload route takes it: a chat body that large is still refused.
    chat = editor.client.post("/api/runs", json={"request": "x" * len(words)})
    assert chat.status_code == 413 and error_of(chat)["code"] == "request_too_large"


def test_tenants_see_only_their_own_collections_and_runs(
        live: LiveServer, keys: KeyStore, orch: Orchestrator) -> None:
    a = api(live, keys, "a", "chat,ingest", tenant="acme")
    b = api(live, keys, "b", "chat,ingest", tenant="globex")
    assert a.upload("handbook", "quasar.md", RUNBOOK).status_code == 201
    store = orch.knowledge
    assert isinstance(store, KnowledgeStore)
    assert "acme--handbook" in store.collection_names()

    assert [c["name"] for c in a.get("/api/knowledge/collections").json()] == ["handbook"]
    assert b.get("/api/knowledge/collections").json() == []
    assert b.search("quasar-backup-7").json()["hits"] == []
    hidden = b.search("quasar-backup-7", collection="handbook")
    assert hidden.status_code == 404 and error_of(hidden)["code"] == "collection_not_found"
    for name in ("acme--handbook", "acme"):
        assert b.search("quasar", collection=name).status_code in (400, 404)
    assert b.client.delete("/api/knowledge/handbook/sources/quasar.md").status_code == 404
    default = api(live, keys, "d", "chat,ingest")
    assert default.get("/api/knowledge/collections").json() == []  # not acme's
    # b's own collection of the same name is its own
    assert b.upload("handbook", "other.md", b"# Other\n\nNothing about pools.").status_code == 201
    assert [h["source"] for h in b.search("quasar pool", k=5).json()["hits"]] == ["other.md"]
    assert a.search("quasar pool", k=5).json()["hits"][0]["source"] == "quasar.md"

    run_id = chat(a, PAGE, "t-1")["run_id"]
    assert a.get(f"/api/runs/{run_id}/trace").status_code == 200
    refused = b.get(f"/api/runs/{run_id}/trace")
    assert refused.status_code == 404 and error_of(refused)["code"] == "run_not_found"
    assert b.get(f"/api/runs/{run_id[:8]}/trace").status_code == 404
    assert a.get("/api/runs/nope/trace").status_code == 404


def test_a_key_without_ingest_cannot_upload_or_delete(
        live: LiveServer, keys: KeyStore) -> None:
    reader = api(live, keys, "reader", "chat")
    refused = reader.upload("handbook", "quasar.md", RUNBOOK)
    assert refused.status_code == 403 and error_of(refused)["code"] == "missing_scope"
    deleting = reader.client.delete("/api/knowledge/handbook/sources/quasar.md")
    assert deleting.status_code == 403
    assert reader.get("/api/knowledge/collections").json() == []
    anonymous = httpx.get(f"{live.url}/api/agents", timeout=30)
    assert anonymous.status_code == 401


def test_the_trace_of_two_parallel_subtasks_shows_both_agents_overlapping(
        live: LiveServer, keys: KeyStore, orch: Orchestrator) -> None:
    ops = api(live, keys, "ops", tenant="acme")
    run_id = chat(ops, TWO_CHECKS, "par-1")["run_id"]
    trace = ops.get(f"/api/runs/{run_id}/trace").json()
    record = orch.records.run(run_id)
    assert trace["run"]["thread_id"] == "par-1" and trace["run"]["status"] == "ok"
    assert trace["run"]["tokens"] == record["input_tokens"] + record["output_tokens"] > 0
    assert trace["run"]["llm_calls"] == record["llm_calls"]
    first, second = trace["subtasks"]
    assert first["agent"] == second["agent"] == "monitoring"
    assert first["started_at"] < second["finished_at"] and second["started_at"] < first[
        "finished_at"]  # they ran at the same time
    assert first["parallel_with"] == [second["id"]] and second["parallel_with"] == [first["id"]]
    assert first["waited_s"] < 1 and first["depends_on"] == []
    (lane,) = trace["agents"]
    assert lane["agent"] == "monitoring" and sorted(lane["subtasks"]) == sorted(
        [first["id"], second["id"]])
    assert lane["tokens"] == first["tokens"] + second["tokens"]
    kinds = [e["type"] for e in trace["events"]]
    assert kinds[0] == "run_started" and kinds[-1] == "answer"
    assert kinds.count("subtask_finished") == 2


def test_a_server_without_a_knowledge_base_says_so(domain_db: Path, tmp_path: Path) -> None:
    with serving(domain_db, tmp_path) as (live, _, keys):
        reader = api(live, keys, "reader", "chat,ingest")
        for response in (reader.get("/api/knowledge/collections"), reader.search("pools"),
                         reader.upload("handbook", "quasar.md", RUNBOOK)):
            assert response.status_code == 404
            assert error_of(response)["code"] == "knowledge_off"
