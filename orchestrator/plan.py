"""The supervisor's plan: a DAG of subtasks, validated before anything runs."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from orchestrator.errors import PlanError

_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


class Condition(BaseModel):
    """A playbook step's ``when``: a value from the event data or an earlier step, tested.

    ``path`` is ``data.<field>``, ``steps.<id>.output`` or ``steps.<id>.status``; exactly
    one test is given: ``equals``, ``not_equals``, ``contains`` (text, case-insensitive)
    or ``in`` (a list of values).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    path: str = Field(pattern=r"^(data\.[A-Za-z0-9_]+|steps\.[A-Za-z0-9_.-]+\.(output|status))$")
    equals: Any = None
    not_equals: Any = None
    contains: str | None = None
    in_: list[Any] | None = Field(default=None, alias="in")

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        given = [n for n in ("equals", "not_equals", "contains", "in_")
                 if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("a condition needs exactly one of equals, not_equals, contains, in")
        return self

    def holds(self, value: Any) -> bool:
        """Whether the test passes for ``value`` (the value at ``path``)."""
        if self.contains is not None:
            return self.contains.lower() in str(value or "").lower()
        if self.in_ is not None:
            return value in self.in_ or str(value) in {str(v) for v in self.in_}
        if self.not_equals is not None:
            return str(value) != str(self.not_equals)
        return str(value) == str(self.equals)


def _kind_required(schema: dict[str, Any]) -> None:
    # A model must say what each subtask is; playbooks and code may leave it to the agent.
    required = schema.setdefault("required", [])
    if "kind" not in required:
        required.append("kind")


class Subtask(BaseModel):
    """One unit of work for one specialist agent."""

    model_config = ConfigDict(json_schema_extra=_kind_required)

    id: str = Field(description="Short unique id such as 't1'.")
    goal: str = Field(description="What the agent must do, self-contained (names, ids, numbers).")
    agent: str = Field(description="Name of the specialist agent that does it.")
    depends_on: list[str] = Field(
        default_factory=list,
        description="Ids of subtasks whose outputs this one needs; empty when independent.",
    )
    alternatives: list[str] = Field(
        default_factory=list,
        description="Other agents that could also do it, best first (used if the agent fails).",
    )
    kind: Literal["answer", "act"] | None = Field(
        default=None,
        description="'answer': the agent only reads (a question, a hypothetical); 'act': it "
        "makes a change the user asked for.",
    )
    # Set by playbooks, never by the model (hidden from the schema the model sees).
    when: SkipJsonSchema[Condition | None] = None
    requires_approval: SkipJsonSchema[bool] = False
    # Set by a replan: the subtask this one replaces (its writes count as this one's).
    origin: SkipJsonSchema[str | None] = None


class Plan(BaseModel):
    """Subtasks for the specialist agents, or none and a direct reply in ``answer``."""

    # The model reads this docstring and the field descriptions with every planning call;
    # the planner prompt holds the rules (parallel subtasks, when to answer directly).

    rationale: str = Field(default="", description="One or two sentences on why this plan.")
    subtasks: list[Subtask] = Field(default_factory=list)
    answer: str | None = Field(
        default=None, description="Direct reply when the request needs no agent."
    )

    @model_validator(mode="after")
    def _check_graph(self) -> Plan:
        problems = structural_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def subtask(self, subtask_id: str) -> Subtask:
        for subtask in self.subtasks:
            if subtask.id == subtask_id:
                return subtask
        raise KeyError(subtask_id)

    def critical_path_length(self) -> int:
        """Number of subtasks on the longest dependency chain."""
        depth: dict[str, int] = {}
        for subtask in topological_order(self):
            depth[subtask.id] = 1 + max((depth[d] for d in subtask.depends_on), default=0)
        return max(depth.values(), default=0)


def structural_problems(plan: Plan) -> list[str]:
    """Unique ids, existing dependencies, no self-dependency, no cycles."""
    problems: list[str] = []
    ids = [s.id for s in plan.subtasks]
    seen: set[str] = set()
    for subtask_id in ids:
        if not _ID_PATTERN.match(subtask_id):
            problems.append(f"subtask id {subtask_id!r} must be 1-40 letters, digits, '_-.'")
        if subtask_id in seen:
            problems.append(f"duplicate subtask id {subtask_id!r}")
        seen.add(subtask_id)
    for subtask in plan.subtasks:
        if not subtask.goal.strip():
            problems.append(f"subtask {subtask.id!r} has an empty goal")
        for dep in subtask.depends_on:
            if dep == subtask.id:
                problems.append(f"subtask {subtask.id!r} depends on itself")
            elif dep not in seen:
                problems.append(f"subtask {subtask.id!r} depends on unknown subtask {dep!r}")
    if not problems:
        cycle = _find_cycle(plan)
        if cycle:
            problems.append("dependency cycle: " + " -> ".join(cycle))
    if not plan.subtasks and not (plan.answer or "").strip():
        problems.append("a plan needs at least one subtask or a direct answer")
    return problems


def check_agents(plan: Plan, agent_names: Iterable[str]) -> None:
    """Raise :class:`PlanError` if a subtask names an agent that does not exist."""
    known = set(agent_names)
    unknown = [f"subtask {s.id!r} names unknown agent {s.agent!r}" for s in plan.subtasks
               if s.agent not in known]
    unknown += [f"subtask {s.id!r} names unknown alternative {a!r}" for s in plan.subtasks
                for a in s.alternatives if a not in known]
    if unknown:
        raise PlanError("; ".join(unknown) + f" (known agents: {', '.join(sorted(known))})")


def check_kinds(plan: Plan) -> None:
    """Raise :class:`PlanError` if a subtask of a model's plan does not say its kind."""
    missing = [s.id for s in plan.subtasks if s.kind is None]
    if missing:
        raise PlanError(f"subtask(s) {', '.join(missing)} need a kind: 'answer' when the "
                        "user asks a question (the agent only reads) or 'act' when the user "
                        "asks for a change")


_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_SHINGLE = 4
COPIED_SHARE = 0.6
"""A goal whose word 4-grams are at least this share from one passage (and not from the
request) copies that passage."""


def shingles(text: str, size: int = _SHINGLE) -> frozenset[tuple[str, ...]]:
    """The runs of ``size`` words in ``text`` (lowercase)."""
    words = _WORD.findall(text.lower())
    return frozenset(tuple(words[i:i + size]) for i in range(len(words) - size + 1))


_source_shingles = functools.lru_cache(maxsize=4096)(shingles)
"""Cached for the sources only: every plan is checked against the same catalog lines. A
request or a goal is new with each run (8,000 characters pin ~380 KB of 4-grams)."""


def copied_goals(plan: Plan, request: str, sources: Mapping[str, str]) -> list[tuple[str, str]]:
    """(subtask id, source label) for each goal that copies one of ``sources`` (knowledge
    passages, catalog lines) near word for word: a goal says what to do for the request, so
    what it shares with a source and not with the request must stay a small part of it."""
    asked = shingles(request)
    texts = {label: _source_shingles(text) for label, text in sources.items()}
    found: list[tuple[str, str]] = []
    for subtask in plan.subtasks:
        goal = shingles(subtask.goal)
        if len(goal) < 2:
            continue  # a few words: nothing to copy
        for label, source in texts.items():
            copied = (goal & source) - asked
            if len(copied) >= 3 and len(copied) >= COPIED_SHARE * len(goal):
                found.append((subtask.id, label))
                break
    return found


def topological_order(plan: Plan) -> list[Subtask]:
    """Subtasks ordered so that each comes after its dependencies (stable)."""
    done: set[str] = set()
    order: list[Subtask] = []
    remaining = list(plan.subtasks)
    while remaining:
        ready = [s for s in remaining if all(d in done for d in s.depends_on)]
        if not ready:
            raise PlanError("dependency cycle in plan")
        for subtask in ready:
            done.add(subtask.id)
            order.append(subtask)
        remaining = [s for s in remaining if s.id not in done]
    return order


def _find_cycle(plan: Plan) -> list[str]:
    deps = {s.id: s.depends_on for s in plan.subtasks}
    state: dict[str, int] = {}  # 1 = on stack, 2 = finished
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for dep in deps.get(node, []):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in deps:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []
