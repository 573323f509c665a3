"""AgentSpec: what a specialist agent is, what it may call and read."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool, StructuredTool

from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.agents.external import ExternalAgent

_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

ToolLike = BaseTool | Callable[..., Any]


@runtime_checkable
class Toolset(Protocol):
    """Tools an agent gets from elsewhere (an MCP server's), known once loaded."""

    @property
    def name(self) -> str:
        """What it is called in errors (``mcp:time``)."""
        ...

    async def aload(self) -> list[BaseTool]:
        """The tools (loaded on first use, then kept); raises when they cannot be had."""
        ...

    def loaded(self) -> list[BaseTool] | None:
        """The tools if loaded, else None."""
        ...


@dataclass
class AgentSpec:
    """A specialist agent the supervisor can route subtasks to.

    Example:
        ```python
        spec = AgentSpec(
            name="traffic",
            description="Reroutes a service's traffic to a backup pool.",
            skills=["reroute", "failover"],
            tools=[reroute_traffic],
        )
        ```
    """

    name: str
    """Unique snake_case name; the planner routes by it."""
    description: str
    """One sentence the planner reads to decide what this agent is for."""
    skills: list[str] = field(default_factory=list)
    """Short phrases for the kinds of work it does well."""
    prompt: str = ""
    """Extra instructions added to the shared specialist prompt."""
    tools: Sequence[ToolLike] = ()
    """The only tools this agent may call; plain functions are wrapped as tools."""
    collections: list[str] = field(default_factory=list)
    """Knowledge-base collections it may retrieve from."""
    model: str | BaseChatModel | None = None
    """Model spec or instance overriding the orchestrator's model for this agent."""
    domain: str = "general"
    """Business domain it belongs to (it_ops, commerce, ...)."""
    source: str = "python"
    """Where it was defined (built-in, entry point, card file); used in error messages."""
    toolsets: Sequence[Toolset] = ()
    """More tools, from elsewhere (MCP servers), loaded when the agent is first planned for;
    the same policy applies to them as to ``tools``."""
    external: ExternalAgent | None = None
    """Runs its subtasks instead of the engine's model-and-tools loop (a remote A2A agent,
    a LangGraph graph, an OpenAI Agents SDK agent); it then has no tools of ours."""

    def __post_init__(self) -> None:
        if not _NAME_PATTERN.match(self.name):
            raise ConfigError(
                f"agent name {self.name!r} ({self.source}) must be snake_case, 1-40 chars"
            )
        if not self.description.strip():
            raise ConfigError(f"agent {self.name!r} ({self.source}) needs a description")
        tools = [as_tool(t) for t in self.tools]
        if self.external is not None and tools:
            raise ConfigError(f"agent {self.name!r} ({self.source}) is run by "
                              f"{type(self.external).__name__}: it cannot also list tools")
        self.tools = tools
        names = [t.name for t in tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"agent {self.name!r} lists tool(s) twice: {', '.join(duplicates)}")

    @property
    def tool_map(self) -> dict[str, BaseTool]:
        return {t.name: t for t in self.tools if isinstance(t, BaseTool)}

    def catalog_line(self) -> str:
        """The line the planner sees for this agent."""
        skills = ", ".join(self.skills) if self.skills else "-"
        return f"- {self.name}: {self.description} | skills: {skills}"


def as_tool(tool: ToolLike) -> BaseTool:
    """Wrap a plain function as a structured tool; tools pass through unchanged."""
    if isinstance(tool, BaseTool):
        return tool
    if callable(tool):
        return StructuredTool.from_function(tool)
    raise ConfigError(f"{tool!r} is not a tool or a function")
