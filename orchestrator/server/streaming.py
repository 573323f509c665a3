"""A chat completion streamed as Server-Sent Events while the run works.

The run goes on in a task of its own and sends its events and answer pieces to a queue; the
response reads the queue. A client that disconnects does not stop the run: its writes finish
and its answer lands in the thread, where the next turn sees it (stopping a run half-way
through its writes would leave their outcome unknown).
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
from orchestrator.server.errors import api_error_of
from orchestrator.server.openai_schema import chunk, usage_chunk
from orchestrator.server.progress import progress_comment

log = logging.getLogger(__name__)

_DONE = object()


class RunFeed:
    """A run started in the background, with what it sends on a queue, in order."""

    def __init__(self, start: Callable[..., Any], keep: set[asyncio.Task[Any]]) -> None:
        """``start(on_event=..., on_answer_chunk=...)`` returns the run's coroutine; ``keep``
        holds the task until it ends, so a run whose client left is not collected."""
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.task: asyncio.Task[RunResult] = asyncio.ensure_future(start(
            on_event=self.queue.put_nowait, on_answer_chunk=self.queue.put_nowait))
        keep.add(self.task)
        self.task.add_done_callback(self._ended)
        self.task.add_done_callback(keep.discard)
        self._first: Any = None

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
        item = self._first
        while item is not _DONE:
            yield item
            item = await self.queue.get()


async def sse_stream(feed: RunFeed, completion_id: str, model: str, *,
                     answer_of: Callable[[RunResult], str], include_usage: bool
                     ) -> AsyncIterator[str]:
    """The ``chat.completion.chunk`` events of a run, ending with ``data: [DONE]``; progress
    as SSE comments; an error mid-run as an OpenAI error object (the SDKs raise it)."""
    yield _data(chunk(completion_id, model, {"role": "assistant", "content": ""}))
    streamed: list[str] = []
    async for item in feed.items():
        if isinstance(item, AnswerChunk):
            streamed.append(item.text)
            yield _data(chunk(completion_id, model, {"content": item.text}))
        elif (line := progress_comment(item)) is not None:
            yield line
    try:
        result = feed.task.result()
    except Exception as exc:  # a bug was logged when the run ended
        yield _data(api_error_of(exc).body())
        yield "data: [DONE]\n\n"
        return
    rest = _unsent(answer_of(result), "".join(streamed))
    if rest:
        yield _data(chunk(completion_id, model, {"content": rest}))
    yield _data(chunk(completion_id, model, {}, finish_reason="stop"))
    if include_usage:
        yield _data(usage_chunk(completion_id, model, result.usage))
    yield "data: [DONE]\n\n"


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


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, default=str)}\n\n"
