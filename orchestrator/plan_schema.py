"""The plan's JSON schema narrowed to one catalog, for servers that enforce a schema.

A server that constrains its reply to a JSON schema (llama.cpp turns it into a grammar)
cannot then name an agent that does not exist, give a change to an agent that can only
read, or write a goal without end. Seen with a 1.5B model: plans naming an agent "logs",
reads marked ``act`` and the same mistake repeated after every repair message.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

GOAL_MAX_CHARS = 400
"""A goal is a sentence or two; the cap stops a small model that would write on."""


def narrowed_plan_schema(schema: dict[str, Any], agents: Sequence[str], *,
                         can_read: Callable[[str], bool], can_change: Callable[[str], bool],
                         max_subtasks: int) -> dict[str, Any]:
    """``schema`` (the Plan model's JSON schema) with each subtask's ``agent`` one of
    ``agents`` and its ``kind`` one that agent can do (``answer`` needs a tool that reads,
    ``act`` one that changes something), its alternatives among ``agents``, its goal at
    most :data:`GOAL_MAX_CHARS` long, and at most ``max_subtasks`` subtasks."""
    out = copy.deepcopy(schema)
    defs = out.get("$defs", {})
    subtask = defs.get("Subtask")
    if subtask is None or not agents:
        return out
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in agents:
        kinds = tuple(k for k, ok in (("answer", can_read(name)), ("act", can_change(name)))
                      if ok)
        if kinds:
            groups.setdefault(kinds, []).append(name)
    variants = []
    for kinds, names in groups.items():
        variant = copy.deepcopy(subtask)
        props = variant["properties"]
        props["agent"] = {**props["agent"], "enum": names}
        props["kind"] = {"description": props.get("kind", {}).get("description", ""),
                         "enum": list(kinds), "type": "string"}
        if "alternatives" in props:
            props["alternatives"] = {**props["alternatives"],
                                     "items": {"enum": list(agents), "type": "string"}}
        if "goal" in props:
            props["goal"] = {**props["goal"], "maxLength": GOAL_MAX_CHARS}
        variants.append(variant)
    defs["Subtask"] = variants[0] if len(variants) == 1 else {
        "description": subtask.get("description", ""), "anyOf": variants}
    subtasks = out.get("properties", {}).get("subtasks")
    if isinstance(subtasks, dict):
        subtasks["maxItems"] = max_subtasks
    return out
