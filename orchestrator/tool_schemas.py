"""Tool schemas as a model is sent them: what it needs to call a tool, nothing more.

A schema is sent with every model call of an agent (and the Plan schema with every planning
call), so what carries no information costs tokens on each one. Only the copy sent to the
model is trimmed: a call is still checked against the tool's own schema.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

__all__ = ["compact_schema", "model_tool_schema"]

_EMPTY: tuple[Any, ...] = (None, "", [], {})
_SUBSCHEMA = ("items", "additionalProperties", "not")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")


def model_tool_schema(tool: BaseTool | type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    """The OpenAI tool schema of ``tool`` (a tool, a pydantic model or a schema), compact:
    see :func:`compact_schema`; an empty tool description is left out too."""
    schema = convert_to_openai_tool(tool)
    function = dict(schema["function"])
    if not str(function.get("description") or "").strip():
        function.pop("description", None)
    if isinstance(function.get("parameters"), dict):
        function["parameters"] = compact_schema(function["parameters"])
    return {**schema, "function": function}


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema without what carries no information for a model: titles, empty
    descriptions, empty ``required`` lists, empty defaults (``null``, ``""``, ``[]``), and
    the ``null`` branch of an optional argument whose default is ``null`` (``anyOf: [X,
    null]`` becomes X): not being required already says an argument may be left out.
    Types, enums, patterns, bounds, required arguments, real defaults and descriptions
    stay."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key == "description" and isinstance(value, str) and not value.strip():
            continue
        if key == "required" and value == []:
            continue
        if key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            value = {name: compact_schema(sub) if isinstance(sub, dict) else sub
                     for name, sub in value.items()}
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            value = [compact_schema(sub) if isinstance(sub, dict) else sub for sub in value]
        elif key in _SUBSCHEMA and isinstance(value, dict):
            value = compact_schema(value)
        out[key] = value
    if "default" in out and out["default"] in _EMPTY:
        del out["default"]
        options = out.get("anyOf")
        if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
            kept = next(o for o in options if o != {"type": "null"})
            rest = {k: v for k, v in out.items() if k != "anyOf"}
            out = {**kept, **rest}
    return out
