"""YAML agent cards: an agent defined in a file, its tools named by import path."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.agents.spec import AgentSpec, as_tool
from orchestrator.errors import ConfigError
from orchestrator.models.specs import parse_model_spec
from orchestrator.retrieval.tool import RETRIEVE_TOOL_NAME, retrieve


class AgentCard(BaseModel):
    """The file format of an agent card."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    skills: list[str] = Field(default_factory=list)
    prompt: str = ""
    tools: list[str] = Field(
        default_factory=list, description="'package.module:function', or 'retrieve'")
    collections: list[str] = Field(default_factory=list)
    model: str | None = None
    domain: str = "general"


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
        return AgentSpec(
            name=card.name, description=card.description, skills=card.skills, prompt=card.prompt,
            tools=tools, collections=card.collections, model=card.model, domain=card.domain,
            source=str(file),
        )
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if str(file) in message else f"{file}: {message}") from None


def load_agent_cards(folder: str | Path) -> list[AgentSpec]:
    """Every ``*.yaml`` / ``*.yml`` card in ``folder``, in name order."""
    directory = Path(folder)
    if not directory.is_dir():
        raise ConfigError(f"agents folder {directory} does not exist or is not a folder")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    return [load_agent_card(f) for f in files]
