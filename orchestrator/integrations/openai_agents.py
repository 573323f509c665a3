"""An OpenAI Agents SDK ``Agent`` as a specialist (``pip install openai-agents``).

The agent runs with ``Runner.run_streamed`` on the subtask's text; each tool call item and
its output are reported as they happen (our events and tool-call records), a handoff as a
status; its final output is the subtask's output and the run's usage (requests, tokens)
is ours. A lost connection or a timeout of its model is raised as ConnectionError or
TimeoutError, so the engine retries; running out of turns, a guardrail or a model that
misbehaved fails the subtask.

What it may do is declared with ``kind``. A tool whose function was declared with our
policy before it was wrapped (``read_only(fn)``, then ``function_tool(fn)``), or an MCP
tool with annotations, counts as that kind; a declared read-only agent may not have a
tool declared as a write.

The SDK installs the top-level name ``agents``; this project's own ``agents/`` folder is
``orchestrator.agents``. :func:`openai_agents_sdk` finds the SDK by its distribution, so
it loads even where the working directory is a checkout of this repository.

Example:
    ```python
    from agents import Agent, function_tool
    from orchestrator.agents.policy import ToolKind

    desk = Agent(name="desk", instructions="You open tickets in the service desk.",
                 tools=[function_tool(open_ticket)])
    spec = openai_agent_spec("service_desk", desk, ToolKind(destructive=False),
                             skills=["open a ticket"])
    ```
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import sys
import threading
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from orchestrator.agents.external import (
    ExternalReply,
    ExternalStatus,
    ExternalTask,
    ExternalToolCall,
    Report,
)
from orchestrator.agents.policy import ToolKind, mcp_kind, policy_of
from orchestrator.agents.spec import AgentSpec
from orchestrator.errors import ConfigError
from orchestrator.integrations._transient import retryable

if TYPE_CHECKING:
    from agents import Agent, RunConfig, RunResultStreaming  # noqa: TID251 (the SDK's)

DISTRIBUTION = "openai-agents"
_loading = threading.Lock()


def openai_agents_sdk() -> ModuleType:
    """The OpenAI Agents SDK's top-level ``agents`` package.

    Raises:
        ConfigError: it is not installed, or another module took the name ``agents``.
    """
    with _loading:
        loaded = sys.modules.get("agents")
        if loaded is not None:
            if hasattr(loaded, "Runner") and hasattr(loaded, "Agent"):
                return loaded
            raise ConfigError(f"a module named 'agents' that is not the OpenAI Agents SDK is "
                              f"imported ({getattr(loaded, '__file__', loaded)}); this "
                              "project's agents are imported as orchestrator.agents")
        try:
            where = importlib.metadata.distribution(DISTRIBUTION).locate_file("")
        except importlib.metadata.PackageNotFoundError:
            raise ConfigError("the OpenAI Agents SDK is not installed: "
                              f"pip install {DISTRIBUTION}") from None
        # Found in its own distribution's folder, not first on sys.path: from a checkout of
        # this repository, the path's first ``agents`` is our folder.
        spec = importlib.machinery.PathFinder.find_spec("agents", [str(where)])
        if spec is None or spec.loader is None:
            return importlib.import_module("agents")  # installed some other way
        module = importlib.util.module_from_spec(spec)
        sys.modules["agents"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop("agents", None)
            raise
        return module


def tool_kinds(agent: Agent[Any]) -> dict[str, ToolKind]:
    """The kinds declared for ``agent``'s tools: on the function behind a function tool
    (our policy), or by an MCP tool's annotations; tools that declare nothing are left
    out."""
    out: dict[str, ToolKind] = {}
    for tool in agent.tools:
        kind = None
        annotations = getattr(tool, "mcp_annotations", None)
        if annotations is not None:
            kind = mcp_kind(annotations.model_dump(exclude_none=True))
        behind = getattr(tool, "__wrapped__", None)  # the function given to function_tool
        if kind is None and callable(behind):
            kind = policy_of(behind).kind
        if kind is not None:
            out[tool.name] = kind
    return out


class OpenAIAgentsAgent:
    """An :class:`~orchestrator.agents.external.ExternalAgent` that runs an SDK ``Agent``.

    Args:
        agent: The ``agents.Agent`` (its model, tools, handoffs and guardrails as built).
        kind: What it may do; only a read-only agent serves questions.
        max_turns: Most model turns per subtask (the SDK's ``max_turns``).
        run_config: The SDK's ``RunConfig`` (model provider, tracing, ...). Usage is asked
            for unless its model settings say otherwise; its group id is the subtask's.

    Raises:
        ConfigError: ``kind`` is read-only and a tool is declared as a write.
    """

    reports_writes = True
    """Its tools run in this process and each call is reported as it ends."""

    def __init__(self, agent: Agent[Any], *, kind: ToolKind, max_turns: int = 10,
                 run_config: RunConfig | None = None) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, not {max_turns}")
        self.agent, self.kind, self.max_turns = agent, kind, max_turns
        self.run_config = run_config
        self.tool_kinds = tool_kinds(agent)
        writers = sorted(n for n, k in self.tool_kinds.items() if not k.read_only)
        if kind.read_only and writers:
            raise ConfigError(f"agent {agent.name!r} is declared read-only but its tool(s) "
                              f"{', '.join(writers)} are declared as writes")

    async def run(self, task: ExternalTask, report: Report) -> ExternalReply:
        """Run the agent on the subtask (see the module's docstring for what is reported
        and what is raised)."""
        sdk = openai_agents_sdk()
        streamed: RunResultStreaming = sdk.Runner.run_streamed(
            self.agent, task.text(), max_turns=self.max_turns,
            run_config=self._config(sdk, task))
        calls: dict[str | None, tuple[str, dict[str, Any]]] = {}
        try:
            async for event in streamed.stream_events():
                if event.type == "run_item_stream_event":
                    self._read(sdk, event.item, calls, report)
        except sdk.AgentsException as exc:  # out of turns, a guardrail, a model misbehaving
            return self._reply(streamed, calls, report, error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            transient = retryable(exc)
            if transient is None or transient is exc:
                raise
            raise transient from exc
        finally:
            if not streamed.is_complete:  # cancelled (the subtask's timeout): stop it too
                streamed.cancel()
        return self._reply(streamed, calls, report)

    def _config(self, sdk: ModuleType, task: ExternalTask) -> RunConfig:
        config = self.run_config or sdk.RunConfig()
        settings = config.model_settings or sdk.ModelSettings()
        if settings.include_usage is None and self.agent.model_settings.include_usage is None:
            settings = dataclasses.replace(settings, include_usage=True)
        return dataclasses.replace(config, model_settings=settings,
                                   group_id=config.group_id or task.context_id)

    def _read(self, sdk: ModuleType, item: Any, calls: dict[str | None, tuple[str, dict[str,
              Any]]], report: Report) -> None:
        if isinstance(item, sdk.ToolCallItem):
            calls[item.call_id] = (item.tool_name or "tool", _arguments(item.raw_item))
        elif isinstance(item, sdk.ToolCallOutputItem):
            name, args = calls.pop(item.call_id, ("tool", {}))
            report(self._call(name, args, _text(item.output)))
        elif isinstance(item, sdk.HandoffOutputItem):
            report(ExternalStatus("handoff", f"{item.source_agent.name} handed off to "
                                             f"{item.target_agent.name}"))

    def _call(self, name: str, args: dict[str, Any], output: str) -> ExternalToolCall:
        kind = self.tool_kinds.get(name, self.kind)
        return ExternalToolCall(name=name, args=args, output=output, write=not kind.read_only)

    def _reply(self, streamed: RunResultStreaming, calls: Mapping[str | None, tuple[str, dict[
               str, Any]]], report: Report, *, error: str | None = None) -> ExternalReply:
        # A hosted tool (web search, a file search) ran at the provider: no output item.
        for name, args in calls.values():
            report(self._call(name, args, ""))
        usage = streamed.context_wrapper.usage
        output = "" if error else _text(streamed.final_output)
        return ExternalReply(output=output, status="failed" if error else "done", error=error,
                             llm_calls=usage.requests, input_tokens=usage.input_tokens,
                             output_tokens=usage.output_tokens)


def _arguments(raw: Any) -> dict[str, Any]:
    """A tool call item's arguments (a JSON string on function calls) as a dict."""
    value = raw.get("arguments") if isinstance(raw, Mapping) else getattr(raw, "arguments",
                                                                          None)
    if isinstance(value, str):
        try:
            value = json.loads(value or "{}")
        except json.JSONDecodeError:
            return {"arguments": value}
    return dict(value) if isinstance(value, Mapping) else {}


def _text(value: Any) -> str:
    """A final output or a tool's output as text (a structured output as JSON)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    dump = getattr(value, "model_dump_json", None)
    if callable(dump):
        return str(dump())
    return json.dumps(value, default=str)


def openai_agent_spec(name: str, agent: Agent[Any], kind: ToolKind, *,
                      description: str | None = None, skills: Iterable[str] | None = None,
                      domain: str = "general", max_turns: int = 10,
                      run_config: RunConfig | None = None) -> AgentSpec:
    """An :class:`AgentSpec` whose subtasks ``agent`` runs (see :class:`OpenAIAgentsAgent`).

    ``description`` defaults to the first paragraph of the agent's ``handoff_description``,
    else of its instructions (when they are text); ``skills`` to its tools' names.
    """
    if description is None:
        instructions = agent.instructions if isinstance(agent.instructions, str) else None
        given = agent.handoff_description or instructions or ""
        description = given.strip().split("\n\n")[0]  # its first paragraph
    if skills is None:
        skills = [tool.name.replace("_", " ") for tool in agent.tools]
    return AgentSpec(name=name, description=description, skills=list(skills), domain=domain,
                     external=OpenAIAgentsAgent(agent, kind=kind, max_turns=max_turns,
                                                run_config=run_config))
