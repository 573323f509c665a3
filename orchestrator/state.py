"""The graph state and the engine context the nodes share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol, TypedDict, cast

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AnyMessage, BaseMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langgraph.graph.message import add_messages
from pydantic import BaseModel

from orchestrator.agents.policy import is_read_only
from orchestrator.agents.spec import AgentSpec
from orchestrator.budget import RunBudget
from orchestrator.config import Settings, StructuredMethod
from orchestrator.errors import ConfigError
from orchestrator.json_actions import JsonActions
from orchestrator.plan import Subtask
from orchestrator.plan_schema import narrowed_plan_schema
from orchestrator.pricing import PriceTable
from orchestrator.results import SubtaskKind, Usage
from orchestrator.retrieval.embedders import Embedder, get_embedder
from orchestrator.retrieval.search import Retriever
from orchestrator.retrieval.tool import RETRIEVE_TOOL_NAME, bind_retrieve_tool
from orchestrator.routing import AgentStatsBook
from orchestrator.start_gate import leave_start_gate
from orchestrator.tool_schemas import compact_schema, model_tool_schema
from orchestrator.write_journal import WriteJournal

logger = logging.getLogger(__name__)


class OrchestratorState(TypedDict, total=False):
    """One conversation thread. Values are plain JSON-like data so checkpoints stay portable.

    ``messages`` is the conversation (user requests and final answers) and accumulates
    across turns; every other key describes the current turn and is reset by the planner.
    """

    messages: Annotated[list[AnyMessage], add_messages]
    request: str
    run_id: str
    plan: dict[str, Any] | None
    results: dict[str, dict[str, Any]]
    answer: str
    error: str | None
    supervisor_usage: dict[str, int]
    event: dict[str, Any] | None
    """The event that started this run (``orchestrator event``), if any: name and data."""
    mode: str
    """How the plan was made: 'playbook:<name>' or 'supervisor'."""
    inputs: dict[str, Any]
    """The playbook's data (defaults, event data, pattern captures): conditions read it."""
    replans: int
    budget_hit: str | None
    wall_used_s: float | None
    """Run time used when it paused for approval; the wall-time budget resumes from it."""
    approvals: dict[str, dict[str, Any]]
    """Decisions on steps that need approval, by subtask id: approved, reason."""


class NodeFn(Protocol):
    """A graph node: reads the state, returns the keys it updates."""

    def __call__(self, state: OrchestratorState) -> Awaitable[dict[str, Any]]: ...


@dataclass
class EngineContext:
    """What the nodes need besides the state: agents, models, settings."""

    model: BaseChatModel
    """The supervisor's model (planner and synthesizer), and the agents' default."""
    agents: dict[str, AgentSpec]
    agent_models: dict[str, BaseChatModel]
    """Resolved per-agent models; agents without an override use ``model``."""
    settings: Settings
    retriever: Retriever | None = None
    """The knowledge base, when one is configured (retrieve tool, planner context)."""
    routing: AgentStatsBook = field(default_factory=AgentStatsBook)
    """Recent outcomes per agent: adaptive routing reads and updates it."""
    prices: PriceTable = field(default_factory=PriceTable)
    model_names: dict[str, str] = field(default_factory=dict)
    """Price-table keys: '' for the supervisor, else agent name -> model spec or name."""
    playbooks: list[Any] = field(default_factory=list)
    """The playbooks rules and hybrid coordination match requests and events against."""
    journal: WriteJournal | None = None
    """Where write calls are noted before they run (a crash mid-call is then known)."""

    _budgets: dict[str, RunBudget] = field(default_factory=dict, repr=False)

    _bound: dict[str, Runnable[LanguageModelInput, BaseMessage]] = field(
        default_factory=dict, repr=False)

    def model_for(self, agent: str) -> BaseChatModel:
        return self.agent_models.get(agent, self.model)

    def model_name(self, agent: str = "") -> str:
        """The name prices are looked up by: the agent's model, else the supervisor's."""
        return self.model_names.get(agent) or self.model_names.get("", "")

    def budget(self, run_id: str, spent: dict[str, int] | None = None) -> RunBudget:
        """The run's budget, created on first use (``spent``: usage so far, after a resume)."""
        if run_id not in self._budgets:
            budget = RunBudget.from_settings(self.settings, self.prices)
            if spent:
                budget.spent = Usage.from_dict(spent)
            self._budgets[run_id] = budget
        return self._budgets[run_id]

    def end_run(self, run_id: str) -> None:
        """Release the run's per-run resources (its budget), whatever path it ended by."""
        self._budgets.pop(run_id, None)

    @property
    def open_runs(self) -> list[str]:
        """Runs that hold per-run resources now."""
        return list(self._budgets)

    _tools: dict[str, dict[str, BaseTool]] = field(default_factory=dict, repr=False)
    toolset_problems: dict[str, str] = field(default_factory=dict, repr=False)
    """Why an agent's toolset could not be loaded (its MCP server did not start), by agent."""
    _catalog_lines: dict[str, str] = field(default_factory=dict, repr=False)
    _card_vectors: dict[str, dict[str, list[list[float]]]] = field(default_factory=dict,
                                                                   repr=False)

    def agent_tools(self, spec: AgentSpec) -> dict[str, BaseTool]:
        """The tools this agent may call, ``retrieve`` bound to its own collections, and
        those of its toolsets that are loaded (:meth:`load_toolsets`)."""
        if spec.name not in self._tools:
            tools = dict(spec.tool_map)
            if RETRIEVE_TOOL_NAME in tools:
                tools[RETRIEVE_TOOL_NAME] = bind_retrieve_tool(
                    self.retriever, spec.name, spec.collections)
            loaded = [toolset.loaded() for toolset in spec.toolsets]
            for more in loaded:
                for tool in more or ():
                    if tool.name in tools:
                        raise ConfigError(f"agent {spec.name!r} has two tools named "
                                          f"{tool.name!r}: give its MCP server a prefix")
                    tools[tool.name] = tool
            if any(more is None for more in loaded):
                return tools  # not kept: the rest come once their server answers
            self._tools[spec.name] = tools
        return self._tools[spec.name]

    async def load_toolsets(self, agents: Iterable[AgentSpec] | None = None) -> None:
        """Load the toolsets (MCP servers' tools) of ``agents`` (all) not loaded yet, all at
        once; one that cannot be loaded is logged and left out until it can."""
        specs = [s for s in (self.agents.values() if agents is None else agents)
                 if any(t.loaded() is None for t in s.toolsets)]
        if not specs:
            return
        leave_start_gate()  # servers to start: a wait on the world, the next run may start
        pending = [(spec, t) for spec in specs for t in spec.toolsets if t.loaded() is None]
        outcomes = await asyncio.gather(*(t.aload() for _, t in pending),
                                        return_exceptions=True)
        for (spec, toolset), outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if isinstance(outcome, ConfigError):
                    raise outcome
                logger.warning("agent %s: %s: %s", spec.name, toolset.name, outcome)
                self.toolset_problems[spec.name] = str(outcome)
            else:
                self.toolset_problems.pop(spec.name, None)
        for spec in specs:  # what was made from their tools is made again
            self._tools.pop(spec.name, None)
            self._catalog_lines.pop(spec.name, None)
            for key in [k for k in self._bound if k.startswith(f"agent:{spec.name}:")]:
                del self._bound[key]

    def agent_runnable(self, spec: AgentSpec, kind: SubtaskKind = "act"
                       ) -> Runnable[LanguageModelInput, BaseMessage]:
        """The agent's model with only its own tools bound, and for an answer subtask only
        its read-only ones (built once per agent and kind: schemas are costly); for a model
        whose provider asks for JSON-schema replies, each step as a JSON action
        (``json_actions``)."""
        key = f"agent:{spec.name}:{kind}"
        if key not in self._bound:
            model = self.model_for(spec.name)
            tools = [t for t in self.agent_tools(spec).values()
                     if kind == "act" or is_read_only(t)]
            # The compact schema: it goes with every call (the tool still checks the call).
            schemas = [model_tool_schema(t) for t in tools]
            if not tools:
                self._bound[key] = model
            elif structured_method(model) == "json_schema":
                # a server that enforces a schema but does not parse tool calls (llama.cpp)
                self._bound[key] = JsonActions(model, schemas)
            else:
                self._bound[key] = model.bind_tools(schemas)
        return self._bound[key]

    def catalog_line(self, spec: AgentSpec) -> str:
        """The line the planner sees for an agent: what it is for, and which of its tools
        only read and which change things (so the planner can tell answer from act).
        Made once per agent, as its tools are (reading every tool's policy on every plan
        was a few per cent of a busy server's CPU)."""
        if spec.name in self.toolset_problems:
            return self._catalog_line(spec)
        if spec.name not in self._catalog_lines:
            self._catalog_lines[spec.name] = self._catalog_line(spec)
        return self._catalog_lines[spec.name]

    def _catalog_line(self, spec: AgentSpec) -> str:
        if spec.external is not None:  # what it does are its skills, done in its own system
            what = ", ".join(spec.skills) or spec.name
            verb = "reads" if spec.external.kind.read_only else "changes"
            return f"{spec.catalog_line()} | {verb}: {what}"
        if spec.name in self.toolset_problems:  # not kept: it says so until it is fixed
            return (f"{spec.catalog_line()} | unavailable: "
                    f"{self.toolset_problems[spec.name]}")
        tools = self.agent_tools(spec).values()
        reads = [t.name for t in tools if is_read_only(t)]
        changes = [t.name for t in tools if not is_read_only(t)]
        line = spec.catalog_line()
        if reads:
            line += f" | reads: {', '.join(reads)}"
        if changes:
            line += f" | changes: {', '.join(changes)}"
        return line

    def agent_card(self, spec: AgentSpec) -> list[str]:
        """What the planner's shortlist compares a request with, in pieces: the agent (name,
        description, skills), then each of its tools (name, description). ``retrieve`` is
        left out: every agent that has it has the same one."""
        skills = f" Skills: {', '.join(spec.skills)}." if spec.skills else ""
        pieces = [f"{spec.name.replace('_', ' ')}: {spec.description}{skills}"]
        pieces += [f"{t.name.replace('_', ' ')}: {t.description}"
                   for t in self.agent_tools(spec).values() if t.name != RETRIEVE_TOOL_NAME]
        return pieces

    def card_vectors(self, embedder: Embedder) -> dict[str, list[list[float]]]:
        """Each agent's card pieces (:meth:`agent_card`) embedded by ``embedder``: kept
        here, and in the data folder, for as long as the cards do not change."""
        key = embedder.name
        if key not in self._card_vectors:
            from orchestrator.agents.catalog import card_vectors

            cards = {name: self.agent_card(spec) for name, spec in self.agents.items()}
            flat = card_vectors(self.settings.home, embedder,
                                [piece for pieces in cards.values() for piece in pieces])
            vectors: dict[str, list[list[float]]] = {}
            for name, pieces in cards.items():
                vectors[name], flat = flat[:len(pieces)], flat[len(pieces):]
            self._card_vectors[key] = vectors
        return self._card_vectors[key]

    def embedder(self) -> Embedder:
        """The knowledge base's embedder (the same shared instance), else the configured one;
        loaded on its first use."""
        if self.retriever is not None:
            return self.retriever.store.embedder
        return get_embedder(self.settings.embedder)

    def subtask_kind(self, subtask: Subtask) -> SubtaskKind:
        """The subtask's kind as planned; when a plan (a playbook step) left it out, ``act``
        if its agent has a tool that writes, else ``answer``."""
        if subtask.kind is not None:
            return subtask.kind
        return "act" if self.can_change(subtask.agent) else "answer"

    def can_read(self, agent: str) -> bool:
        """Whether the agent can answer: it has a tool that reads, or no tools at all (an
        external agent: it is declared read-only)."""
        spec = self.agents.get(agent)
        if spec is not None and spec.external is not None:  # declared, not inferred
            return spec.external.kind.read_only
        tools = list(self.agent_tools(spec).values()) if spec is not None else []
        return not tools or any(is_read_only(t) for t in tools)

    def can_change(self, agent: str) -> bool:
        """Whether the agent has a tool that writes (only such an agent can do an act; an
        external agent: it is not declared read-only)."""
        spec = self.agents.get(agent)
        if spec is not None and spec.external is not None:
            return not spec.external.kind.read_only
        tools = self.agent_tools(spec).values() if spec is not None else []
        return any(not is_read_only(t) for t in tools)

    def planner_collections(self) -> list[str]:
        """Collections the planner draws context from: those any agent may read."""
        return list(dict.fromkeys(c for spec in self.agents.values() for c in spec.collections))

    @property
    def shortlist_size(self) -> int:
        """Most agents the planner is shown: ``planner_shortlist``, or fewer when the
        supervisor's model says it plans better from fewer (``metadata
        ["orchestrator_shortlist"]``, set by a provider: a small local model)."""
        hint = (self.model.metadata or {}).get("orchestrator_shortlist")
        limit = self.settings.planner_shortlist
        return min(limit, int(hint)) if isinstance(hint, int) and hint > 0 else limit

    @property
    def shortlist_spread(self) -> float | None:
        """How close to the closest agent the shortlist's other agents must be, when the
        supervisor's model says (``metadata["orchestrator_shortlist_spread"]``, set by a
        provider: a small model plans a subtask for every agent it is shown); else None."""
        hint = (self.model.metadata or {}).get("orchestrator_shortlist_spread")
        return float(hint) if isinstance(hint, int | float) and hint > 0 else None

    @property
    def summary(self) -> Literal["model", "list"]:
        """How the answer of several subtasks is written: by the supervisor's model, or
        (``metadata["orchestrator_summary"] == "list"``, set by a provider whose small model
        drops the facts when it summarizes) as the agents' reports listed, with no call."""
        return "list" if (self.model.metadata or {}).get("orchestrator_summary") == "list" \
            else "model"

    @property
    def structured(self) -> StructuredMethod:
        """How the supervisor is asked for a plan (``orchestrator.config.StructuredMethod``):
        what its model says (``metadata["orchestrator_structured"]``, set by a provider from
        the spec), else ``auto``."""
        return structured_method(self.model)

    def planner_runnable(self, plan_schema: type[BaseModel],
                         method: StructuredMethod | None = None, agents: Sequence[str] = ()
                         ) -> Runnable[LanguageModelInput, BaseMessage]:
        """The supervisor's model asked for a ``plan_schema`` reply (``method``, default
        :attr:`structured`): the schema as a forced tool (``tools``, ``auto``), as a
        JSON-schema ``response_format`` (the server constrains the reply to it), or as JSON
        mode (the schema is in the prompt). With ``agents`` (those the prompt shows), the
        JSON schema admits only them, each for a kind of subtask it can do."""
        method = method or self.structured
        name = plan_schema.__name__
        if method == "json_schema":
            # bound per call, not kept: each request's shortlist is another set of agents,
            # and a long-running server would keep one binding for every set it met
            schema = compact_schema(plan_schema.model_json_schema())
            if agents:
                schema = narrowed_plan_schema(
                    schema, agents, can_read=self.can_read, can_change=self.can_change,
                    max_subtasks=self.settings.max_subtasks)
            return self.model.bind(response_format={"type": "json_schema", "json_schema": {
                "name": name, "schema": schema, "strict": False}})
        key = f"planner:{method}"
        if key not in self._bound:
            if method == "json":
                self._bound[key] = self.model.bind(response_format={"type": "json_object"})
            else:
                self._bound[key] = self.model.bind_tools([model_tool_schema(plan_schema)],
                                                         tool_choice=name)
        return self._bound[key]


def structured_method(model: BaseChatModel) -> StructuredMethod:
    """How ``model`` is asked for structured replies: what its provider put in
    ``metadata["orchestrator_structured"]``, else ``auto``."""
    return cast(StructuredMethod, (model.metadata or {}).get("orchestrator_structured", "auto"))
