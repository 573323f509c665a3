"""The HTTP server when things go wrong: clients that disconnect mid-stream, a client that
reads slowly, a server stopped (SIGTERM, SIGKILL) mid-run and started again. Real HTTP on
127.0.0.1; the restarts run ``orchestrator serve`` as a process of its own. Each test
checks what must not be lost: the run's record and events, the thread's history, and each
business write done exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator import Orchestrator
from orchestrator.config import load_settings
from orchestrator.server import KeyStore, create_app, streaming
from orchestrator.server.progress import progress
from tests.support.processes import run_cli
from tests.test_server_native import Frame, Served, frames_of, read_events, serving
from tests.test_server_openai import LiveServer
from tests.test_server_openai import no_proxy as no_proxy  # autouse: straight to 127.0.0.1

WRITES = "alert the on-call team that web-3 is down and log an incident for web-3"
THREE_WRITES = ("alert the on-call team that web-3 is down, alert the on-call team that "
                "web-4 is down, log an incident for web-2")
CHECK = "check the health of web-1"
CHAIN = ("alert the on-call team that web-3 is down and then alert the on-call team that "
         "web-4 is down, then log an incident for web-2")
PROGRESS = ": orchestrator "


def writes(db_path: Path) -> dict[str, int]:
    """The business rows the write requests make: alerts and incidents by service."""
    with sqlite3.connect(db_path) as db:
        alerts = db.execute("SELECT service, count(*) FROM alerts GROUP BY service").fetchall()
        incidents = db.execute("SELECT service, count(*) FROM incidents GROUP BY service"
                               ).fetchall()
    return {**{f"alert {s}": n for s, n in alerts}, **{f"incident {s}": n for s, n in incidents}}


def wait_until_ended(chat: httpx.Client, run_id: str) -> list[Frame]:
    """The run's whole event stream, read to its end: returns once the run has ended."""
    return read_events(chat, run_id)


@pytest.fixture
def slow(domain_db: Path, tmp_path: Path) -> Iterator[Served]:
    """Each model call takes 0.5 s: a run lasts a few seconds, long enough to leave."""
    with serving(domain_db, tmp_path, "fake:latency=0.5") as running:
        yield running


def chat_body(text: str, *, stream: bool = True) -> dict[str, Any]:
    return {"model": "orchestrator", "stream": stream,
            "messages": [{"role": "user", "content": text}]}


# --- a client that disconnects ----------------------------------------------------------------

def test_a_chat_client_that_leaves_mid_stream_does_not_stop_its_run(
        slow: Served, domain_db: Path) -> None:
    key = slow.keys.create("ops", "chat", tenant="acme")
    chat = httpx.Client(base_url=slow.live.url, timeout=60,
                        headers={"Authorization": f"Bearer {key}"})
    with chat.stream("POST", "/v1/chat/completions", json=chat_body(WRITES),
                     headers={"X-Thread-Id": "left-1"}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith(PROGRESS):
                break  # the first progress line: the plan; then the client is gone
    (run,) = slow.orch.records.runs()
    # It left before the run's end (each of its model calls takes 0.5 s).
    assert slow.orch.records.run(run.run_id)["status"] == "running"

    frames = wait_until_ended(chat, run.run_id)
    assert frames[-1] == Frame(None, "end", {"run_id": run.run_id, "status": "ok"})
    record = slow.orch.records.run(run.run_id)
    assert record["status"] == "ok" and record["answer"].startswith("Completed 2 of 2")
    assert writes(domain_db) == {"alert web-3": 1, "incident web-3": 1}
    turns = chat.get("/api/threads/left-1/history").json()["turns"]
    assert turns == [{"role": "user", "text": WRITES, "run_id": run.run_id, "status": "ok"},
                     {"role": "assistant", "text": record["answer"], "run_id": run.run_id,
                      "status": "ok"}]
    # The thread is free: the next turn runs and sees the answer in its history.
    follow = chat.post("/v1/chat/completions", json=chat_body(CHECK, stream=False),
                       headers={"X-Thread-Id": "left-1"})
    assert follow.status_code == 200, follow.text
    assert [t["role"] for t in chat.get("/api/threads/left-1/history").json()["turns"]] == [
        "user", "assistant", "user", "assistant"]
    assert writes(domain_db) == {"alert web-3": 1, "incident web-3": 1}


def test_an_event_stream_left_mid_run_resumes_after_last_event_id_with_no_gap(
        slow: Served, domain_db: Path) -> None:
    chat = slow.client("ops")
    started = chat.post("/api/runs", json={"request": WRITES, "background": True})
    run_id = started.json()["run_id"]
    with chat.stream("GET", f"/api/runs/{run_id}/events") as response:
        live = frames_of(response)
        first = [next(live), next(live)]
    assert [f.id for f in first] == [0, 1]
    assert chat.get(f"/api/runs/{run_id}").json()["status"] == "running"

    rest = read_events(chat, run_id, last_id=first[-1].id)
    assert rest[-1] == Frame(None, "end", {"run_id": run_id, "status": "ok"})
    got = first + rest[:-1]
    stored = slow.orch.records.events(run_id)
    assert [f.id for f in got] == list(range(len(stored)))  # no gap, no repeat
    assert [f.event for f in got] == [e.type for e in stored]
    assert got[-1].event == "answer"
    assert writes(domain_db) == {"alert web-3": 1, "incident web-3": 1}


# --- a client that reads slowly ---------------------------------------------------------------

def test_a_slow_reader_blocks_no_one_and_still_gets_the_whole_answer_in_order(
        slow: Served, domain_db: Path) -> None:
    key = slow.keys.create("ops", "chat", tenant="acme")
    tiny = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)])
    reader = httpx.Client(base_url=slow.live.url, timeout=120, transport=tiny,
                          headers={"Authorization": f"Bearer {key}"})
    other = httpx.Client(base_url=slow.live.url, timeout=120,
                         headers={"Authorization": f"Bearer {key}"})
    received = bytearray()
    with reader.stream("POST", "/v1/chat/completions", json=chat_body(THREE_WRITES),
                       headers={"X-Thread-Id": "slow-1"}) as response:
        pieces = response.iter_raw(chunk_size=32)
        received += next(pieces)
        # The slow client holds its stream open without reading while another session
        # runs a whole request with writes on the same server.
        done = other.post("/v1/chat/completions", json=chat_body(WRITES, stream=False),
                          headers={"X-Thread-Id": "fast-1"})
        assert done.status_code == 200
        assert done.json()["choices"][0]["message"]["content"].startswith("Completed 2 of 2")
        assert b"[DONE]" not in received
        for piece in pieces:  # then reads the rest a little at a time
            received += piece
            time.sleep(0.002)  # the client is slow; nothing waits on this
    lines = received.decode().split("\n\n")
    assert lines[-2] == "data: [DONE]"
    slow_run = next(r for r in slow.orch.records.runs() if r.thread_id == "acme:slow-1")
    record = slow.orch.records.run(slow_run.run_id)
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    answer = "".join(d["choices"][0]["delta"].get("content") or "" for d in data
                     if d["choices"])
    assert record["status"] == "ok" and answer == record["answer"]
    assert answer.startswith("Completed 3 of 3")
    shown = [json.loads(line[len(PROGRESS):])["type"] for line in lines
             if line.startswith(PROGRESS)]
    expected = [e.type for e in slow.orch.records.events(slow_run.run_id)
                if progress(e) is not None]
    assert shown == expected  # every progress line, in the order of the run's events
    assert writes(domain_db) == {"alert web-3": 2, "alert web-4": 1, "incident web-2": 1,
                                 "incident web-3": 1}


class HeldSends:
    """ASGI middleware that holds a chat stream's body after its first piece until
    ``release`` is set: what uvicorn does when a client's socket is full (its ``send``
    waits for the transport to drain), made deterministic."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.release = threading.Event()
        self.holding = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            await self.app(scope, receive, send)
            return
        bodies = 0

        async def held(message: Any) -> None:
            nonlocal bodies
            if message["type"] == "http.response.body":
                bodies += 1
                if bodies > 1 and not self.release.is_set():
                    self.holding.set()
                    await asyncio.to_thread(self.release.wait)
            await send(message)

        await self.app(scope, receive, held)


def test_a_stalled_reader_costs_the_server_a_bounded_buffer_and_never_its_answer(
        domain_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming.RunFeed, "limit", 4)
    feeds: list[streaming.RunFeed] = []
    original = streaming.RunFeed.__init__

    def watched(self: streaming.RunFeed, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        feeds.append(self)

    monkeypatch.setattr(streaming.RunFeed, "__init__", watched)

    orch = Orchestrator("fake", domain_db=domain_db, checkpointer=tmp_path / "c.sqlite",
                        settings=load_settings(knowledge=False))
    try:
        with KeyStore.from_settings() as keys:
            app = HeldSends(create_app(orch, keys))
            with LiveServer(app) as live:  # type: ignore[arg-type]
                key = keys.create("ops", "chat")
                chat = httpx.Client(base_url=live.url, timeout=120,
                                    headers={"Authorization": f"Bearer {key}"})
                answer, shown = "", []
                with chat.stream("POST", "/v1/chat/completions",
                                 json=chat_body(THREE_WRITES)) as response:
                    lines = response.iter_lines()
                    assert next(lines).startswith("data: ")  # the role; then the send holds
                    assert app.holding.wait(60)
                    (run,) = orch.records.runs()
                    read_events(chat, run.run_id)  # the run ends while nothing is sent
                    (feed,) = feeds
                    held = feed.queue.qsize()
                    app.release.set()
                    for line in filter(None, lines):
                        if line.startswith("data: {"):
                            data = json.loads(line[6:])
                            if data["choices"]:
                                answer += data["choices"][0]["delta"].get("content") or ""
                        elif line.startswith(PROGRESS):
                            shown.append(json.loads(line[len(PROGRESS):]))
                    last = line
                stored = orch.records.run(run.run_id)["answer"]
    finally:
        orch.close()
    assert held <= 4 + 1, f"{held} items queued for a reader that reads nothing"
    assert last == "data: [DONE]"
    assert answer == stored and answer.startswith("Completed 3 of 3")  # whole, in order
    dropped = [p for p in shown if p["type"] == "progress_dropped"]
    assert len(dropped) == 1 and dropped[0]["count"] > 0
    assert writes(domain_db) == {"alert web-3": 1, "alert web-4": 1, "incident web-2": 1}


# --- a server stopped mid-run -----------------------------------------------------------------

@dataclass
class ServerProcess:
    """``orchestrator serve`` in a process of its own over the test's data folder."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @classmethod
    def start(cls, home: Path, model: str, env: dict[str, str],
              *options: str) -> ServerProcess:
        log = home / f"serve-{time.monotonic_ns()}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli", "serve", "--port", "0",
                 "--model", model, *options], stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while True:  # polling the server's log for the line that names its port
            text = log.read_text(errors="replace")
            if "Uvicorn running on http://127.0.0.1:" in text:
                port = text.split("Uvicorn running on http://127.0.0.1:")[1].split()[0]
                return cls(proc, f"http://127.0.0.1:{port}", log)
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"the server did not start:\n{text[-3000:]}")
            time.sleep(0.05)

    def stop(self, how: int) -> int:
        self.proc.send_signal(how)
        return self.proc.wait(timeout=120)


def server_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "ORCHESTRATOR_HOME": str(home), "ORCHESTRATOR_KNOWLEDGE": "0",
           "NO_PROXY": "127.0.0.1,localhost"}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        env.pop(name, None)
    return env


def wait_for_event(home: Path, run_id: str, kind: str, subtask: str,
                   proc: subprocess.Popen[bytes]) -> None:
    """Wait until the server has stored this event of the run (the row is the marker)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        with sqlite3.connect(home / "runs.sqlite") as runs:
            if runs.execute("SELECT 1 FROM events WHERE run_id = ? AND type = ? AND "
                            "subtask_id = ?", (run_id, kind, subtask)).fetchall():
                return
        time.sleep(0.02)  # polling the server's record, not timing it
    pytest.fail(f"no {kind} event (server exit code {proc.poll()})")


def stop_mid_run(home: Path, how: int) -> tuple[str, str, dict[str, Any], list[str]]:
    """Start a server, run a turn on thread ``ops-1``, start a background run of three
    writes one after another, and stop the server with ``how`` once the first write is done
    and the second subtask has started (its model call takes 2 s: no write is under way).
    The key, the run id, the earlier turn's run and the event types stored by then."""
    env = server_env(home)
    made = run_cli("keys", "create", "ops", "--scopes", "chat", "--tenant", "acme", "--json",
                   env=env)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    first = ServerProcess.start(home, "fake:latency=2", env)
    try:
        chat = httpx.Client(base_url=first.url, timeout=120,
                            headers={"Authorization": f"Bearer {key}"})
        earlier = chat.post("/api/runs", json={"request": CHECK, "thread_id": "ops-1"}).json()
        assert earlier["status"] == "ok", earlier
        started = chat.post("/api/runs", json={"request": CHAIN, "thread_id": "ops-1",
                                               "background": True})
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        wait_for_event(home, run_id, "subtask_started", "t2", first.proc)
        code = first.stop(how)
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
    assert code == -how, first.log.read_text()[-3000:]
    with sqlite3.connect(home / "runs.sqlite") as runs:
        before = [t for (t,) in runs.execute(
            "SELECT type FROM events WHERE run_id = ? ORDER BY seq", (run_id,))]
    return key, run_id, earlier, before


def test_a_server_killed_mid_run_reports_it_interrupted_and_resumes_it_once(
        orchestrator_home: Path) -> None:
    home = orchestrator_home
    key, run_id, earlier, before = stop_mid_run(home, signal.SIGKILL)
    assert before[:2] == ["run_started", "plan_made"] and "answer" not in before
    assert writes(home / "domain.sqlite") == {"alert web-3": 1}  # the first write only

    env = server_env(home)
    second = ServerProcess.start(home, "fake", env)
    try:
        chat = httpx.Client(base_url=second.url, timeout=120,
                            headers={"Authorization": f"Bearer {key}"})
        got = chat.get(f"/api/runs/{run_id}").json()
        assert got["status"] == "interrupted", got
        # Nothing lost: its events up to the kill, the thread's earlier turn.
        frames = read_events(chat, run_id)
        assert [f.event for f in frames[:-1]] == before
        assert frames[-1].data == {"run_id": run_id, "status": "interrupted"}
        turns = chat.get("/api/threads/ops-1/history").json()["turns"]
        assert turns == [{"role": "user", "text": CHECK, "run_id": earlier["run_id"],
                          "status": "ok"},
                         {"role": "assistant", "text": earlier["answer"],
                          "run_id": earlier["run_id"], "status": "ok"},
                         # The killed run has no answer; its request says what became of it.
                         {"role": "user", "text": CHAIN, "run_id": run_id,
                          "status": "interrupted"}]

        # Another tenant cannot resume it; its own tenant can, once.
        them = json.loads(run_cli("keys", "create", "them", "--scopes", "chat", "--tenant",
                                  "globex", "--json", env=env).stdout)["key"]
        refused = httpx.post(f"{second.url}/api/runs/{run_id}/resume", timeout=60,
                             headers={"Authorization": f"Bearer {them}"})
        assert refused.status_code == 404
        assert chat.get(f"/api/runs/{run_id}").json()["status"] == "interrupted"
        resumed = chat.post(f"/api/runs/{run_id}/resume")
        assert resumed.status_code == 200, resumed.text
        body = resumed.json()
        assert body["run_id"] == run_id and body["status"] == "ok", body
        assert body["answer"].startswith("Completed 3 of 3")
        again = chat.post(f"/api/runs/{run_id}/resume")
        assert again.status_code == 409 and "has ended (ok)" in again.text
        assert chat.get(f"/api/runs/{run_id}").json()["status"] == "ok"
        after = read_events(chat, run_id)
        assert [f.event for f in after[:len(before)]] == before  # appended to, not redone
        assert [f.id for f in after[:-1]] == list(range(len(after) - 1))
        turns = chat.get("/api/threads/ops-1/history").json()["turns"]
        assert turns[2:] == [{"role": "user", "text": CHAIN, "run_id": run_id,
                              "status": "ok"},  # the resumed run's answer
                             {"role": "assistant", "text": body["answer"], "run_id": run_id,
                              "status": "ok"}]
    finally:
        second.stop(signal.SIGTERM)
    assert writes(home / "domain.sqlite") == {"alert web-3": 1, "alert web-4": 1,
                                              "incident web-2": 1}


def test_a_server_stopped_with_sigterm_lets_its_run_finish_first(
        orchestrator_home: Path) -> None:
    home = orchestrator_home
    key, run_id, earlier, before = stop_mid_run(home, signal.SIGTERM)
    # The stopping server gave the run its grace period: it finished, with every write.
    assert before[-1] == "answer"
    assert writes(home / "domain.sqlite") == {"alert web-3": 1, "alert web-4": 1,
                                              "incident web-2": 1}

    second = ServerProcess.start(home, "fake", server_env(home))
    try:
        chat = httpx.Client(base_url=second.url, timeout=120,
                            headers={"Authorization": f"Bearer {key}"})
        got = chat.get(f"/api/runs/{run_id}").json()
        assert got["status"] == "ok" and got["answer"].startswith("Completed 3 of 3"), got
        assert [f.event for f in read_events(chat, run_id)[:-1]] == before
        turns = chat.get("/api/threads/ops-1/history").json()["turns"]
        assert turns == [{"role": "user", "text": CHECK, "run_id": earlier["run_id"],
                          "status": "ok"},
                         {"role": "assistant", "text": earlier["answer"],
                          "run_id": earlier["run_id"], "status": "ok"},
                         {"role": "user", "text": CHAIN, "run_id": run_id, "status": "ok"},
                         {"role": "assistant", "text": got["answer"], "run_id": run_id,
                          "status": "ok"}]
        refused = chat.post(f"/api/runs/{run_id}/resume")
        assert refused.status_code == 409 and "has ended (ok)" in refused.text
    finally:
        second.stop(signal.SIGTERM)
    assert writes(home / "domain.sqlite") == {"alert web-3": 1, "alert web-4": 1,
                                              "incident web-2": 1}


def test_an_open_stream_does_not_hold_a_stopping_server_past_its_grace(
        orchestrator_home: Path) -> None:
    """SIGTERM with a chat stream open and a background run going, ``--shutdown-grace 1``:
    the stream is closed and both runs are stopped and recorded interrupted, instead of the
    server waiting for the stream's run to end; after a restart both resume, writing once."""
    home = orchestrator_home
    env = server_env(home)
    made = run_cli("keys", "create", "ops", "--scopes", "chat", "--json", env=env)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    headers = {"Authorization": f"Bearer {key}"}
    first = ServerProcess.start(home, "fake:latency=3", env, "--shutdown-grace", "1")
    try:
        chat = httpx.Client(base_url=first.url, timeout=120, headers=headers)
        started = chat.post("/api/runs", json={"request": CHAIN, "thread_id": "ops-1",
                                               "background": True})
        assert started.status_code == 202, started.text
        background = started.json()["run_id"]
        body, thread = chat_body(WRITES), {"X-Thread-Id": "ops-2"}
        with httpx.Client(base_url=first.url, timeout=120, headers=headers) as streaming, \
                streaming.stream("POST", "/v1/chat/completions", json=body,
                                 headers=thread) as open_stream:
            lines = open_stream.iter_lines()
            assert any(line.startswith(PROGRESS) for line in lines)  # its run has begun
            wait_for_event(home, background, "subtask_started", "t1", first.proc)
            code = first.stop(signal.SIGTERM)
            # The server cut the stream off: reading the rest ends, without [DONE].
            with pytest.raises(httpx.RemoteProtocolError):
                list(lines)
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
    assert code == -signal.SIGTERM, first.log.read_text()[-3000:]
    with sqlite3.connect(home / "runs.sqlite") as runs:
        stored = dict(runs.execute("SELECT thread_id, status FROM runs WHERE thread_id IN "
                                   "('ops-1', 'ops-2') OR thread_id LIKE '%:ops-%'"))
    assert sorted(stored.values()) == ["interrupted", "interrupted"], stored

    second = ServerProcess.start(home, "fake", env)
    try:
        chat = httpx.Client(base_url=second.url, timeout=120, headers=headers)
        runs_out = chat.get("/api/runs").json()["runs"]
        assert {r["status"] for r in runs_out} == {"interrupted"}, runs_out
        for run in runs_out:
            resumed = chat.post(f"/api/runs/{run['run_id']}/resume")
            assert resumed.status_code == 200 and resumed.json()["status"] == "ok", resumed.text
    finally:
        second.stop(signal.SIGTERM)
    assert writes(home / "domain.sqlite") == {"alert web-3": 2, "alert web-4": 1,
                                              "incident web-2": 1, "incident web-3": 1}


def test_a_plain_chat_request_open_at_sigterm_gets_its_runs_grace_too(
        orchestrator_home: Path) -> None:
    """A chat completion that is not streamed, still running when the server is stopped:
    its run, like a streamed one, gets the second grace once open requests had theirs, and
    finishes (``--shutdown-grace 2``; four model calls of 0.8 s, so it outlasts the first
    grace but not both). It used to be cancelled with the request and left interrupted."""
    home = orchestrator_home
    env = server_env(home)
    made = run_cli("keys", "create", "ops", "--scopes", "chat", "--json", env=env)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    server = ServerProcess.start(home, "fake:latency=0.8", env, "--shutdown-grace", "2")
    replies: list[httpx.Response | Exception] = []

    def ask() -> None:
        try:
            replies.append(httpx.post(f"{server.url}/v1/chat/completions", timeout=120,
                                      json=chat_body(WRITES, stream=False),
                                      headers={"Authorization": f"Bearer {key}",
                                               "X-Thread-Id": "ops-9"}))
        except httpx.HTTPError as exc:  # the server went away: the run is what matters
            replies.append(exc)

    asker = threading.Thread(target=ask)
    try:
        asker.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.proc.poll() is None:
            with sqlite3.connect(home / "runs.sqlite") as runs:
                if runs.execute("SELECT 1 FROM events JOIN runs USING (run_id) WHERE "
                                "runs.thread_id LIKE '%:ops-9' AND events.type = "
                                "'subtask_started'").fetchall():
                    break
            time.sleep(0.02)  # polling the server's record, not timing it
        code = server.stop(signal.SIGTERM)
        asker.join(120)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    assert code == -signal.SIGTERM, server.log.read_text()[-3000:]
    assert replies, "the request never returned"
    with sqlite3.connect(home / "runs.sqlite") as runs:
        stored = runs.execute("SELECT status FROM runs WHERE thread_id LIKE '%:ops-9'"
                              ).fetchall()
    assert stored == [("ok",)], server.log.read_text()[-3000:]
    assert writes(home / "domain.sqlite") == {"alert web-3": 1, "incident web-3": 1}


# --- event streams held open -----------------------------------------------------------------


def test_a_key_holds_a_bounded_number_of_event_streams_and_closing_one_frees_it(
        slow: Served) -> None:
    """One key's open event streams are capped (each reads the run store): the next is a
    429 in words, another key still gets its stream, and a closed stream's slot comes back."""
    from orchestrator.server.run_events import MAX_STREAMS_PER_KEY

    mallory = slow.client("mallory", tenant="evil")
    run_id = mallory.post("/api/runs", json={"request": THREE_WRITES,
                                             "background": True}).json()["run_id"]
    url = f"{slow.live.url}/api/runs/{run_id}/events"
    headers = {"Authorization": mallory.headers["authorization"]}
    streams: list[socket.socket] = []

    def open_stream() -> bytes:
        conn = socket.create_connection(("127.0.0.1", slow.live.port), timeout=60)
        conn.sendall(f"GET /api/runs/{run_id}/events HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: {headers['Authorization']}\r\n\r\n".encode())
        streams.append(conn)
        return conn.recv(200)  # the status line comes first

    try:
        for _ in range(MAX_STREAMS_PER_KEY):
            assert open_stream().startswith(b"HTTP/1.1 200")
        refused = httpx.get(url, headers=headers, timeout=60)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_streams"
        assert f"already has {MAX_STREAMS_PER_KEY} event streams open" in refused.text
        # Another tenant's key is not held up by mallory's streams.
        ana = slow.client("ana", tenant="acme")
        own = ana.post("/api/runs", json={"request": CHECK}).json()
        assert own["status"] == "ok"
        with ana.stream("GET", f"/api/runs/{own['run_id']}/events") as theirs:
            assert theirs.status_code == 200
        # A stream that is closed gives its slot back once the server notices (its next
        # frame of the live run): then mallory may open one again.
        streams.pop().close()
        deadline = time.monotonic() + 60
        while (again := httpx.get(url, headers=headers, timeout=60)).status_code == 429:
            assert time.monotonic() < deadline, "the closed stream's slot never came back"
            time.sleep(0.1)  # polling the server for the freed slot, not timing it
        assert again.status_code == 200
    finally:
        for conn in streams:
            conn.close()


def test_stream_slots_cap_each_key_and_the_server() -> None:
    from orchestrator.server.errors import ApiError
    from orchestrator.server.keys import KeyInfo
    from orchestrator.server.run_events import StreamSlots

    def key(name: str) -> KeyInfo:
        return KeyInfo(name=name, tenant="acme", scopes=frozenset({"chat"}), created_at=0.0)

    slots = StreamSlots(per_key=2, total=3)
    held = [slots.take(key("a")), slots.take(key("a")), slots.take(key("b"))]
    for name in ("a", "c"):  # a is at its own cap, c meets the server's
        with pytest.raises(ApiError, match="event streams open") as refused:
            slots.take(key(name))
        assert refused.value.status == 429
    slots.give_back(held.pop())
    assert slots.take(key("c")) == ("acme", "c")
