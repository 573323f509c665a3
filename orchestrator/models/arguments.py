"""How the offline rules model fills a tool's arguments: from the tool's JSON schema (enum,
pattern, type) and the values in the goal, its inputs, and what its look-ups returned.

A value the schema asks for and the text does not give is never guessed: an enum value is
chosen by meaning only when one clearly fits; an id the goal names only by a person's name
is first looked up with a tool that finds records by name (see
:func:`orchestrator.models.meaning.lookup_tool`); otherwise the call is not made and the
reply says what is missing.
"""

from __future__ import annotations

import re
from typing import Any

from orchestrator.agents.policy import non_null
from orchestrator.models.meaning import Meaning, enum_by_meaning, humanize
from orchestrator.text_match import find_pattern

_NAME = re.compile(r"(?<![\w-])(?:[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?)(?:\s+[A-Z][a-z]+"
                   r"(?:[-'][A-Z]?[a-z]+)?)+")
"""A person's (or a thing's) name as people write it: two or more capitalised words."""


def fill_arguments(tool: dict[str, Any], goal: str, inputs: str = "", knowledge: str = "",
                   passages: str = "", meaning: Meaning | None = None
                   ) -> list[dict[str, Any]]:
    """Arguments for ``tool`` from the text; one call per distinct id the goal names.

    Ids come from the goal, then the dependencies' outputs; retrieved knowledge only fills
    optional id fields (it says how to act, not on what); the retrieved ``passages``, as
    they came with their citation markers, follow the goal in free text. An enum value
    the text does not name is chosen by ``meaning`` when one clearly fits.
    """
    params = tool["function"].get("parameters", {})
    required = set(params.get("required", []))
    text = f"{goal} {inputs}".strip()
    base: dict[str, Any] = {}
    fan_out: tuple[str, list[str]] | None = None
    for name, prop in params.get("properties", {}).items():
        schema = non_null(prop)
        value: Any = None
        if "enum" in schema:
            value = _enum_value(schema["enum"], text, prop.get("default"))
            if value is None and name in required:
                value = enum_by_meaning(meaning, goal, schema["enum"])
        elif schema.get("type") == "string" and "pattern" in schema:
            from_goal = find_pattern(schema["pattern"], goal)
            found = from_goal
            if not found and name not in required:
                # An optional target (which pool) comes from procedure, not from what an
                # earlier step saw (the current pool): inputs only fill what is required.
                found = find_pattern(schema["pattern"], knowledge)
            elif not found:
                found = find_pattern(schema["pattern"], inputs)
            if len(from_goal) > 1 and name in required and fan_out is None:
                fan_out = (name, from_goal[:5])
            value = found[0] if found else None
        elif schema.get("type") == "string" and name in required:
            # Free text: the goal and inputs, then what it looked up (with its citations).
            extra = passages or knowledge
            value = text[:600] if not extra else f"{text[:600]}\n{extra[:1500]}"
        elif schema.get("type") in ("integer", "number"):
            value = _number_near(name, text, schema.get("type") == "integer")
        if value is None and "default" in prop:
            continue
        if value is not None:
            base[name] = value
    if fan_out is None:
        return [base]
    name, values = fan_out
    return [{**base, name: value} for value in values]


def missing_required(tool: dict[str, Any], args: dict[str, Any]) -> list[str]:
    """The required parameters ``args`` leaves out."""
    params = tool["function"].get("parameters", {})
    return [r for r in params.get("required", []) if r not in args]


def names_in(text: str) -> list[str]:
    """Names written with capitals ("Ana Silva") in ``text``, in order."""
    return list(dict.fromkeys(_NAME.findall(text)))


def lookup_arguments(tool: dict[str, Any], name: str) -> dict[str, Any]:
    """Arguments for a look-up tool: the name in each free-string field it requires."""
    params = tool["function"].get("parameters", {})
    return {r: name for r in params.get("required", [])}


def id_near_name(pattern: str, name: str, found: str) -> str | None:
    """The one id (by ``pattern``) on the look-up result's line that names ``name``; None
    when no line does, or a line has several ids that differ (not sure which)."""
    lines = [line for line in re.split(r"[\n;]|(?<=\})\s*,", found)
             if name.lower() in line.lower()]
    ids = list(dict.fromkeys(i for line in lines for i in find_pattern(pattern, line)))
    return ids[0] if len(ids) == 1 else None


def describe_missing(tool: dict[str, Any], missing: list[str]) -> str:
    """What the goal would have to say for the call to be made, from the schema."""
    props = tool["function"].get("parameters", {}).get("properties", {})
    parts = []
    for name in missing:
        schema = non_null(props.get(name, {}))
        if "enum" in schema:
            parts.append(f"{humanize(name)} (one of {', '.join(map(str, schema['enum']))})")
        else:
            about = re.sub(r",?\s*e\.?g\.?.*$", "", str(props.get(name, {}).get(
                "description", "")).strip()).rstrip(".")  # an example is not an answer
            parts.append(f"{humanize(name)} ({about})" if about else humanize(name))
    return "; ".join(parts)


def _enum_value(options: list[Any], text: str, default: Any) -> Any:
    lowered = text.lower()
    hits = [(lowered.find(str(o).lower()), o) for o in options
            if re.search(rf"\b{re.escape(str(o).lower())}\b", lowered)]
    if hits:
        return min(hits, key=lambda hit: hit[0])[1]
    return default if default is not None else None


def _number_near(name: str, text: str, integer: bool) -> float | int | None:
    word = re.escape(name.replace("_", " "))
    match = re.search(rf"{word}\D{{0,12}}(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s*{word}", text, re.I)
    if not match:
        return None
    number = float(match.group(1) or match.group(2))
    return int(number) if integer else number
