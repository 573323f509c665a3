"""The HTTP server as OpenAI clients use it: the real ``openai`` SDK and LangChain's
``ChatOpenAI`` against the app under uvicorn on 127.0.0.1, checked end to end (answers, the
business database, the run store, threads and tenants)."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI
from langchain_openai import ChatOpenAI

from orchestrator import Orchestrator
from orchestrator.config import load_settings
from orchestrator.retrieval.store import KnowledgeStore
from orchestrator.server import KeyStore, create_app
from orchestrator.server.openai_schema import chunk
from orchestrator.server.streaming import ContentChunks

PAGE = "alert the on-call team that web-3 is down"
TWO_CHECKS = "check web-1 health, check web-2 health"
MAX_BODY = 20_000


class LiveServer:
    """The app under uvicorn in a thread, on a socket bound before it starts (so the first
    request waits in the backlog instead of racing the start-up)."""

    def __init__(self, app: FastAPI) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={
            "sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        assert httpx.get(f"{self.url}/health", timeout=30).json() == {"status": "ok"}
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self.socket.close()
        assert not self.thread.is_alive()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients go straight to 127.0.0.1, whatever proxy the machine sets."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@contextmanager
def serving(domain_db: Path, folder: Path, knowledge: KnowledgeStore | None = None,
            max_body_bytes: int = MAX_BODY, **options: Any
            ) -> Iterator[tuple[LiveServer, Orchestrator, KeyStore]]:
    """The server over an orchestrator on the offline model and the data folder's keys (and
    ``knowledge``, when given); ``options`` go to ``create_app``."""
    settings = load_settings() if knowledge is not None else load_settings(knowledge=False)
    orch = Orchestrator("fake", domain_db=domain_db, knowledge=knowledge,
                        checkpointer=folder / "checkpoints.sqlite", settings=settings)
    try:
        with KeyStore.from_settings() as keys, LiveServer(
                create_app(orch, keys, max_body_bytes=max_body_bytes, **options)) as live:
            yield live, orch, keys
    finally:
        orch.close()


@pytest.fixture
def served(domain_db: Path, tmp_path: Path) -> Iterator[tuple[LiveServer, Orchestrator, KeyStore]]:
    with serving(domain_db, tmp_path) as running:
        yield running


@pytest.fixture
def server(served: tuple[LiveServer, Orchestrator, KeyStore]) -> LiveServer:
    return served[0]


@pytest.fixture
def orch(served: tuple[LiveServer, Orchestrator, KeyStore]) -> Orchestrator:
    return served[1]


@pytest.fixture
def keys(served: tuple[LiveServer, Orchestrator, KeyStore]) -> KeyStore:
    return served[2]


def client(server: LiveServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def history(orch: Orchestrator, thread: str) -> list[tuple[str, str]]:
    return asyncio.run(orch.history(thread))


def alerts(db: sqlite3.Connection) -> list[str]:
    return [row[0] for row in db.execute("SELECT service FROM alerts")]


def test_openai_client_runs_the_request_once_and_the_run_is_on_record(
        server: LiveServer, keys: KeyStore, orch: Orchestrator, db: sqlite3.Connection) -> None:
    chat = client(server, keys.create("ops", ["chat"], tenant="acme"))
    raw = chat.chat.completions.with_raw_response.create(
        model="orchestrator", messages=[{"role": "system", "content": "be brief"},
                                        {"role": "user", "content": PAGE}],
        extra_headers={"X-Thread-Id": "inc-1"})
    reply = raw.parse()

    answer = reply.choices[0].message.content
    assert answer is not None and answer.startswith("Paged Dana Okafor")
    assert reply.object == "chat.completion" and reply.choices[0].finish_reason == "stop"
    assert raw.headers["X-Thread-Id"] == "inc-1"
    assert alerts(db) == ["web-3"]  # the page happened, once
    (run,) = orch.records.runs()
    assert (run.thread_id, run.status, run.request) == ("acme:inc-1", "ok", PAGE)
    record = orch.records.run(run.run_id)
    assert record["answer"] == answer
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        record["input_tokens"], record["output_tokens"])
    assert reply.usage.total_tokens == run.tokens > 0
    assert reply.model_extra is not None
    assert reply.model_extra["orchestrator"] == {
        "run_id": run.run_id, "thread_id": "inc-1", "status": "ok", "mode": "supervisor"}


def test_a_thread_goes_on_by_header_or_user_field_and_a_new_one_is_named(
        server: LiveServer, keys: KeyStore, orch: Orchestrator) -> None:
    chat = client(server, keys.create("ops", ["chat"], tenant="acme"))
    chat.chat.completions.create(model="orchestrator", user="inc-7",
                                 messages=[{"role": "user", "content": PAGE}])
    second = chat.chat.completions.with_raw_response.create(
        model="orchestrator-hybrid", extra_headers={"X-Thread-Id": "inc-7"},
        messages=[{"role": "user", "content": PAGE}, {"role": "assistant", "content": "ok"},
                  {"role": "user", "content": "check the health of web-3"}])
    assert second.headers["X-Thread-Id"] == "inc-7"
    turns = history(orch, "acme:inc-7")
    assert [role for role, _ in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[0][1] == PAGE and turns[2][1] == "check the health of web-3"
    assert turns[3][1] == second.parse().choices[0].message.content

    fresh = chat.chat.completions.with_raw_response.create(
        model="orchestrator", messages=[{"role": "user", "content": TWO_CHECKS}])
    new_thread = fresh.headers["X-Thread-Id"]
    assert new_thread not in ("", "inc-7")
    assert history(orch, f"acme:{new_thread}")[0] == ("user", TWO_CHECKS)


def test_openai_client_streams_the_answer_as_it_is_written_with_progress_as_comments(
        server: LiveServer, keys: KeyStore, orch: Orchestrator) -> None:
    key = keys.create("ops", ["chat"], tenant="acme")
    stream = client(server, key).chat.completions.create(
        model="orchestrator", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": TWO_CHECKS}],
        extra_headers={"X-Thread-Id": "s-1"})
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices
              and c.choices[0].delta.content]
    (run,) = orch.records.runs()
    record = orch.records.run(run.run_id)
    assert len(pieces) > 5  # the synthesizer's pieces, not one block at the end
    assert "".join(pieces) == record["answer"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == record["input_tokens"] > 0

    # The raw stream: progress as SSE comments, before the answer, then [DONE].
    body = {"model": "orchestrator", "stream": True,
            "messages": [{"role": "user", "content": TWO_CHECKS}]}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    progress = [json.loads(line.removeprefix(": orchestrator ")) for line in lines
                if line.startswith(": orchestrator ")]
    kinds = [p["type"] for p in progress]
    assert kinds[:2] == ["run_started", "plan_made"] and kinds.count("subtask_finished") == 2
    assert [s["agent"] for s in progress[1]["subtasks"]] == ["monitoring", "monitoring"]
    first_piece = next(i for i, line in enumerate(lines) if '"content": "Completed' in line)
    assert max(i for i, line in enumerate(lines) if line.startswith(":")) < first_piece
    assert lines[-1] == "data: [DONE]"


def test_langchain_chat_openai_invokes_and_streams_in_one_thread(
        server: LiveServer, keys: KeyStore, orch: Orchestrator, db: sqlite3.Connection) -> None:
    model = ChatOpenAI(base_url=f"{server.url}/v1", api_key=keys.create("lc", ["chat"]),
                       model="orchestrator", max_retries=0,
                       default_headers={"X-Thread-Id": "lc-1"})
    reply = model.invoke(PAGE)
    assert str(reply.content).startswith("Paged Dana Okafor")
    assert reply.usage_metadata is not None and reply.usage_metadata["input_tokens"] > 0
    streamed = [str(chunk.content) for chunk in model.stream(TWO_CHECKS)]
    assert len([p for p in streamed if p]) > 5
    assert "".join(streamed).startswith("Completed 2 of 2 subtasks.")

    assert alerts(db) == ["web-3"]
    turns = history(orch, "default:lc-1")
    assert [text for role, text in turns if role == "user"] == [PAGE, TWO_CHECKS]
    assert turns[-1] == ("assistant", "".join(streamed))
    assert [r.thread_id for r in orch.records.runs()] == ["default:lc-1"] * 2


def test_a_tenant_never_reaches_another_tenants_thread(
        server: LiveServer, keys: KeyStore, orch: Orchestrator) -> None:
    acme = client(server, keys.create("acme-ops", ["chat"], tenant="acme"))
    globex = client(server, keys.create("globex-ops", ["chat"], tenant="globex"))
    acme.chat.completions.create(model="orchestrator", extra_headers={"X-Thread-Id": "shared"},
                                 messages=[{"role": "user", "content": PAGE}])
    # The same thread id from another tenant (also in forms that look like a stored id).
    for thread in ("shared", "acme:shared"):
        raw = globex.chat.completions.with_raw_response.create(
            model="orchestrator", extra_headers={"X-Thread-Id": thread},
            messages=[{"role": "user", "content": TWO_CHECKS}])
        assert raw.headers["X-Thread-Id"] == thread
        assert history(orch, f"globex:{thread}")[0] == ("user", TWO_CHECKS)
    acme_turns = history(orch, "acme:shared")
    assert [text for role, text in acme_turns if role == "user"] == [PAGE]
    assert {r.thread_id for r in orch.records.runs()} == {
        "acme:shared", "globex:shared", "globex:acme:shared"}


def test_models_lists_the_mode_it_runs_and_refuses_another(
        server: LiveServer, keys: KeyStore) -> None:
    chat = client(server, keys.create("ops", ["chat"]))
    assert [m.id for m in chat.models.list()] == ["orchestrator", "orchestrator-hybrid"]
    with pytest.raises(openai.NotFoundError) as caught:
        chat.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": PAGE}])
    assert caught.value.code == "model_not_found"
    assert "orchestrator-hybrid" in caught.value.message


def test_a_run_that_needs_approval_answers_how_to_approve_and_holds_the_thread(
        server: LiveServer, keys: KeyStore, orch: Orchestrator, db: sqlite3.Connection) -> None:
    chat = client(server, keys.create("ops", ["chat"], tenant="acme"))
    route = "SELECT pool FROM routes WHERE service = 'web-2'"
    before = db.execute(route).fetchone()[0]
    headers = {"X-Thread-Id": "cr-42"}
    reply = chat.chat.completions.create(
        model="orchestrator", extra_headers=headers,
        messages=[{"role": "user", "content": "planned failover for web-2"}])
    answer = reply.choices[0].message.content or ""
    assert answer.startswith("Paused")
    assert "reroute_traffic" in answer and "web-primary -> web-backup-b" in answer
    assert "orchestrator approve acme:cr-42" in answer
    assert "POST /api/threads/cr-42/approvals" in answer
    assert reply.model_extra is not None and reply.model_extra["orchestrator"]["status"] == (
        "paused")
    assert db.execute(route).fetchone()[0] == before  # nothing done before the approval

    with pytest.raises(openai.BadRequestError) as caught:  # the thread waits for a decision
        chat.chat.completions.create(model="orchestrator", extra_headers=headers, stream=True,
                                     messages=[{"role": "user", "content": PAGE}])
    assert "waiting for approval" in caught.value.message
    # It names the thread as the client does, not with the tenant it is stored under.
    assert "'cr-42'" in caught.value.message and "acme:" not in caught.value.message
    with pytest.raises(openai.BadRequestError) as plain:
        chat.chat.completions.create(model="orchestrator", extra_headers=headers,
                                     messages=[{"role": "user", "content": PAGE}])
    assert "'cr-42'" in plain.value.message and "acme:" not in plain.value.message
    assert alerts(db) == []
    done = orch.resume("acme:cr-42", True, approver="ana")
    assert done.status == "ok" and db.execute(route).fetchone()[0] == "web-backup-b"


def post(server: LiveServer, key: str | None, body: Any, **headers: str) -> httpx.Response:
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}/v1/chat/completions", content=content, timeout=60,
                      headers={"Content-Type": "application/json", **auth, **headers})


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The OpenAI error object of a response, checked for its shape."""
    assert response.headers["content-type"] == "application/json"
    assert "Traceback" not in response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert "\n" not in body["error"]["message"]
    return dict(body["error"])


def test_bad_requests_get_openai_shaped_errors_and_a_bug_is_one_line(
        server: LiveServer, keys: KeyStore, orch: Orchestrator, db: sqlite3.Connection,
        monkeypatch: pytest.MonkeyPatch) -> None:
    key = keys.create("ops", ["chat"])
    good = {"model": "orchestrator", "messages": [{"role": "user", "content": PAGE}]}

    big = post(server, key, {**good, "padding": "x" * MAX_BODY})
    assert big.status_code == 413 and error_of(big)["code"] == "request_too_large"
    chunked = httpx.post(f"{server.url}/v1/chat/completions", timeout=60,
                         content=iter([b"{" + b" " * 4096] * 10),
                         headers={"Authorization": f"Bearer {key}"})
    assert chunked.status_code == 413 and error_of(chunked)["code"] == "request_too_large"

    invalid = post(server, key, {"model": "orchestrator"})
    assert invalid.status_code == 400
    assert error_of(invalid) == {"message": "invalid request body: messages: Field required",
                                 "type": "invalid_request_error", "param": "messages",
                                 "code": "invalid_body"}
    not_json = post(server, key, b"{not json")
    assert not_json.status_code == 400 and error_of(not_json)["code"] == "invalid_body"
    assert error_of(not_json)["param"] is None  # not the position, as if it were a field
    assert error_of(not_json)["message"].startswith(
        "the request body is not valid JSON at character 1")
    no_user = post(server, key, {**good, "messages": [{"role": "system", "content": "hi"}]})
    assert no_user.status_code == 400
    assert "last message must be the user's" in error_of(no_user)["message"]
    empty = post(server, key, {**good, "messages": [{"role": "user", "content": "  "}]})
    assert empty.status_code == 400 and "request is empty" in error_of(empty)["message"]
    bad_thread = post(server, key, good, **{"X-Thread-Id": "../../etc"})
    assert bad_thread.status_code == 400 and error_of(bad_thread)["param"] == "X-Thread-Id"
    assert alerts(db) == []  # none of them ran

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail\n  File 'x.py', line 1")

    monkeypatch.setattr(orch, "arun", broken)
    for stream in (False, True):
        failed = post(server, key, {**good, "stream": stream})
        assert failed.status_code == 500
        error = error_of(failed)
        assert error["type"] == "server_error" and "RuntimeError" in error["message"]
        assert "secret detail" not in failed.text


@pytest.mark.parametrize("model", ["orchestrator", 'a "model"\x00 \\u0000 "\x00"'])
def test_a_content_chunk_is_the_chunk_object_with_only_its_text_encoded_anew(model: str) -> None:
    lines = ContentChunks("chatcmpl-1", model)
    for text in ["web-3 ", "", 'a "quote", a \x00 and\nnew line', "ünïcode ✓"]:
        line = lines.line(text)
        assert line.startswith("data: ") and line.endswith("\n\n")
        sent = json.loads(line.removeprefix("data: "))
        expected = chunk("chatcmpl-1", model, {"content": text})
        assert abs(sent.pop("created") - expected.pop("created")) <= 1
        assert sent == expected


def test_a_conversation_ending_with_another_roles_message_runs_nothing(
        server: LiveServer, keys: KeyStore, orch: Orchestrator, db: sqlite3.Connection) -> None:
    # Sending the history back with an assistant (or tool) message last must not run the
    # user's earlier request again, writes included.
    key = keys.create("ops", ["chat"])
    for last in ({"role": "assistant", "content": "Paged Dana."},
                 {"role": "tool", "content": "done", "tool_call_id": "c1"}):
        for stream in (False, True):
            refused = post(server, key, {"model": "orchestrator", "stream": stream,
                                         "messages": [{"role": "user", "content": PAGE}, last]},
                           **{"X-Thread-Id": "t-1"})
            assert refused.status_code == 400, refused.text
            error = error_of(refused)
            assert error["param"] == "messages" and repr(last["role"]) in error["message"]
    assert alerts(db) == [] and orch.records.runs() == []


def test_openai_fields_that_would_change_the_replys_shape_are_refused(
        server: LiveServer, keys: KeyStore, orch: Orchestrator, db: sqlite3.Connection) -> None:
    key = keys.create("ops", ["chat"])
    good = {"model": "orchestrator", "messages": [{"role": "user", "content": PAGE}]}
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    for extra, param in (({"n": 2}, "n"), ({"tools": [tool], "tool_choice": "required"}, "tools"),
                         ({"functions": [tool["function"]]}, "functions"),
                         ({"response_format": {"type": "json_object"}}, "response_format"),
                         ({"stop": ["a", "b", "c", "d", "e"]}, "stop"), ({"stop": [""]}, "stop")):
        refused = post(server, key, {**good, **extra})
        assert refused.status_code == 400, extra
        assert (error_of(refused)["param"], error_of(refused)["code"]) == (
            param, "unsupported_parameter")
    # What the orchestrator decides itself is accepted and left to it.
    taken = post(server, key, {**good, "n": 1, "temperature": 0.2, "seed": 7, "tools": [],
                               "response_format": {"type": "text"}})
    assert taken.status_code == 200
    assert alerts(db) == ["web-3"]


def test_stop_and_max_tokens_cut_the_answer_sent_not_the_run(
        server: LiveServer, keys: KeyStore, orch: Orchestrator) -> None:
    chat = client(server, keys.create("ops", ["chat"]))
    short = chat.chat.completions.create(model="orchestrator", max_tokens=3,
                                         messages=[{"role": "user", "content": TWO_CHECKS}])
    (run,) = orch.records.runs()
    whole = orch.records.run(run.run_id)["answer"]
    assert len(whole) > 12
    assert short.choices[0].message.content == whole[:12]
    assert short.choices[0].finish_reason == "length"

    stop = "web-2"
    assert stop in whole
    for stream in (False, True):
        if stream:
            chunks = list(chat.chat.completions.create(
                model="orchestrator", stream=True, stop=[stop, "never said"],
                messages=[{"role": "user", "content": TWO_CHECKS}]))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        else:
            reply = chat.chat.completions.create(
                model="orchestrator", stop=stop,
                messages=[{"role": "user", "content": TWO_CHECKS}])
            text, finish = reply.choices[0].message.content or "", reply.choices[0].finish_reason
        assert (text, finish) == (whole[:whole.index(stop)], "stop")
    # The runs' answers on record are whole.
    assert {orch.records.run(r.run_id)["answer"] for r in orch.records.runs()} == {whole}


def test_a_request_sent_again_with_its_idempotency_key_runs_once(
        server: LiveServer, keys: KeyStore, orch: Orchestrator, db: sqlite3.Connection) -> None:
    key = keys.create("ops", ["chat"], tenant="acme")
    body = {"model": "orchestrator", "messages": [{"role": "user", "content": PAGE}]}

    async def twice_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as http:
            return list(await asyncio.gather(*(http.post(
                f"{server.url}/v1/chat/completions", json={**body, "stream": stream},
                headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "page-1"})
                for stream in (False, True))))

    plain, streamed = asyncio.run(twice_at_once())
    again = post(server, key, body, **{"Idempotency-Key": "page-1"})
    assert plain.status_code == streamed.status_code == again.status_code == 200
    answer = plain.json()["choices"][0]["message"]["content"]
    assert answer.startswith("Paged Dana Okafor")
    assert again.json()["choices"][0]["message"]["content"] == answer
    datas = [json.loads(line.removeprefix("data: ")) for line in streamed.text.splitlines()
             if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in datas
                   if c["choices"]) == answer
    assert plain.headers["X-Thread-Id"] == streamed.headers["X-Thread-Id"] == \
        again.headers["X-Thread-Id"]
    assert alerts(db) == ["web-3"]  # paged once
    (run,) = orch.records.runs()
    assert again.headers["X-Run-Id"] == run.run_id == plain.json()["orchestrator"]["run_id"]

    # The key is the tenant's own: another tenant's same key is another request.
    other = post(server, keys.create("ops2", ["chat"], tenant="globex"), body,
                 **{"Idempotency-Key": "page-1"})
    assert other.status_code == 200 and len(orch.records.runs()) == 2
    # Sent with another request, the key is refused; a malformed one too.
    reused = post(server, key, {**body, "messages": [{"role": "user", "content": TWO_CHECKS}]},
                  **{"Idempotency-Key": "page-1"})
    assert reused.status_code == 400 and "another request" in error_of(reused)["message"]
    bad = post(server, key, body, **{"Idempotency-Key": "a b"})
    assert bad.status_code == 400 and error_of(bad)["param"] == "Idempotency-Key"
    assert alerts(db) == ["web-3", "web-3"] and len(orch.records.runs()) == 2


def test_booleans_are_json_booleans_not_words(
        server: LiveServer, keys: KeyStore, orch: Orchestrator) -> None:
    key = keys.create("ops", ["chat"])
    good = {"model": "orchestrator", "messages": [{"role": "user", "content": PAGE}]}
    for field, value in (("stream", "yes"), ("stream", 1),
                         ("stream_options", {"include_usage": "true"})):
        refused = post(server, key, {**good, field: value})
        assert refused.status_code == 400, (field, value)
        assert error_of(refused)["param"].startswith(field)
    with httpx.Client(base_url=server.url, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as api:
        background = api.post("/api/runs", json={"request": PAGE, "background": "yes"})
        assert background.status_code == 422 and error_of(background)["param"] == "background"
    assert orch.records.runs() == []


def test_a_client_that_names_no_thread_keeps_the_conversation_in_its_messages(
        server: LiveServer, keys: KeyStore, orch: Orchestrator, db: sqlite3.Connection) -> None:
    # An OpenAI client that sends the whole conversation each time and no thread id: the
    # turns before its request start the new thread, so "its" still means web-3.
    chat = client(server, keys.create("ops", ["chat"], tenant="acme"))
    first = chat.chat.completions.create(
        model="orchestrator", messages=[{"role": "user", "content": "check the health of web-3"}])
    answer = first.choices[0].message.content or ""
    follow = chat.chat.completions.with_raw_response.create(model="orchestrator", messages=[
        {"role": "system", "content": "you are helpful"},
        {"role": "user", "content": "check the health of web-3"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "alert its on-call team"}])
    reply = follow.parse().choices[0].message.content or ""
    assert reply.startswith("Paged"), reply
    assert alerts(db) == ["web-3"]
    thread = follow.headers["X-Thread-Id"]
    assert history(orch, f"acme:{thread}") == [
        ("user", "check the health of web-3"), ("assistant", answer),
        ("user", "alert its on-call team"), ("assistant", reply)]
    # A named thread keeps its own history, whatever the messages say.
    named = chat.chat.completions.create(
        model="orchestrator", extra_headers={"X-Thread-Id": "own-1"}, messages=[
            {"role": "user", "content": "check the health of web-1"},
            {"role": "assistant", "content": "web-1 is down"},
            {"role": "user", "content": "check the health of web-2"}])
    assert named.choices[0].message.content
    assert [role for role, _ in history(orch, "acme:own-1")] == ["user", "assistant"]
