"""Tool calls that go straight to a plain tool's function when nothing watches them.

``BaseTool.invoke`` configures callbacks and opens a run (there are none unless a handler
or a tracer is set), sets a child config for the call, and reads the function's type hints
and signature twice on every call to find what it should inject: about twice the CPU of a
domain tool's own SQL. :func:`invoke_tool` parses the arguments as langchain does (the
tool's own ``_parse_input``), calls the function and formats the output as ``invoke``
would, when all of this holds, and otherwise calls ``invoke``:

- the tool is a ``StructuredTool`` (not a subclass) with a sync function and a pydantic
  ``args_schema``, returns its content (not ``content_and_artifact``), handles neither its
  errors nor validation errors itself, and has no callbacks and is not verbose;
- the function takes nothing langchain injects (a ``RunnableConfig``, ``callbacks``,
  ``run_manager``, an injected argument such as ``InjectedToolArg`` or a tool runtime),
  checked once per tool;
- nothing watches the call (:func:`orchestrator.models.direct.watched`).

A langchain-core that renames the internals read here makes every call go through
``invoke``.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import Any

from langchain_core.messages.tool import ToolCall
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel

from orchestrator.models.direct import watched

try:
    from langchain_core.tools.base import (
        FILTERED_ARGS,
        _format_output,
        _get_runnable_config_param,
        _is_injected_arg_type,
        get_all_basemodel_annotations,
    )
except ImportError:  # pragma: no cover - another langchain-core: always through invoke
    _KNOWN = False
else:
    _KNOWN = True

_plain: dict[int, tuple[weakref.ref[BaseTool], object, object, Callable[..., Any] | None]] = {}
"""Per tool (by id, checked against a weak reference, and its function and schema then): its
function when it takes only the model's arguments, else None."""


def invoke_tool(tool: BaseTool, call: ToolCall) -> Any:
    """``tool.invoke(call)``, straight to the tool's function when nothing watches the call
    and the tool is a plain one (see the module)."""
    func = _plain_function(tool) if _KNOWN else None
    if func is None or watched():
        return tool.invoke(call)
    assert isinstance(tool, StructuredTool)
    parsed = tool._parse_input(dict(call["args"]), call["id"])
    schema = tool.args_schema
    takes_none = (isinstance(schema, type) and issubclass(schema, BaseModel)
                  and not schema.model_fields)  # langchain calls such a tool with nothing
    if isinstance(parsed, str):  # a tool of one string argument, called with the string
        return tool.invoke(call)
    content = func() if takes_none else func(**parsed)
    return _format_output(content, None, call["id"], tool.name, "success")


def _plain_function(tool: BaseTool) -> Callable[..., Any] | None:
    if (type(tool) is not StructuredTool or tool.callbacks is not None or tool.verbose
            or getattr(tool, "callback_manager", None) is not None
            or tool.response_format != "content"
            or tool.handle_tool_error or tool.handle_validation_error):
        return None
    known = _plain.get(id(tool))
    if (known is not None and known[0]() is tool and known[1] is tool.func
            and known[2] is tool.args_schema):
        return known[3]
    func = _takes_only_its_arguments(tool)
    key = id(tool)
    _plain[key] = (weakref.ref(tool, lambda _: _plain.pop(key, None)), tool.func,
                   tool.args_schema, func)
    return func


def _takes_only_its_arguments(tool: StructuredTool) -> Callable[..., Any] | None:
    """The tool's function when langchain would inject nothing into it, else None."""
    func, schema = tool.func, tool.args_schema
    if func is None or not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        return None
    try:
        params = inspect.signature(func).parameters
        injected = (tool._injected_args_keys or any(name in params for name in FILTERED_ARGS)
                    or _get_runnable_config_param(func) is not None
                    or any(_is_injected_arg_type(hint)
                           for hint in get_all_basemodel_annotations(schema).values()))
    except (TypeError, ValueError, NameError):  # a signature or hint it cannot read
        return None
    return None if injected else func
