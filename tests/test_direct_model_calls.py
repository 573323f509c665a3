"""Model calls that skip langchain's run machinery (``orchestrator.models.direct``): the same
reply as ``ainvoke``, and ``ainvoke`` itself whenever something watches or changes a call."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.globals import set_llm_cache
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_core.tracers.context import register_configure_hook
from langchain_core.tracers.langchain import wait_for_all_tracers
from langsmith.utils import get_env_var

from orchestrator.models import get_model
from orchestrator.models.direct import ainvoke_chat, astream_chat
from orchestrator.models.fake import FakeChatModel

try:
    from support.openai_server import OpenAICompatServer
except ImportError:
    from tests.support.openai_server import OpenAICompatServer

MESSAGES: list[BaseMessage] = [
    SystemMessage("You are diagnostics, a specialist agent. Use your tools."),
    HumanMessage("web-3 is down: find the root cause"),
]


@tool
def find_root_cause(service: str) -> str:
    """Find the root cause of a service's outage."""
    return "disk full"


class _Starts(AsyncCallbackHandler):
    """Counts the model runs a handler sees."""

    def __init__(self) -> None:
        self.starts = 0

    async def on_chat_model_start(self, serialized: dict[str, Any],
                                  messages: list[list[BaseMessage]], *, run_id: UUID,
                                  **kwargs: Any) -> None:
        self.starts += 1


def _same_reply(direct: BaseMessage, invoked: BaseMessage) -> None:
    assert isinstance(direct, AIMessage) and isinstance(invoked, AIMessage)
    assert direct.content == invoked.content
    assert [(c["name"], c["args"]) for c in direct.tool_calls] == [
        (c["name"], c["args"]) for c in invoked.tool_calls]
    assert direct.usage_metadata == invoked.usage_metadata
    # the same metadata but the completion's id (each answer from a server has its own)
    assert ({k: v for k, v in direct.response_metadata.items() if k != "id"}
            == {k: v for k, v in invoked.response_metadata.items() if k != "id"})


def test_the_offline_model_answers_the_same_as_through_ainvoke() -> None:
    model = get_model("fake").bind_tools([find_root_cause])
    direct = asyncio.run(ainvoke_chat(model, MESSAGES))
    invoked = asyncio.run(model.ainvoke(MESSAGES))
    _same_reply(direct, invoked)
    assert direct.tool_calls  # it asked for the tool, with its arguments


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer(api_key="sk-local-test") as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", srv.api_key)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                     "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield srv


def test_an_openai_model_over_http_answers_the_same_as_through_ainvoke(
        openai_server: OpenAICompatServer) -> None:
    model = get_model("openai:x").bind_tools([find_root_cause])
    direct = asyncio.run(ainvoke_chat(model, MESSAGES))
    invoked = asyncio.run(model.ainvoke(MESSAGES))
    _same_reply(direct, invoked)
    assert direct.response_metadata["model_name"]  # the server's answer, kept
    first, second = openai_server.requests
    assert first == second  # the same request went over the wire both ways


async def _streamed(pieces: AsyncIterator[BaseMessage]) -> tuple[str, dict[str, int]]:
    text, usage = "", {"input_tokens": 0, "output_tokens": 0}
    async for piece in pieces:
        text += piece.text
        for key, value in (getattr(piece, "usage_metadata", None) or {}).items():
            if key in usage:
                usage[key] += value
    return text, usage


def test_a_streamed_answer_is_the_same_as_through_astream(
        openai_server: OpenAICompatServer) -> None:
    for model in (get_model("fake"), get_model("openai:x")):
        extra = {"stream_usage": True} if "stream_usage" in type(model).model_fields else {}
        direct = asyncio.run(_streamed(astream_chat(model, MESSAGES[1:], **extra)))
        streamed = asyncio.run(_streamed(model.astream(MESSAGES[1:], **extra)))
        assert direct == streamed
        assert direct[0] and direct[1]["output_tokens"] > 0


def test_a_handler_on_the_run_sees_the_call() -> None:
    model = get_model("fake").bind_tools([find_root_cause])
    handler = _Starts()

    async def call(_: object) -> BaseMessage:
        return await ainvoke_chat(model, MESSAGES)

    reply = asyncio.run(RunnableLambda(call).ainvoke(None, {"callbacks": [handler]}))
    assert handler.starts == 1
    assert isinstance(reply, AIMessage) and reply.tool_calls

    async def stream(_: object) -> str:
        return (await _streamed(astream_chat(get_model("fake"), MESSAGES[1:])))[0]

    assert asyncio.run(RunnableLambda(stream).ainvoke(None, {"callbacks": [handler]}))
    assert handler.starts == 2


def test_a_model_with_its_own_handler_goes_through_ainvoke() -> None:
    handler = _Starts()
    model = FakeChatModel(callbacks=[handler])
    asyncio.run(ainvoke_chat(model, MESSAGES))
    assert handler.starts == 1


def test_a_cache_is_used() -> None:
    model = FakeChatModel()
    set_llm_cache(InMemoryCache())
    try:
        first = asyncio.run(ainvoke_chat(model, MESSAGES))
        second = asyncio.run(ainvoke_chat(model, MESSAGES))
    finally:
        set_llm_cache(None)
    assert first.content == second.content
    assert len(model.calls) == 1  # the second came from the cache


class _Watching(FakeChatModel):
    """Says whether each call came with a run (through ``ainvoke``) or straight."""

    def __init__(self, seen: list[bool]) -> None:
        super().__init__()
        self._seen = seen

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: Any = None, **kwargs: Any) -> Any:
        self._seen.append(run_manager is not None)
        return await super()._agenerate(messages, stop, run_manager, **kwargs)


def test_a_configure_hook_in_use_sees_the_call() -> None:
    handler = _Starts()
    hooked: ContextVar[_Starts | None] = ContextVar("test_direct_hook", default=None)
    register_configure_hook(hooked, inheritable=True)
    seen: list[bool] = []
    asyncio.run(ainvoke_chat(_Watching(seen), MESSAGES))
    token = hooked.set(handler)
    try:
        asyncio.run(ainvoke_chat(_Watching(seen), MESSAGES))
    finally:
        hooked.reset(token)
    assert seen == [False, True] and handler.starts == 1


class _Accepting(BaseHTTPRequestHandler):
    """A LangSmith endpoint that takes every upload (so a traced test sends nothing out)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_PATCH = do_POST

    def log_message(self, *args: Any) -> None:
        pass


def test_tracing_makes_the_call_go_through_ainvoke(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    asyncio.run(ainvoke_chat(_Watching(seen), MESSAGES))
    endpoint = ThreadingHTTPServer(("127.0.0.1", 0), _Accepting)
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_API_KEY", "unused")
    monkeypatch.setenv("LANGSMITH_ENDPOINT", f"http://127.0.0.1:{endpoint.server_port}")
    get_env_var.cache_clear()  # langsmith reads the environment once
    try:
        asyncio.run(ainvoke_chat(_Watching(seen), MESSAGES))
        wait_for_all_tracers()
    finally:
        monkeypatch.undo()
        get_env_var.cache_clear()
        endpoint.shutdown()
        endpoint.server_close()
    assert seen == [False, True]  # straight to the model, then a run a tracer sees


def test_a_model_that_wraps_its_calls_is_called_through_its_wrapper() -> None:
    wrapped: list[str] = []

    class Wrapping(FakeChatModel):
        async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            wrapped.append("ainvoke")
            return await super().ainvoke(input, config, **kwargs)

    reply = asyncio.run(ainvoke_chat(Wrapping(), MESSAGES))
    assert wrapped == ["ainvoke"] and isinstance(reply, AIMessage)


def test_streaming_turned_off_gives_the_answer_in_one_call_as_astream_does(
        openai_server: OpenAICompatServer) -> None:
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model="x", streaming=False)
    async def both() -> tuple[list[str], list[str]]:  # one loop: the client keeps its own
        return (await _pieces(astream_chat(model, MESSAGES[1:])),
                await _pieces(model.astream(MESSAGES[1:])))

    direct, through = asyncio.run(both())
    assert direct == through and len(direct) == 1 and direct[0]
    assert [bool(body.get("stream")) for body in openai_server.requests] == [False, False]


async def _pieces(stream: AsyncIterator[BaseMessage]) -> list[str]:
    return [piece.text async for piece in stream]
