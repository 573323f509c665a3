"""The OpenAI chat-completions wire format: the request as pydantic, the replies as dicts."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from orchestrator.results import Usage
from orchestrator.server.answer_limits import AnswerLimit, FinishReason


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
    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``. Sampling fields the orchestrator's own model calls
    decide (temperature, top_p, seed, ...) are accepted and ignored, as a proxy would;
    ``stop`` and ``max_tokens`` cut the answer the client gets (:mod:`answer_limits`);
    what would change the reply's shape (several choices, the client's tools, a JSON
    format) is refused by :meth:`unsupported`, not answered in another shape."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None

    def last_user_text(self) -> str | None:
        """The text of the last message when it is the user's: the request the
        orchestrator runs (None when the conversation ends with another role's message)."""
        last = self.messages[-1]
        return last.text if last.role == "user" else None

    def history(self) -> list[tuple[str, str]]:
        """The user's and assistant's turns before the request (system and tool messages
        are not the conversation's: the orchestrator has its own instructions and tools)."""
        return [(m.role, m.text) for m in self.messages[:-1]
                if m.role in ("user", "assistant") and m.text.strip()]

    def unsupported(self) -> tuple[str, str] | None:
        """The field this server cannot honour and why, or None."""
        if self.n not in (None, 1):
            return "n", "n must be 1: the orchestrator gives one answer a request"
        if self.tools or self.functions:
            return ("tools" if self.tools else "functions",
                    "tools are not supported: the orchestrator's agents call their own tools; "
                    "send the request in words")
        kind = (self.response_format or {}).get("type", "text")
        if kind != "text":
            return ("response_format", f"response_format {kind!r} is not supported: the "
                    "orchestrator answers in text")
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        if len(stops) > 4 or not all(stops):
            return "stop", "stop takes at most 4 sequences, none of them empty"
        return None

    def answer_limit(self) -> AnswerLimit:
        """The client's ``stop`` and ``max_tokens`` (or ``max_completion_tokens``)."""
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        tokens = self.max_completion_tokens or self.max_tokens
        return AnswerLimit(stop=stops, max_tokens=tokens)


def usage_body(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens}


def completion(completion_id: str, model: str, answer: str, usage: Usage,
               extra: dict[str, Any], finish_reason: FinishReason = "stop") -> dict[str, Any]:
    """A ``chat.completion`` object; ``extra`` goes under the ``orchestrator`` key."""
    return {
        "id": completion_id, "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                     "finish_reason": finish_reason, "logprobs": None}],
        "usage": usage_body(usage), "orchestrator": extra,
    }


def chunk(completion_id: str, model: str, delta: dict[str, Any], *,
          finish_reason: FinishReason | None = None) -> dict[str, Any]:
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
