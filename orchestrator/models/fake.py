"""A deterministic chat model that ships with the package, for tests, demos and evals.

Scripted mode replays a queue of replies (unit tests); rules mode decides from the
prompt and the bound tools (the offline demo and evals). Both go through the same
paths as a real model: ``bind_tools``, ``with_structured_output``, usage metadata.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

from orchestrator.errors import ConfigError, ScriptExhaustedError
from orchestrator.models import rules
from orchestrator.models.meaning import AgentTools, OfflineKnowledge
from orchestrator.models.specs import ModelSpec

Reply = AIMessage | str | Callable[[list[BaseMessage], list[dict[str, Any]]], AIMessage]


@dataclass(frozen=True)
class FakeCall:
    """One call the fake model answered."""

    messages: list[BaseMessage]
    tool_names: list[str]
    reply: AIMessage
    started_at: float
    finished_at: float


def tool_call(
    name: str, args: dict[str, Any] | None = None, call_id: str | None = None
) -> AIMessage:
    """A scripted reply that calls one tool."""
    args = args or {}
    return AIMessage(content="", tool_calls=[{
        "name": name, "args": args, "type": "tool_call",
        "id": call_id or rules.tool_call_id(name, args, salt="scripted"),
    }])


CALL_LOG = 1000
"""Most calls a :class:`FakeChatModel` keeps for :attr:`FakeChatModel.calls` (the latest)."""


@dataclass
class _CallLog:
    """The calls a model answered (the latest :data:`CALL_LOG`) and how many, under one
    lock; one private attribute, as pydantic's private-attribute lookup costs microseconds
    on every access."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: deque[FakeCall] = field(default_factory=lambda: deque(maxlen=CALL_LOG))
    answered: int = 0


class FakeChatModel(BaseChatModel):
    """Deterministic offline chat model.

    Example:
        ```python
        model = FakeChatModel()                       # rules mode
        model = FakeChatModel(script=["hello", tool_call("lookup", {"id": 1})])
        model.invoke("hi").content                    # "hello"
        model.assert_complete()                       # fails if replies are left
        ```
    """

    script: list[Any] | None = None
    """Replies in order (AIMessage, str, or fn(messages, tools) -> AIMessage); None = rules."""
    latency: float = 0.0
    """Seconds each call waits before answering (asyncio.sleep when async)."""
    model_name: str = "fake"

    _queue: list[Any] = PrivateAttr(default_factory=list)
    # Bounded: a server on the offline model answers calls for as long as it runs, and
    # kept every one of them (with its messages) until then.
    _log: _CallLog = PrivateAttr(default_factory=_CallLog)
    _knows: OfflineKnowledge = PrivateAttr(default_factory=OfflineKnowledge)

    def model_post_init(self, context: Any, /) -> None:
        self._queue = list(self.script or [])

    @property
    def _llm_type(self) -> str:
        return "orchestrator-fake"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "latency": self.latency}

    @property
    def calls(self) -> list[FakeCall]:
        """The calls answered so far, in order of completion (the last :data:`CALL_LOG`)."""
        log = self._log
        with log.lock:
            return list(log.calls)

    def assert_complete(self) -> None:
        """Raise AssertionError if scripted replies were left unused."""
        with self._log.lock:
            left = len(self._queue)
        if left:
            raise AssertionError(f"FakeChatModel: {left} scripted repl(y/ies) never used")

    def learn_engine(self, *, embedder: Callable[[], Any] | None = None,
                     agent_tools: Callable[[], AgentTools] | None = None) -> None:
        """Take what the engine offers a model that decides by rules: the knowledge base's
        embedding model (a function giving it: rules mode then routes by meaning; it is
        made and loaded on first use) and the
        agents' tools as data (their schemas say which ids each agent's tools take).
        Without an embedder with a sense of meaning, rules mode routes by word overlap."""
        self._knows = OfflineKnowledge(embedder, agent_tools)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        if self.script is None:
            return rules.decide(messages, tools, self._knows)
        log = self._log
        with log.lock:
            if not self._queue:
                raise ScriptExhaustedError(
                    f"FakeChatModel script exhausted after {log.answered} call(s); "
                    f"last message: {messages[-1].text[:120]!r}" if messages else ""
                )
            item = self._queue.pop(0)
        if isinstance(item, AIMessage):
            return item.model_copy(deep=True)
        if isinstance(item, str):
            return AIMessage(content=item)
        return item(messages, tools)

    def _answer(
        self, messages: list[BaseMessage], kwargs: dict[str, Any], started: float
    ) -> ChatResult:
        bound = kwargs.get("tools") or []
        tools = list(bound)
        reply = self._reply(messages, tools)
        reply.usage_metadata = estimate_usage(  # type: ignore[assignment]
            messages, tools, reply, tools_chars=_schema_chars(bound))
        reply.response_metadata = {"model_name": self.model_name, "finish_reason": "stop"}
        log = self._log
        with log.lock:
            log.calls.append(FakeCall(list(messages), [t["function"]["name"] for t in tools],
                                      reply, started, time.perf_counter()))
            log.answered += 1
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        started = time.perf_counter()
        if self.latency:
            time.sleep(self.latency)
        return self._answer(messages, kwargs, started)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        started = time.perf_counter()
        if self.latency:
            await asyncio.sleep(self.latency)
        return self._answer(messages, kwargs, started)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """The reply :meth:`_agenerate` gives, in word-sized pieces (a word and the space
        after it); tool calls, usage and finish reason come on the last piece, as servers
        send them."""
        result = await self._agenerate(messages, stop, run_manager, **kwargs)
        reply = result.generations[0].message
        text = reply.content if isinstance(reply.content, str) else reply.text
        pieces = re.findall(r"\s*\S+\s*", text) or [text]
        calls = [tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c.get("id"),
                                 index=i) for i, c in enumerate(getattr(reply, "tool_calls", []))]
        for number, piece in enumerate(pieces, start=1):
            chunk = AIMessageChunk(content=piece)
            if number == len(pieces):
                chunk = AIMessageChunk(
                    content=piece, tool_call_chunks=calls,
                    usage_metadata=getattr(reply, "usage_metadata", None),
                    response_metadata=dict(reply.response_metadata))
            if run_manager is not None:
                await run_manager.on_llm_new_token(piece, chunk=ChatGenerationChunk(
                    message=chunk))
            yield ChatGenerationChunk(message=chunk)


def estimate_usage(
    messages: list[BaseMessage], tools: list[dict[str, Any]], reply: AIMessage, *,
    tools_chars: int | None = None,
) -> dict[str, int]:
    """Deterministic token estimate: about four characters a token (``tools_chars``: the
    length of the tools' JSON, when the caller knows it)."""
    prompt_chars = sum(len(m.text) + 8 for m in messages)
    prompt_chars += sum(len(json.dumps(m.tool_calls)) for m in messages if isinstance(m, AIMessage))
    if tools_chars is None:
        tools_chars = len(json.dumps(tools)) if tools else 0
    prompt_chars += tools_chars
    output_chars = len(reply.text) + (len(json.dumps(reply.tool_calls)) if reply.tool_calls else 0)
    input_tokens = math.ceil(prompt_chars / 4)
    output_tokens = max(1, math.ceil(output_chars / 4))
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens}


_SCHEMA_CHARS: OrderedDict[int, tuple[Sequence[Any], int]] = OrderedDict()
_SCHEMA_CHARS_KEPT = 256
_schema_chars_lock = threading.Lock()


def _schema_chars(bound: Sequence[dict[str, Any]]) -> int:
    """The length of the JSON of a bound tools list: the same list (``bind_tools`` made it
    once) comes with every call of an agent, and encoding its schemas on each call cost a
    fifth of the model's answer. Kept for the latest lists, by identity (each entry holds
    its list, so an id is not reused while it is kept)."""
    if not bound:
        return 0
    key = id(bound)
    with _schema_chars_lock:
        found = _SCHEMA_CHARS.get(key)
        if found is not None and found[0] is bound:
            _SCHEMA_CHARS.move_to_end(key)
            return found[1]
    chars = len(json.dumps(list(bound)))
    with _schema_chars_lock:
        _SCHEMA_CHARS[key] = (bound, chars)
        while len(_SCHEMA_CHARS) > _SCHEMA_CHARS_KEPT:
            _SCHEMA_CHARS.popitem(last=False)
    return chars


class FakeProvider:
    """``fake`` and ``fake:latency=SECONDS``: the shipped offline model in rules mode."""

    def check(self, spec: ModelSpec) -> ModelSpec:
        options: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in spec.name.split(","))):
            key, eq, value = item.partition("=")
            if not eq or key.strip() != "latency":
                raise ConfigError(f"bad fake model option {item!r} in {spec.text!r}: "
                                  "use latency=SECONDS")
            try:
                latency = float(value)
            except ValueError:
                raise ConfigError(f"fake model latency must be a number of seconds: "
                                  f"{spec.text!r}") from None
            if not math.isfinite(latency) or latency < 0:
                raise ConfigError(f"fake model latency must not be negative: {spec.text!r}")
            options["latency"] = value.strip()
        return ModelSpec(spec.provider, spec.name, options)

    def get_model(self, spec: ModelSpec) -> BaseChatModel:
        return FakeChatModel(latency=float(spec.options.get("latency", "0")))
