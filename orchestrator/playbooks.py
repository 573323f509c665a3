"""Playbooks: predefined workflows, triggered by an event or a request pattern.

A playbook is a YAML file: a trigger, the inputs it needs, and a DAG of steps naming
agents, with goals filled from the inputs, optional conditions and approvals. It turns
into a :class:`~orchestrator.plan.Plan` without any model call (rules coordination).

Example:
    ```yaml
    name: service_down
    trigger: {event: service_down, pattern: "^outage on (?P<service>[a-z]+-\\d+)"}
    inputs: [service]
    defaults: {severity: high}
    steps:
      - {id: diagnose, agent: diagnostics, goal: "Find the root cause of the {service} outage"}
      - id: reroute
        agent: traffic
        goal: "Reroute {service} traffic to its backup pool"
        when: {path: data.severity, in: [high, critical]}
    ```
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.config import Settings
from orchestrator.errors import ConfigError, RequestError
from orchestrator.plan import Condition, Plan, Subtask

_NAME = r"^[a-z][a-z0-9_]{0,59}$"


class Trigger(BaseModel):
    """What starts a playbook: an event name, a request pattern (regex), or both."""

    model_config = ConfigDict(extra="forbid")

    event: str | None = Field(default=None, pattern=_NAME)
    pattern: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _something(self) -> Trigger:
        if self.event is None and self.pattern is None:
            raise ValueError("a trigger needs an event, a pattern, or both")
        return self


class PlaybookStep(BaseModel):
    """One step: an agent, a goal template, what it needs, when it runs."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    agent: str
    goal: str = Field(min_length=1)
    depends_on: list[str] = Field(default_factory=list)
    alternatives: list[str] = Field(default_factory=list)
    when: Condition | None = None
    requires_approval: bool = False
    kind: Literal["answer", "act"] | None = None
    """answer: the step only reads; act: it changes something; unset: act when its agent
    has a tool that writes."""


class Playbook(BaseModel):
    """A predefined workflow (see the module docstring for the YAML shape)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    description: str = ""
    trigger: Trigger
    inputs: list[str] = Field(default_factory=list)
    """Data fields the steps use; each must come from the event, the pattern or defaults."""
    defaults: dict[str, Any] = Field(default_factory=dict)
    steps: list[PlaybookStep] = Field(min_length=1)
    source: str = Field(default="python", exclude=True)
    pack: str | None = Field(default=None, exclude=True)
    """The domain pack that ships it; None for the user's own playbooks."""

    @model_validator(mode="after")
    def _check(self) -> Playbook:
        known = {*self.inputs, *self.defaults, "request"}
        ids = [s.id for s in self.steps]
        for step in self.steps:
            for field in _template_fields(step.goal):
                if field not in known:
                    raise ValueError(f"step {step.id!r}: goal uses {{{field}}}, which is not "
                                     f"an input (inputs: {', '.join(sorted(known))})")
            when = step.when
            if when is not None and when.path.startswith("steps."):
                target = when.path.removeprefix("steps.").rpartition(".")[0]
                if target not in ids or target not in _ancestors(self.steps, step.id):
                    raise ValueError(f"step {step.id!r}: condition reads step {target!r}, "
                                     "which it does not depend on")
            elif when is not None:
                name = when.path.removeprefix("data.")
                if name not in known and not self.trigger.event:
                    raise ValueError(f"step {step.id!r}: condition reads data.{name}, which "
                                     "is not an input or a default")
        if self.trigger.pattern:
            groups = set(re.compile(self.trigger.pattern).groupindex)
            missing = [i for i in self.inputs if i not in groups and i not in self.defaults]
            if missing and self.trigger.event is None:
                raise ValueError(f"the pattern does not capture input(s) {', '.join(missing)} "
                                 "(use named groups such as (?P<service>...))")
        self.plan_for({**{i: "x" for i in self.inputs}, **self.defaults}, "")  # DAG checks
        return self

    def plan_for(self, data: Mapping[str, Any], request: str) -> Plan:
        """The plan for one trigger; RequestError names missing inputs."""
        values = {**self.defaults, **{k: v for k, v in data.items() if v is not None}}
        missing = [i for i in self.inputs if i not in values]
        if missing:
            raise RequestError(f"playbook {self.name!r} needs {', '.join(missing)} in the "
                               f"event data (e.g. --data '{{\"{missing[0]}\": \"...\"}}')")
        values["request"] = request
        subtasks = [Subtask(id=s.id, agent=s.agent, goal=s.goal.format_map(values),
                            depends_on=s.depends_on, alternatives=s.alternatives,
                            when=s.when, requires_approval=s.requires_approval,
                            kind=s.kind)
                    for s in self.steps]
        try:
            return Plan(rationale=f"playbook {self.name}: {self.description}".strip(" :"),
                        subtasks=subtasks)
        except ValidationError as exc:
            raise ValueError("; ".join(str(e["msg"]) for e in exc.errors())) from None

    def match_request(self, text: str) -> dict[str, str] | None:
        """The captured inputs when the request matches the pattern, else None."""
        if not self.trigger.pattern:
            return None
        match = re.search(self.trigger.pattern, text, re.IGNORECASE)
        if match is None:
            return None
        return {k: v for k, v in match.groupdict().items() if v is not None}

    def check_agents(self, agents: Iterable[str]) -> None:
        """ConfigError when a step names an agent that is not enabled."""
        known = set(agents)
        for step in self.steps:
            for agent in [step.agent, *step.alternatives]:
                if agent not in known:
                    raise ConfigError(f"playbook {self.name!r} ({self.source}): step "
                                      f"{step.id!r} names unknown agent {agent!r}")

    @property
    def agents(self) -> list[str]:
        """Every agent its steps name (alternatives included), in order."""
        return list(dict.fromkeys(a for s in self.steps for a in [s.agent, *s.alternatives]))

    def describe(self) -> dict[str, Any]:
        """What ``orchestrator playbooks --json`` shows: name, pack, triggers, agents."""
        return {"name": self.name, "pack": self.pack, "description": self.description,
                "event": self.trigger.event, "pattern": self.trigger.pattern,
                "inputs": self.inputs, "agents": self.agents, "source": self.source}


def load_playbook(path: str | Path, *, pack: str | None = None) -> Playbook:
    """One YAML playbook; ConfigError names the file and the problem."""
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{file}: cannot read the playbook{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: a playbook is a YAML mapping with name, trigger and steps")
    try:
        return Playbook.model_validate({**data, "source": str(file), "pack": pack})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{file}: {where + ': ' if where else ''}{first['msg']}") from None


def load_playbooks(folder: str | Path, *, pack: str | None = None) -> list[Playbook]:
    """Every ``*.yaml``/``*.yml`` playbook in ``folder``, sorted by file name."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"playbooks folder {root} does not exist (ORCHESTRATOR_PLAYBOOKS_DIR)")
    files = sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
    return [load_playbook(f, pack=pack) for f in files]


def pack_playbooks(domains: str | Iterable[str] | None = None) -> list[Playbook]:
    """The playbooks the domain packs that are on ship (all packs by default).

    A playbook that does not load, or whose steps name an agent its own pack does not
    have, is a ConfigError naming the pack: a broken pack fails at start.
    """
    from orchestrator.agents.domains import enabled_packs

    found: list[Playbook] = []
    for pack in enabled_packs(domains):
        folder = pack.playbooks_folder()
        if folder is None:
            continue
        try:
            playbooks = load_playbooks(folder, pack=pack.name)
        except ConfigError as exc:
            raise ConfigError(f"domain pack {pack.name!r}: {exc}") from None
        own: set[str] | None = None
        for playbook in playbooks:
            if own is None:  # its agents are made only when it has playbooks
                own = {spec.name for spec in pack.agent_specs()}
            try:
                playbook.check_agents(own)
            except ConfigError as exc:
                raise ConfigError(f"domain pack {pack.name!r}: {exc}") from None
        found.extend(playbooks)
    return found


def default_playbooks(settings: Settings, agents: Iterable[str]) -> list[Playbook]:
    """The playbooks of the packs that are on, then ``settings.playbooks_dir``'s.

    A pack's playbook is left out when the orchestrator was given agents without those
    it names (its pack's agents exist: :func:`pack_playbooks` checked); a user playbook
    that names a missing agent is an error.
    """
    names = set(agents)
    found = [p for p in pack_playbooks(settings.domains) if set(p.agents) <= names]
    if settings.playbooks_dir is not None:
        for playbook in load_playbooks(settings.playbooks_dir):
            playbook.check_agents(names)
            found.append(playbook)
    seen: dict[str, str] = {}
    events: dict[str, str] = {}
    for playbook in found:
        if playbook.name in seen:
            raise ConfigError(f"two playbooks are named {playbook.name!r} ({seen[playbook.name]} "
                              f"and {playbook.source})")
        seen[playbook.name] = playbook.source
        event = playbook.trigger.event
        if event is not None and event in events:
            raise ConfigError(f"two playbooks handle event {event!r} ({events[event]} and "
                              f"{playbook.source}): rename one trigger")
        if event is not None:
            events[event] = playbook.source
    return found


def find_for_event(playbooks: Iterable[Playbook], event: str) -> Playbook | None:
    return next((p for p in playbooks if p.trigger.event == event), None)


def known_events(playbooks: Iterable[Playbook]) -> list[str]:
    """The event names the playbooks handle, sorted."""
    return sorted({p.trigger.event for p in playbooks if p.trigger.event})


def enabled_playbooks(settings: Settings) -> list[Playbook]:
    """The playbooks an orchestrator with these settings runs: those of the packs that are
    on (``ORCHESTRATOR_DOMAINS``) whose agents are all there, then the user's
    (``ORCHESTRATOR_PLAYBOOKS_DIR``). What ``orchestrator playbooks`` lists."""
    from orchestrator.agents.registry import AgentRegistry

    agents = AgentRegistry.default(settings.agents_dir, domains=settings.domains)
    return default_playbooks(settings, agents.names)


def check_event_name(playbooks: Iterable[Playbook], event: str) -> Playbook:
    """The playbook that handles ``event``; RequestError listing the known events when
    none does (an event name with a typo must not run something else)."""
    playbooks = list(playbooks)
    playbook = find_for_event(playbooks, event)
    if playbook is None:
        known = ", ".join(known_events(playbooks)) or "none (no playbook with an event is on)"
        raise RequestError(f"unknown event {event!r}: no playbook handles it (known events: "
                           f"{known}; `orchestrator playbooks` lists them)")
    return playbook


def find_for_request(playbooks: Iterable[Playbook], text: str
                     ) -> tuple[Playbook, dict[str, str]] | None:
    for playbook in playbooks:
        data = playbook.match_request(text)
        if data is not None:
            return playbook, data
    return None


def _template_fields(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f]
    except ValueError as exc:
        raise ValueError(f"bad goal template {template!r}: {exc}") from None


def _ancestors(steps: list[PlaybookStep], step_id: str) -> set[str]:
    deps = {s.id: s.depends_on for s in steps}
    seen: set[str] = set()
    stack = list(deps.get(step_id, []))
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(deps.get(current, []))
    return seen
