"""Tool calls that skip langchain's run machinery (``orchestrator.nodes.direct_tools``): the
same output and writes as ``invoke``, and ``invoke`` itself whenever the tool needs
something injected or something watches the call."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import BaseTool, StructuredTool, ToolException, tool
from pydantic import BaseModel, Field, ValidationError

from orchestrator.domain_db import reset_domain_db
from orchestrator.nodes.direct_tools import invoke_tool
from tests.support.pack_calls import EVERY_TOOL, call_every_tool, sqlite_tables


def _as_call(name: str, args: dict[str, Any]) -> Any:
    return {"name": name, "args": args, "id": "call-1", "type": "tool_call"}


def _text(output: Any) -> str:
    assert isinstance(output, ToolMessage) and output.status == "success"
    return output.content if isinstance(output.content, str) else output.text


def test_every_pack_tool_answers_and_writes_the_same_as_through_invoke(tmp_path: Path) -> None:
    direct_db = reset_domain_db(tmp_path / "direct.sqlite")
    invoked_db = reset_domain_db(tmp_path / "invoked.sqlite")

    def direct(tool: BaseTool, args: dict[str, Any]) -> str:
        return _text(invoke_tool(tool, _as_call(tool.name, args)))

    def invoked(tool: BaseTool, args: dict[str, Any]) -> str:
        return _text(tool.invoke(_as_call(tool.name, args)))

    assert call_every_tool(direct_db, direct) == call_every_tool(invoked_db, invoked)
    assert sqlite_tables(direct_db) == sqlite_tables(invoked_db)
    assert len(EVERY_TOOL) > 40  # every pack's tools, reads and writes


class _Limit(BaseModel):
    limit: int = Field(default=3, ge=1, le=10)


def test_arguments_are_checked_and_defaulted_as_invoke_does() -> None:
    def lines(limit: int = 3) -> str:
        """Read the last lines."""
        return f"{limit} lines"

    plain = StructuredTool.from_function(lines, args_schema=_Limit)
    assert _text(invoke_tool(plain, _as_call("lines", {}))) == "3 lines"
    assert _text(invoke_tool(plain, _as_call("lines", {"limit": "7"}))) == "7 lines"
    with pytest.raises(ValidationError):
        invoke_tool(plain, _as_call("lines", {"limit": 11}))


def test_a_tool_that_takes_its_config_gets_it() -> None:
    @tool
    def who(service: str, config: RunnableConfig) -> str:
        """Say which run called."""
        return f"{service} for {config['configurable']['caller']}"

    def call(_: object) -> Any:
        return invoke_tool(who, _as_call("who", {"service": "web-3"}))

    out = RunnableLambda(call).invoke(None, {"configurable": {"caller": "run-7"}})
    assert _text(out) == "web-3 for run-7"


def test_a_tool_that_handles_its_errors_still_does() -> None:
    def broken(service: str) -> str:
        """Fail."""
        raise ToolException(f"{service} is not known")

    handled = StructuredTool.from_function(broken, handle_tool_error=True)
    out = invoke_tool(handled, _as_call("broken", {"service": "web-9"}))
    assert isinstance(out, ToolMessage) and out.status == "error"
    assert out.content == "web-9 is not known"
    bare = StructuredTool.from_function(broken)
    with pytest.raises(ToolException, match="web-9 is not known"):
        invoke_tool(bare, _as_call("broken", {"service": "web-9"}))


class _Starts(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tools: list[str] = []

    def on_tool_start(self, serialized: dict[str, Any], input_str: str, *, run_id: UUID,
                      **kwargs: Any) -> None:
        self.tools.append(serialized["name"])


def test_a_handler_on_the_run_sees_the_call() -> None:
    @tool
    def health(service: str) -> str:
        """Check a service."""
        return f"{service} ok"

    handler = _Starts()

    def call(_: object) -> Any:
        return invoke_tool(health, _as_call("health", {"service": "web-3"}))

    out = RunnableLambda(call).invoke(None, {"callbacks": [handler]})
    assert _text(out) == "web-3 ok" and handler.tools == ["health"]
    assert _text(invoke_tool(health, _as_call("health", {"service": "web-3"}))) == "web-3 ok"
    assert handler.tools == ["health"]  # not on this run: nothing more seen


def test_an_async_only_tool_is_not_called_here() -> None:
    async def later(service: str) -> str:
        return service

    only_async = StructuredTool.from_function(coroutine=later, name="later",
                                              description="async only")
    with pytest.raises(NotImplementedError):
        invoke_tool(only_async, _as_call("later", {"service": "web-3"}))
    assert asyncio.run(only_async.ainvoke({"service": "web-3"})) == "web-3"


def test_a_tool_whose_function_is_replaced_calls_the_new_one() -> None:
    @tool
    def status(service: str) -> str:
        """Say a service's status."""
        return f"{service} old"

    assert _text(invoke_tool(status, _as_call("status", {"service": "web-3"}))) == "web-3 old"

    def newer(service: str) -> str:
        return f"{service} new"

    status.func = newer
    assert _text(invoke_tool(status, _as_call("status", {"service": "web-3"}))) == "web-3 new"
