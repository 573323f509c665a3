"""Tool calls a model wrote as text instead of as structured tool calls.

Small local models behind servers without a tool-call parser (llama.cpp without a matching
template, for one) answer a tool-calling request with the call in the message text: in
``<tool_call>`` tags (Qwen, Hermes), in a fenced JSON block, or as the whole reply. Taken at
its word, such a reply is a "final report" with no tool call, and the subtask looks done
with nothing done. :func:`tool_calls_in_text` reads those calls back; the engine then runs
them through the same checks as any other call, so a call naming a tool the agent does not
have is refused like one made the structured way.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

from langchain_core.messages import ToolCall

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCED = re.compile(r"```[ \t]*(?:json|tool_call|tool)?[ \t]*\n(.*?)```", re.S)
_DOUBLED_OPEN = re.compile(r"^\{\{")
_DOUBLED_CLOSE = re.compile(r"\}\}$")
_CALL_KEYS = frozenset({"name", "arguments", "parameters", "args", "id", "type", "function"})


def tool_calls_in_text(text: str) -> list[ToolCall]:
    """The tool calls written in ``text``: JSON objects (or lists of them) with a ``name``
    and ``arguments`` (or ``parameters``), or OpenAI's ``{"type": "function", "function":
    {...}}``, inside ``<tool_call>`` tags, a fenced block, or as the whole text. [] when
    there are none; prose that merely contains JSON of another shape is not a call."""
    stripped = text.strip()
    blocks = _TAGGED.findall(stripped) or _FENCED.findall(stripped) or (
        [stripped] if stripped[:1] in ("{", "[") else [])
    calls: list[ToolCall] = []
    for block in blocks:
        data = _json(block)
        if data is not None:
            calls.extend(_calls(data))
    return calls


def _json(block: str) -> Any:
    """The JSON in ``block``; also when a chat template's doubled braces (``{{...}}``, as
    Qwen2.5-Coder's GGUF template shows its example) were copied into it. None if neither."""
    try:
        return json.loads(block)
    except json.JSONDecodeError:
        pass
    undoubled = _DOUBLED_OPEN.sub("{", block.strip())
    undoubled = _DOUBLED_CLOSE.sub("}", undoubled)
    for candidate in (undoubled, undoubled[:-1]):  # "}}}" may close one brace too many
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    return None


def _calls(data: Any) -> Iterator[ToolCall]:
    for item in data if isinstance(data, list) else [data]:
        if not isinstance(item, dict) or not set(item) <= _CALL_KEYS:
            continue
        if isinstance(item.get("function"), dict):
            item = item["function"]
        name = item.get("name")
        args: Any = next((item[k] for k in ("arguments", "parameters", "args") if k in item),
                         {})
        if isinstance(args, str):
            try:
                args = json.loads(args or "{}")
            except json.JSONDecodeError:
                continue
        if isinstance(name, str) and name and isinstance(args, dict):
            yield ToolCall(name=name, args=args, id=f"text_{uuid.uuid4().hex[:12]}",
                           type="tool_call")
