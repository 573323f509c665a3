"""The answer streams: the synthesizer's model is read piece by piece, each piece goes to the
caller (``on_answer_chunk``) as it arrives, and the stored run is what it was without it.

Offline through the fake model, and through the real ``openai`` client over HTTP to the
test server streaming server-sent events; a stream cut off part-way falls back to the plain
account with the call counted; the CLI shows the answer live on a terminal and prints it once.
"""

from __future__ import annotations

import asyncio
import math
import os
import pty
import re
import select
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from rich.console import Console

from orchestrator.api import Orchestrator
from orchestrator.cli.view import RunView
from orchestrator.events import AnswerChunk, Event
from orchestrator.models.fake import FakeChatModel
from orchestrator.nodes.specialist import estimate_tokens
from orchestrator.results import Usage
from tests.conftest import INCIDENT_REQUEST
from tests.support.openai_server import OpenAICompatServer, use_server, word_pieces

GUARD_S = 30.0
"""How long a test waits for something that should happen at once (a hang, not a timing)."""


class Timeline:
    """Events and answer chunks in the order the caller received them."""

    def __init__(self) -> None:
        self.items: list[Event | AnswerChunk] = []

    def on_event(self, event: Event) -> None:
        self.items.append(event)

    def on_chunk(self, chunk: AnswerChunk) -> None:
        self.items.append(chunk)

    @property
    def chunks(self) -> list[AnswerChunk]:
        return [i for i in self.items if isinstance(i, AnswerChunk)]

    def kinds(self) -> list[str]:
        return [i.type if isinstance(i, Event) else "chunk" for i in self.items]


def _synthesizer_call(model: FakeChatModel) -> Any:
    """The fake model's one call without tools: the synthesizer's."""
    (call,) = [c for c in model.calls if not c.tool_names and "<results>" in
               c.messages[-1].text]
    return call


def _stored(orchestrator_home: Path, run_id: str) -> tuple[Any, ...]:
    with sqlite3.connect(orchestrator_home / "runs.sqlite") as db:
        row = db.execute("SELECT answer, llm_calls, input_tokens, output_tokens, status "
                         "FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        events = [r[0] for r in db.execute(
            "SELECT type FROM events WHERE run_id = ? ORDER BY seq", (run_id,))]
    return row, events


# --- the fake model -------------------------------------------------------------------------


def test_fake_model_streams_word_sized_pieces_with_usage_on_the_last() -> None:
    text = "  Done: web-3 rerouted.\n- alert #1 sent  "
    first = FakeChatModel(script=[text])
    second = FakeChatModel(script=[text])

    async def pieces(model: FakeChatModel) -> list[Any]:
        return [c async for c in model.astream("hi")]

    streamed = asyncio.run(pieces(first))
    again = asyncio.run(pieces(second))

    texts = [c.text for c in streamed if c.text]
    assert texts == ["  Done: ", "web-3 ", "rerouted.\n", "- ", "alert ", "#1 ", "sent  "]
    assert "".join(texts) == text
    assert [c.text for c in again] == [c.text for c in streamed]  # deterministic
    with_usage = [c for c in streamed if c.usage_metadata]
    assert len(with_usage) == 1 and with_usage[0].text == "sent  "
    assert with_usage[0].usage_metadata == FakeChatModel(script=[text]).invoke(
        "hi").usage_metadata
    assert with_usage[0].response_metadata["finish_reason"] == "stop"


def test_fake_model_streams_a_tool_call_whole() -> None:
    reply = AIMessage(content="", tool_calls=[{"name": "lookup", "args": {"id": "p-7"},
                                               "id": "call_1", "type": "tool_call"}])
    model = FakeChatModel(script=[reply])

    async def merged() -> Any:
        total = None
        async for chunk in model.astream("hi"):
            total = chunk if total is None else total + chunk
        return total

    total = asyncio.run(merged())
    assert total.tool_calls == reply.tool_calls
    assert total.usage_metadata["output_tokens"] > 0


# --- offline: the fake model ----------------------------------------------------------------


def test_answer_chunks_arrive_before_the_answer_and_are_not_stored(
        domain_db: Path, orchestrator_home: Path) -> None:
    model = FakeChatModel()
    timeline = Timeline()
    orch = Orchestrator(model=model, domain_db=domain_db)

    result = orch.run(INCIDENT_REQUEST, on_event=timeline.on_event,
                      on_answer_chunk=timeline.on_chunk)

    assert result.ok, result.error
    chunks = timeline.chunks
    assert len(chunks) > 10  # word-sized pieces, not the answer in one go
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert {c.run_id for c in chunks} == {result.run_id}
    assert "".join(c.text for c in chunks).rstrip() == result.answer
    assert word_pieces(_synthesizer_call(model).reply.text) == [c.text for c in chunks]
    # In order: after every subtask ended, before the answer event, which is the last.
    kinds = timeline.kinds()
    first, last = kinds.index("chunk"), len(kinds) - 1 - kinds[::-1].index("chunk")
    assert kinds[first:last + 1] == ["chunk"] * len(chunks)
    assert "subtask_finished" in kinds[:first] and "subtask_started" not in kinds[first:]
    assert kinds[last + 1:] == ["answer"]

    # The record is as it was: the events (no chunk among them) and the answer.
    row, stored_events = _stored(orchestrator_home, result.run_id)
    assert row == (result.answer, 11, result.usage.input_tokens, result.usage.output_tokens,
                   "ok")
    assert stored_events == [e.type for e in result.events] == [
        k for k in kinds if k != "chunk"]
    # And a run that asks for no chunks is the same run.
    plain = Orchestrator(model="fake", domain_db=domain_db.with_name("plain.sqlite")).run(
        INCIDENT_REQUEST)
    assert plain.answer == result.answer and plain.usage == result.usage


# --- over HTTP: the openai client and a streaming server ------------------------------------


@pytest.fixture
def http_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer() as server:
        yield use_server(server, monkeypatch)


def _local_run(tmp_path: Path) -> tuple[Usage, Usage, Any]:
    """The same request in process with the fake model: its usage, the synthesizer call's
    usage, and that call."""
    model = FakeChatModel()
    local = Orchestrator(model=model, domain_db=tmp_path / "local.sqlite").run(INCIDENT_REQUEST)
    call = _synthesizer_call(model)
    synth = Usage(1, call.reply.usage_metadata["input_tokens"],
                  call.reply.usage_metadata["output_tokens"])
    return local.usage, synth, call


def test_answer_streams_over_http_piece_by_piece(
        http_server: OpenAICompatServer, tmp_path: Path, orchestrator_home: Path) -> None:
    received = threading.Event()
    waited: list[bool] = []

    def before_piece(index: int, text: str) -> None:
        if index == 1:  # hold the rest of the stream until the client has the first piece
            waited.append(received.wait(GUARD_S))

    http_server.before_piece = before_piece
    timeline = Timeline()

    def on_chunk(chunk: AnswerChunk) -> None:
        timeline.on_chunk(chunk)
        received.set()

    result = Orchestrator(model="openai:fake-rules", domain_db=tmp_path / "d.sqlite").run(
        INCIDENT_REQUEST, on_event=timeline.on_event, on_answer_chunk=on_chunk)

    assert result.ok, result.error
    # The first piece reached the caller while the server still held the second one back:
    # the answer travels as it is written, not after the reply is complete.
    assert waited == [True]
    streamed = [b for b in http_server.requests if b.get("stream")]
    assert len(streamed) == 1 and streamed[0]["stream_options"] == {"include_usage": True}
    assert "<results>" in streamed[0]["messages"][-1]["content"]
    local_usage, _, call = _local_run(tmp_path)
    assert [c.text for c in timeline.chunks] == word_pieces(call.reply.text)
    assert "".join(c.text for c in timeline.chunks).rstrip() == result.answer
    kinds = timeline.kinds()
    assert kinds[-1] == "answer" and kinds.index("answer") > kinds.index("chunk")
    # The usage came on the stream's last chunk: the same figures as the in-process model.
    assert result.usage == local_usage
    row, events = _stored(orchestrator_home, result.run_id)
    assert row == (result.answer, 11, local_usage.input_tokens, local_usage.output_tokens,
                   "ok")
    assert "answer" in events and len(events) == len(result.events)
    assert http_server.rejected == [] and http_server.cut_off == []


def test_a_run_nobody_streams_asks_for_its_answer_in_one_plain_call(
        http_server: OpenAICompatServer, tmp_path: Path, orchestrator_home: Path) -> None:
    """No chunk listener (a plain HTTP answer, a script): the answer is not streamed, which
    spares the model server and the engine the work per piece, and the run is the same."""
    timeline = Timeline()
    result = Orchestrator(model="openai:fake-rules", domain_db=tmp_path / "d.sqlite").run(
        INCIDENT_REQUEST, on_event=timeline.on_event)

    assert result.ok, result.error
    assert not any(b.get("stream") for b in http_server.requests)
    answers = [b for b in http_server.requests if "<results>" in b["messages"][-1]["content"]]
    assert len(answers) == 1
    local_usage, _, call = _local_run(tmp_path)
    assert result.answer == call.reply.text.strip()
    assert result.usage == local_usage
    assert timeline.chunks == [] and timeline.kinds()[-1] == "answer"
    row, _ = _stored(orchestrator_home, result.run_id)
    assert row == (result.answer, 11, local_usage.input_tokens, local_usage.output_tokens,
                   "ok")


def test_a_stream_cut_off_part_way_falls_back_and_counts_what_was_served(
        http_server: OpenAICompatServer, tmp_path: Path, orchestrator_home: Path) -> None:
    def before_piece(index: int, text: str) -> None:
        if index == 3:
            raise ConnectionError("the server went away")

    http_server.before_piece = before_piece
    timeline = Timeline()
    db = tmp_path / "d.sqlite"

    result = Orchestrator(model="openai:fake-rules,retries=0", domain_db=db).run(
        INCIDENT_REQUEST, on_event=timeline.on_event, on_answer_chunk=timeline.on_chunk)

    local_usage, synth, call = _local_run(tmp_path)
    served = word_pieces(call.reply.text)[:3]
    assert [c.text for c in timeline.chunks] == served
    assert http_server.cut_off == ["ConnectionError: the server went away"]
    # The work is not lost: the plain account of every result, and why it is plain.
    assert result.ok, result.error
    assert result.answer.startswith("Done (4 of 4 subtasks):")
    assert "disk full" in result.answer and "Logged incident #1" in result.answer
    assert "(The supervisor model failed while writing the summary" in result.answer
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM incidents").fetchone() == (1,)
    # Counted: the call the server served, its input estimated and what it wrote.
    expected = local_usage - synth + Usage(1, estimate_tokens(call.messages),
                                           math.ceil(len("".join(served)) / 4))
    assert result.usage == expected
    row, events = _stored(orchestrator_home, result.run_id)
    assert row == (result.answer, 11, expected.input_tokens, expected.output_tokens, "ok")
    assert events[-1] == "answer"


def test_a_stream_that_stalls_past_the_call_timeout_falls_back(
        http_server: OpenAICompatServer, tmp_path: Path) -> None:
    release = threading.Event()

    def before_piece(index: int, text: str) -> None:
        if index == 2:  # stalls until the test ends; the client gives up first
            release.wait(GUARD_S)

    http_server.before_piece = before_piece
    timeline = Timeline()
    try:
        result = Orchestrator(model="openai:fake-rules,timeout=1,retries=0",
                              domain_db=tmp_path / "d.sqlite").run(
            INCIDENT_REQUEST, on_event=timeline.on_event, on_answer_chunk=timeline.on_chunk)
    finally:
        release.set()

    local_usage, synth, call = _local_run(tmp_path)
    served = word_pieces(call.reply.text)[:2]
    assert [c.text for c in timeline.chunks] == served
    assert result.ok and result.answer.startswith("Done (4 of 4 subtasks):")
    assert "(The supervisor model failed while writing the summary: " in result.answer
    assert "Timeout" in result.answer
    assert result.usage == local_usage - synth + Usage(
        1, estimate_tokens(call.messages), math.ceil(len("".join(served)) / 4))


# --- the CLI --------------------------------------------------------------------------------


def test_run_view_shows_the_answer_while_it_is_written_then_lets_it_go() -> None:
    view = RunView()
    console = Console(record=True, width=60, height=12, force_terminal=False)
    for index, text in enumerate(["Rerouted ", "web-3 ", "\x1b[31mtraffic.\n"] + [
            f"line {n}\n" for n in range(20)]):
        view.on_answer_chunk(AnswerChunk(run_id="r", text=text, index=index))

    console.print(view)
    shown = console.export_text()
    assert "answer (writing...)" in shown
    assert "line 19" in shown and "line 5" not in shown  # the newest lines, half a screen
    assert "\x1b" not in shown
    view.end_answer()
    console.print(view)
    assert "answer (writing" not in console.export_text()


def test_cli_run_prints_the_answer_once_when_not_a_terminal(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", INCIDENT_REQUEST], text=True,
        capture_output=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("answer") == 1  # the panel's title; no live preview left
    assert "writing..." not in proc.stdout
    assert proc.stdout.count("Logged incident #1") == 1
    assert "11 LLM calls" in proc.stdout


def test_cli_run_on_a_terminal_shows_the_answer_as_it_streams(
        http_server: OpenAICompatServer, tmp_path: Path) -> None:
    shown = threading.Event()

    def before_piece(index: int, text: str) -> None:
        if index == 4:  # the rest waits until the terminal showed the first pieces
            shown.wait(GUARD_S)

    http_server.before_piece = before_piece
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120", "LINES": "60"}
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "run", INCIDENT_REQUEST, "--model",
         "openai:fake-rules"], stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
        env=env)
    os.close(terminal)
    output = b""
    saw_pieces_live = False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process has ended
                break
            if not data:
                break
            output += data
            if not saw_pieces_live and b"answer (writing...)" in output and \
                    b"Completed 4 of 4" in output:
                saw_pieces_live = True  # before the server sent piece 4
                shown.set()
    finally:
        shown.set()
        proc.wait(timeout=60)
        os.close(controller)

    assert proc.returncode == 0, output.decode(errors="replace")[-2000:]
    assert saw_pieces_live
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))
    tail = text[text.rindex("answer (writing...)"):]
    # After the last live frame: the finished answer, in its panel, and the usage line.
    assert "Logged incident #1" in tail and "11 LLM calls" in tail
