"""A chat completion streamed as Server-Sent Events while the run works.

The run goes on in a task of its own and sends its events and answer pieces to a queue; the
response reads the queue. A client that disconnects does not stop the run: its writes finish
and its answer lands in the thread, where the next turn sees it (stopping a run half-way
through its writes would leave their outcome unknown).

A client that reads slowly, or not at all, costs the server a bounded buffer: the queue
holds at most :attr:`RunFeed.limit` items. Past that, progress lines are dropped (the
client is told how many; ``GET /api/runs/{id}/events`` has them all) and answer pieces stop
being queued: the rest of the answer is sent in one piece from the run's result at the end,
so the answer is never lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from orchestrator.errors import OrchestratorError
from orchestrator.events import AnswerChunk, Event
from orchestrator.results import RunResult
from orchestrator.server.answer_limits import AnswerLimit
from orchestrator.server.errors import api_error_of
from orchestrator.server.openai_schema import chunk, usage_chunk
from orchestrator.server.progress import PROGRESS_PREFIX, progress_comment
from orchestrator.server.run_hub import kept

log = logging.getLogger(__name__)

_DONE = object()


class RunFeed:
    """A run started in the background, with what it sends on a queue, in order."""

    limit = 256
    """Most items queued for a reader that has not taken them (events, answer pieces)."""

    def __init__(self, start: Callable[..., Any], keep: set[asyncio.Task[Any]]) -> None:
        """``start(on_event=..., on_answer_chunk=...)`` returns the run's coroutine; ``keep``
        holds the task until it ends, so a run whose client left is not collected."""
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.dropped = 0
        """Progress events not queued because the reader was too far behind."""
        self.answer_cut = False
        """Whether answer pieces stopped being queued (the rest comes from the result)."""
        self.task: asyncio.Task[RunResult] = kept(start(
            on_event=self._event, on_answer_chunk=self._piece), keep)
        self.task.add_done_callback(self._ended)
        self._first: Any = None

    def _full(self) -> bool:
        return self.queue.qsize() >= self.limit

    def _event(self, event: Event) -> None:
        if self._full():
            self.dropped += 1
        else:
            self.queue.put_nowait(event)

    def _piece(self, piece: AnswerChunk) -> None:
        # Once one piece is dropped, all later ones are: what was sent stays a prefix of
        # the answer, and the rest is sent from the result.
        if self.answer_cut or self._full():
            self.answer_cut = True
        else:
            self.queue.put_nowait(piece)

    def _ended(self, task: asyncio.Task[RunResult]) -> None:
        self.queue.put_nowait(_DONE)
        if not task.cancelled() and (exc := task.exception()) is not None and not isinstance(
                exc, OrchestratorError):
            log.error("a streamed run failed", exc_info=exc)

    async def started(self) -> None:
        """Wait for the run's first news; a run refused at once (a busy or paused thread)
        raises here, before the response has begun, so it gets its proper status."""
        self._first = await self.queue.get()
        if self._first is _DONE:
            self.task.result()

    async def items(self) -> AsyncIterator[AnswerChunk | Event]:
        async for batch in self.batches():
            for item in batch:
                yield item

    async def batches(self) -> AsyncIterator[list[AnswerChunk | Event]]:
        """What the run sends, in order, in lists: each holds what had arrived by the time
        the reader came back for more (at least one item)."""
        item = self._first
        while item is not _DONE:
            batch = [item]
            while not self.queue.empty() and (item := self.queue.get_nowait()) is not _DONE:
                batch.append(item)
            yield batch
            if item is not _DONE:
                item = await self.queue.get()


async def sse_stream(feed: RunFeed, completion_id: str, model: str, *,
                     answer_of: Callable[[RunResult], str], include_usage: bool,
                     limit: AnswerLimit | None = None) -> AsyncIterator[str]:
    """The ``chat.completion.chunk`` events of a run, ending with ``data: [DONE]``; progress
    as SSE comments; an error mid-run as an OpenAI error object (the SDKs raise it). The
    answer is cut where ``limit`` says (the progress lines still come until the run ends)."""
    yield _data(chunk(completion_id, model, {"role": "assistant", "content": ""}))
    content = ContentChunks(completion_id, model)
    limit = limit if limit is not None and limit.limited else None
    streamed: list[str] = []
    # What has arrived together goes out in one write: the same events, in the same order,
    # without a send (and a socket write) per answer piece for a reader that is behind.
    async for batch in feed.batches():
        lines = []
        for item in batch:
            if isinstance(item, AnswerChunk):
                streamed.append(item.text)
                text = item.text if limit is None else limit.take(item.text)
                if text:
                    lines.append(content.line(text))
            elif (line := progress_comment(item)) is not None:
                lines.append(line)
        if lines:
            yield "".join(lines)
    end = [dropped_comment(feed.dropped)] if feed.dropped else []
    try:
        result = feed.task.result()
    except Exception as exc:  # a bug was logged when the run ended
        yield "".join([*end, _data(api_error_of(exc).body()), "data: [DONE]\n\n"])
        return
    rest = _unsent(answer_of(result), "".join(streamed))
    if limit is not None:
        rest = limit.whole(rest)
    if rest:
        end.append(_data(chunk(completion_id, model, {"content": rest})))
    end.append(_data(chunk(completion_id, model, {}, finish_reason=(
        "stop" if limit is None else limit.finish_reason))))
    if include_usage:
        end.append(_data(usage_chunk(completion_id, model, result.usage)))
    end.append("data: [DONE]\n\n")
    yield "".join(end)


def _unsent(answer: str, streamed: str) -> str:
    """What of the final answer the client has not had yet. The answer is the streamed text
    (trimmed) as a rule; a run that answered without streaming (one agent's report, a paused
    run) sends it whole; a model that failed mid-answer is replaced by the plain account of
    the results, sent after a rule."""
    if answer.startswith(streamed):
        return answer[len(streamed):]
    if streamed.strip() == answer.strip():
        return ""
    return f"\n\n---\n{answer}"


def dropped_comment(count: int) -> str:
    """The progress line that says ``count`` events were not sent to a slow reader."""
    item = {"type": "progress_dropped", "count": count,
            "why": "the client read too slowly; GET /api/runs/{run_id}/events has them all"}
    return f"{PROGRESS_PREFIX}{json.dumps(item)}\n\n"


class ContentChunks:
    """The SSE lines of a completion's content chunks: the chunk is encoded once, and each
    piece of the answer only has its text encoded into it (a streamed answer is many small
    pieces). The pieces share the completion's ``created``, as OpenAI's do."""

    _MARK = json.dumps("\x00")  # a string no id or model name can make on its own

    def __init__(self, completion_id: str, model: str) -> None:
        encoded = json.dumps(chunk(completion_id, model, {"content": "\x00"}), default=str)
        head, mark, tail = encoded.rpartition(self._MARK)
        assert mark, encoded
        self._head, self._tail = f"data: {head}", f"{tail}\n\n"

    def line(self, text: str) -> str:
        return f"{self._head}{json.dumps(text)}{self._tail}"


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, default=str)}\n\n"
