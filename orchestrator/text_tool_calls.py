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

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

from langchain_core.messages import ToolCall

_TAGGED = re.compile(r"<(tool_calls?|tools?|function_call)>\s*(.*?)\s*(?:</\1>|$)", re.S)
_FENCED = re.compile(r"```[ \t]*(?:json|tool_call|tool)?[ \t]*\n(.*?)```", re.S)
_DOUBLED_OPEN = re.compile(r"^\{\{")
_DOUBLED_CLOSE = re.compile(r"\}\}$")
_CALL_KEYS = frozenset({"name", "arguments", "parameters", "args", "id", "type", "function"})


MAX_PROSE_CHARS = 80
"""Text around the calls beyond this means the reply is a report that quotes or describes a
call (a log line it read, an escalation it would make), not a call: it is not parsed."""


def tool_calls_in_text(text: str) -> list[ToolCall]:
    """The tool calls a reply consists of, when it is a call written as text: JSON objects
    (or lists of them) with a ``name`` and ``arguments`` (or ``parameters``), or OpenAI's
    ``{"type": "function", "function": {...}}``, inside ``<tool_call>`` (or ``<tools>``,
    ``<function_call>``) tags, a fenced block, or bare JSON, either opening the reply
    (what follows is ignored: a small model may go on to imagine the result) or with at
    most a short sentence around them.

    [] for anything else: a report that quotes a call among other text, JSON of another
    shape (a record with a ``name``), or text that is not JSON. Ids are derived from the
    calls, so a recorded run replays."""
    stripped = text.strip()
    tagged = [m.group(2) for m in _TAGGED.finditer(stripped)]
    fenced = _FENCED.findall(stripped)
    if tagged:
        blocks, prose, explicit = tagged, _TAGGED.sub("", stripped), True
        leads = _TAGGED.match(stripped) is not None
    elif fenced:
        blocks, prose, explicit = fenced, _FENCED.sub("", stripped), False
        leads = _FENCED.match(stripped) is not None
    elif stripped[:1] in ("{", "["):
        values = _leading_values(stripped)
        calls = _all_calls(values, explicit=False)
        # a call, then what the model imagined it returned: the call stands
        return calls if calls and _calls_first(values) else []
    else:
        return []
    calls = _all_calls([_json(block) for block in blocks], explicit=explicit)
    # A reply that opens with a call is a call, whatever the model wrote after it (small
    # models go on to imagine the result); one that opens with prose may be a report
    # quoting a call, so only a short sentence may surround it.
    if not leads and len(prose.strip()) > MAX_PROSE_CHARS:
        return []
    return calls


def _all_calls(values: list[Any], *, explicit: bool) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for data in values:
        if data is not None:
            calls.extend(_calls(data, explicit=explicit, first=len(calls)))
    return calls


def _calls_first(values: list[Any]) -> bool:
    """Whether the first of several JSON values is itself a call."""
    return bool(values) and bool(list(_calls(values[0], explicit=False, first=0)))


def _leading_values(text: str) -> list[Any]:
    """The JSON values the text starts with, one after another (whitespace between); a
    value written with a chat template's doubled braces is read on its own line."""
    whole = _json(text)
    if whole is not None:
        return [whole]
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text):
        try:
            value, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            line = text[at:].split("\n", 1)[0]
            value = _json(line) if line.startswith("{{") else None
            if value is None:
                break
            at += len(line)
        values.append(value)
        while at < len(text) and text[at].isspace():
            at += 1
    return values


def json_in_text(text: str) -> Any:
    """The JSON a reply consists of: the whole text, or its first fenced block (None when
    neither parses). For replies asked for as JSON (a JSON-schema or JSON-mode answer)."""
    stripped = text.strip()
    fenced = _FENCED.search(stripped)
    for candidate in (stripped, fenced.group(1) if fenced else ""):
        data = _json(candidate) if candidate else None
        if data is not None:
            return data
    return None


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


def _calls(data: Any, *, explicit: bool, first: int) -> Iterator[ToolCall]:
    """Calls in parsed JSON. Outside ``<tool_call>`` tags an object must also carry its
    arguments (or be OpenAI's function shape), so a record with a ``name`` is no call."""
    for index, item in enumerate(data if isinstance(data, list) else [data], start=first):
        if not isinstance(item, dict) or not set(item) <= _CALL_KEYS:
            continue
        if isinstance(item.get("function"), dict):
            item = item["function"]
        keys = [k for k in ("arguments", "parameters", "args") if k in item]
        if not keys and not explicit:
            continue
        name = item.get("name")
        args: Any = item[keys[0]] if keys else {}
        if isinstance(args, str):
            try:
                args = json.loads(args or "{}")
            except json.JSONDecodeError:
                continue
        if isinstance(name, str) and name and isinstance(args, dict):
            yield derived_call(name, args, f"text_{{digest}}_{index}")


def derived_call(name: str, args: dict[str, Any], id_format: str) -> ToolCall:
    """A tool call read out of a reply's text, its id derived from the call
    (``id_format`` holds ``{digest}``), so that a recorded run replays."""
    digest = hashlib.sha256(json.dumps([name, args], sort_keys=True, default=str)
                            .encode()).hexdigest()[:12]
    return ToolCall(name=name, args=args, id=id_format.format(digest=digest), type="tool_call")
