"""The OpenAI chat-completions wire format: the request as pydantic, the replies as dicts."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.results import Usage


class TextPart(BaseModel):
    """One part of a message's content list (only text parts carry a request)."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """A message of the conversation the client sends."""

    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[TextPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``; fields the orchestrator does not use (temperature,
    tools, ...) are accepted and ignored, as a proxy would."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    def last_user_text(self) -> str | None:
        """The text of the last user message: the request the orchestrator runs."""
        return next((m.text for m in reversed(self.messages) if m.role == "user"), None)


def usage_body(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens}


def completion(completion_id: str, model: str, answer: str, usage: Usage,
               extra: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` object; ``extra`` goes under the ``orchestrator`` key."""
    return {
        "id": completion_id, "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": usage_body(usage), "orchestrator": extra,
    }


def chunk(completion_id: str, model: str, delta: dict[str, Any], *,
          finish_reason: Literal["stop"] | None = None) -> dict[str, Any]:
    """A ``chat.completion.chunk`` with one choice."""
    return {"id": completion_id, "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                         "logprobs": None}]}


def usage_chunk(completion_id: str, model: str, usage: Usage) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage`` asked for it: no choices."""
    return {"id": completion_id, "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model, "choices": [],
            "usage": usage_body(usage)}


def model_list(ids: list[str], created: int) -> dict[str, Any]:
    return {"object": "list", "data": [
        {"id": name, "object": "model", "created": created, "owned_by": "orchestrator"}
        for name in ids]}
