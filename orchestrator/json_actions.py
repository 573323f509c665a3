"""An agent's next step asked for as JSON under a schema, for servers that enforce one.

A small model behind llama.cpp's server does not make structured tool calls: it writes
them as text, invents tool names, or declines with a reason ("the goal does not specify a
SKU" for "check the stock of sku-3"). The server does enforce a JSON schema (as a grammar),
so for a model whose provider says ``structured=json_schema`` each step is asked as one
JSON object: ``{"tool": NAME, "arguments": {...}}`` with NAME one of the agent's bound
tools and the arguments of that tool's schema, or, once a tool has been called,
``{"report": "..."}``. The first step must be a call, as a ``tool_choice="required"``
would make it; tools an answer subtask may not use are not bound, so a forced call there
only reads. The reply comes back as an ordinary message with ``tool_calls``, and the
calls meet every check a structured call meets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig

from orchestrator.text_tool_calls import derived_call, json_in_text

REPORT_MAX_CHARS = 2000

_INSTRUCTIONS = (
    "\n\nReply with one JSON object. To use a tool: "
    '{"tool": "<name>", "arguments": {...}}. When the tools have done the goal (never '
    'before your first tool call): {"report": "<your report>"}.\nYour tools:\n')


class JsonActions(Runnable[LanguageModelInput, BaseMessage]):
    """``model`` asked for one action per call as schema-constrained JSON (see the module).

    ``bound`` is the chat model, so what looks for a model's settings under a binding
    (its endpoint's slots) finds them."""

    def __init__(self, model: BaseChatModel, tools: Sequence[dict[str, Any]]) -> None:
        self.bound = model
        functions = [t["function"] for t in tools]
        self._listing = "\n".join(
            f"- {f['name']}: {f.get('description', '')} Arguments: "
            f"{json.dumps(f.get('parameters', {}), separators=(',', ':'))}" for f in functions)
        self._first = model.bind(response_format=_format(functions, report=False))
        self._later = model.bind(response_format=_format(functions, report=True))

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None,
               **kwargs: Any) -> BaseMessage:
        messages = self._messages(input)
        return action_message(self._pick(messages).invoke(messages, config, **kwargs))

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None,
                      **kwargs: Any) -> BaseMessage:
        messages = self._messages(input)
        return action_message(await self._pick(messages).ainvoke(messages, config, **kwargs))

    def _pick(self, messages: list[BaseMessage]) -> Runnable[LanguageModelInput, BaseMessage]:
        called = any(isinstance(m, AIMessage) and m.tool_calls for m in messages)
        return self._later if called else self._first

    def _messages(self, input: LanguageModelInput) -> list[BaseMessage]:
        """The conversation with the tools and the reply format added to the system
        prompt (its end: the agent's own prompt before it stays a shared prefix)."""
        messages = list(input) if isinstance(input, list) else [input]
        out: list[BaseMessage] = []
        for m in messages:
            if isinstance(m, SystemMessage) and not out:
                m = SystemMessage(f"{m.text}{_INSTRUCTIONS}{self._listing}")
            out.append(m)  # type: ignore[arg-type]
        return out


def action_message(raw: BaseMessage) -> AIMessage:
    """The reply as the engine reads any model's: a JSON action becomes a tool call, a
    JSON report its text; anything else is passed on as written."""
    if not isinstance(raw, AIMessage):
        return raw  # type: ignore[return-value]
    data = json_in_text(raw.text)
    keep = {"usage_metadata": raw.usage_metadata, "response_metadata": raw.response_metadata,
            "id": raw.id}
    if isinstance(data, dict) and isinstance(data.get("tool"), str) and \
            isinstance(data.get("arguments", {}), dict):
        call = derived_call(data["tool"], data.get("arguments") or {}, "json_{digest}")
        return AIMessage(content="", tool_calls=[call], **keep)
    if isinstance(data, dict) and isinstance(data.get("report"), str):
        return AIMessage(content=data["report"], **keep)
    return raw


def _format(functions: list[dict[str, Any]], *, report: bool) -> dict[str, Any]:
    variants = [{"type": "object", "properties": {
        "tool": {"type": "string", "enum": [f["name"]]},
        "arguments": _arguments(f.get("parameters") or {})},
        "required": ["tool", "arguments"]} for f in functions]
    if report:
        variants.append({"type": "object", "properties": {
            "report": {"type": "string", "maxLength": REPORT_MAX_CHARS}},
            "required": ["report"]})
    schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
    return {"type": "json_schema", "json_schema": {"name": "Action", "schema": schema,
                                                   "strict": False}}


def _arguments(parameters: dict[str, Any]) -> dict[str, Any]:
    """A tool's argument schema, inlined: one that refers to definitions of its own is
    left open (an object), the tool checks the call anyway."""
    text = json.dumps(parameters)
    if "$ref" in text or "$defs" in text:
        return {"type": "object"}
    return parameters or {"type": "object"}
