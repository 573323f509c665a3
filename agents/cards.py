"""YAML agent cards: an agent defined in a file, its tools named by import path."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.agents.spec import AgentSpec, Toolset, as_tool
from orchestrator.errors import ConfigError
from orchestrator.models.specs import parse_model_spec
from orchestrator.retrieval.tool import RETRIEVE_TOOL_NAME, retrieve


class McpServerCard(BaseModel):
    """One MCP server an agent may use (see :mod:`orchestrator.integrations.mcp_tools`)."""

    model_config = ConfigDict(extra="forbid")

    server: str = Field(description="A name for the server (errors and events say it)")
    command: str | None = Field(None, description="stdio: the command that starts it")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] | None = Field(None, description="stdio: its environment; ${VAR} "
                                       "is taken from ours")
    cwd: str | None = None
    url: str | None = Field(None, description="streamable HTTP: the endpoint")
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP headers; ${VAR} "
                                    "is taken from the environment (keep secrets out of cards)")
    tools: list[str] = Field(default_factory=list, description="The tools the agent may use")
    all_tools: bool = Field(False, description="Every tool the server lists (say it to mean "
                            "it)")
    approval: Literal["none", "writes", "destructive"] | list[str] = Field(
        "none", description="Which of its tools need a person's approval")
    timeout_s: float = Field(60.0, gt=0, description="Longest one call may take")
    prefix: str = Field("", description="Put before each tool's name")
    trust_annotations: bool = Field(True, description="Take the server's word (its tool "
                                    "annotations) for what a tool does; false: every tool is "
                                    "a destructive write unless read_only names it")
    read_only: list[str] = Field(default_factory=list, description="Tools that only read, "
                                 "whatever the server says")


class A2AAgentCard(BaseModel):
    """A remote agent over A2A that runs this agent's subtasks."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="The remote agent's base URL (its card is read from it)")
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP headers; "
                                    "${VAR} is taken from the environment")
    read_only: bool = Field(False, description="It only reads: it may answer questions")
    timeout_s: float | None = Field(None, gt=0)


class AgentCard(BaseModel):
    """The file format of an agent card."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = Field("", description="What it is for (an A2A agent's own card "
                             "gives it when left out)")
    skills: list[str] = Field(default_factory=list)
    prompt: str = ""
    tools: list[str] = Field(
        default_factory=list, description="'package.module:function', or 'retrieve'")
    collections: list[str] = Field(default_factory=list)
    model: str | None = None
    domain: str = "general"
    mcp: list[McpServerCard] = Field(default_factory=list,
                                     description="MCP servers whose tools it may use")
    a2a: A2AAgentCard | None = Field(None, description="A remote A2A agent runs its subtasks "
                                     "(then it has no tools)")


def import_object(path: str) -> Any:
    """Import ``package.module:attr`` (or ``package.module.attr``)."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{path!r} is not an import path like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r} for {path!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"module {module_name!r} has no {attr!r} (from {path!r})")
        obj = getattr(obj, part)
    return obj


def load_agent_card(path: str | Path) -> AgentSpec:
    """Read one card; any problem is a ConfigError that names the file."""
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read agent card: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: an agent card must be a YAML mapping with name, description")
    try:
        card = AgentCard.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'card'}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"{file}: invalid agent card: {problems}") from None
    try:
        if card.model is not None:
            parse_model_spec(card.model)
        tools = [as_tool(retrieve if t == RETRIEVE_TOOL_NAME else import_object(t))
                 for t in card.tools]
        if card.a2a is not None:
            return _remote_agent(card, file)
        toolsets: list[Toolset] = []
        if card.mcp:
            from orchestrator.integrations.mcp_tools import McpToolset, mcp_server_from_card

            names = [m.server for m in card.mcp]
            if len(set(names)) < len(names):
                raise ConfigError("two MCP servers of the card have the same name")
            toolsets = [McpToolset(mcp_server_from_card(m.model_dump(), str(file)))
                        for m in card.mcp]
        return AgentSpec(
            name=card.name, description=card.description, skills=card.skills, prompt=card.prompt,
            tools=tools, collections=card.collections, model=card.model, domain=card.domain,
            source=str(file), toolsets=toolsets,
        )
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if str(file) in message else f"{file}: {message}") from None


def _remote_agent(card: AgentCard, file: Path) -> AgentSpec:
    """The agent of a card with an ``a2a`` section: the remote agent runs its subtasks."""
    assert card.a2a is not None
    if card.tools or card.mcp:
        raise ConfigError("an agent run by a remote A2A agent cannot also list tools or "
                          "MCP servers")
    from orchestrator.integrations.a2a_agent import a2a_spec_from_card

    spec: AgentSpec = a2a_spec_from_card(
        card.name, card.a2a.model_dump(), description=card.description, skills=card.skills,
        domain=card.domain, source=str(file))
    return spec


def load_agent_cards(folder: str | Path) -> list[AgentSpec]:
    """Every ``*.yaml`` / ``*.yml`` card in ``folder``, in name order."""
    directory = Path(folder)
    if not directory.is_dir():
        raise ConfigError(f"agents folder {directory} does not exist or is not a folder")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    return [load_agent_card(f) for f in files]
