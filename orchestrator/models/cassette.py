"""Record and replay model traffic: one paid run becomes a suite that re-runs offline.

A cassette is a JSONL file: one line per distinct model request, keyed by a hash of the
messages, the bound tools and the tool choice, so parallel runs record and replay in any
order. Replaying a request that was never recorded fails loudly.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, message_to_dict, messages_from_dict
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, PrivateAttr

from orchestrator.errors import ConfigError, ModelError
from orchestrator.models.specs import ModelSpec


class CassetteMissError(ModelError):
    """Replay met a request that is not in the cassette."""


def request_key(messages: list[BaseMessage], tools: list[dict[str, Any]] | None,
                tool_choice: Any, response_format: Any = None) -> str:
    """A stable hash of what the model was asked (ids and run metadata left out)."""
    def strip(message: BaseMessage) -> dict[str, Any]:
        data = message_to_dict(message)["data"]
        keep = {k: data.get(k) for k in ("type", "content", "tool_calls", "tool_call_id", "name")}
        if keep.get("tool_calls"):
            keep["tool_calls"] = [{"name": c["name"], "args": c["args"], "id": c.get("id")}
                                  for c in keep["tool_calls"]]
        return keep

    asked: list[Any] = [[strip(m) for m in messages], tools or [], tool_choice]
    if response_format is not None:  # (keys of requests without one stay as they were)
        asked.append(response_format)
    payload = json.dumps(asked, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


#: The settings of the recorded model the engine reads (how plans were asked for, slots):
#: kept in the cassette, so a replay asks the same way and its requests match.
_ENGINE_METADATA = ("orchestrator_structured", "orchestrator_slots", "orchestrator_shortlist",
                    "orchestrator_shortlist_spread", "orchestrator_summary")


class _CassetteModel(BaseChatModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                  ) -> ChatResult:
        raise NotImplementedError("cassette models are async-only; use ainvoke")


class RecordingChatModel(_CassetteModel):
    """Wraps a real model and writes every request and reply to a cassette."""

    inner: BaseChatModel
    path: Path
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "cassette-recorder"

    def model_post_init(self, context: Any, /) -> None:
        inner = self.inner.metadata or {}
        self.metadata = {**(self.metadata or {}),
                         **{k: inner[k] for k in _ENGINE_METADATA if k in inner}}

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        tools, tool_choice = kwargs.get("tools"), kwargs.get("tool_choice")
        response_format = kwargs.get("response_format")
        model: Any = self.inner.bind_tools(tools, tool_choice=tool_choice) if tools else self.inner
        if response_format is not None:
            model = model.bind(response_format=response_format)
        reply = await model.ainvoke(messages)
        meta = {k: v for k, v in (self.metadata or {}).items() if k in _ENGINE_METADATA}
        line = {"key": request_key(messages, tools, tool_choice, response_format),
                "request": [message_to_dict(m) for m in messages], "tools": tools or [],
                "tool_choice": tool_choice, "response_format": response_format, "meta": meta,
                "response": message_to_dict(reply)}
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(line, default=str) + "\n")
        return ChatResult(generations=[ChatGeneration(message=reply)])


class ReplayChatModel(_CassetteModel):
    """Answers from a cassette, exactly as recorded; an unknown request is an error."""

    path: Path
    _replies: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        if not self.path.is_file():
            raise ConfigError(f"no cassette at {self.path}")
        for number, line in enumerate(self.path.read_text("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                self._replies[entry["key"]] = entry["response"]
                if entry.get("meta"):  # ask the way the recorded model was asked
                    self.metadata = {**(self.metadata or {}), **entry["meta"]}
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ConfigError(f"{self.path}:{number}: not a cassette line") from None

    @property
    def _llm_type(self) -> str:
        return "cassette-replay"

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        key = request_key(messages, kwargs.get("tools"), kwargs.get("tool_choice"),
                          kwargs.get("response_format"))
        recorded = self._replies.get(key)
        if recorded is None:
            last = messages[-1].text[:100] if messages else ""
            raise CassetteMissError(
                f"request not in cassette {self.path} (key {key[:12]}, last message {last!r}): "
                "re-record with --record"
            )
        (reply,) = messages_from_dict([recorded])
        if not isinstance(reply, AIMessage):
            raise CassetteMissError(f"cassette entry {key[:12]} is not a model reply")
        return ChatResult(generations=[ChatGeneration(message=reply)])


class ReplayProvider:
    """``replay:<cassette>``: answers from a recorded cassette, offline."""

    def check(self, spec: ModelSpec) -> ModelSpec:
        if not spec.name:
            raise ConfigError(f"model spec {spec.text!r} needs a name, e.g. "
                              "'replay:evals/cassettes/run.jsonl'")
        return spec

    def get_model(self, spec: ModelSpec) -> BaseChatModel:
        return ReplayChatModel(path=Path(spec.name))
