"""The StateGraph factory: plan -> execute -> synthesize (and respond), or plan or execute
-> respond when there is nothing to synthesize."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, cast

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from orchestrator.agents.spec import AgentSpec
from orchestrator.config import Settings, load_settings
from orchestrator.errors import ConfigError
from orchestrator.models import get_model
from orchestrator.nodes.approval import approval_node, pending_approvals
from orchestrator.nodes.executor import executor_node
from orchestrator.nodes.planner import planner_node
from orchestrator.nodes.synthesizer import respond_node, synthesizer_node
from orchestrator.playbooks import Playbook
from orchestrator.pricing import PriceTable
from orchestrator.retrieval.fusion import Fusion
from orchestrator.retrieval.search import Retriever
from orchestrator.retrieval.store import KnowledgeStore
from orchestrator.routing import AgentStatsBook
from orchestrator.state import EngineContext, NodeFn, OrchestratorState


def build_graph(
    model: BaseChatModel | str | None,
    agents: Sequence[AgentSpec],
    *,
    settings: Settings | None = None,
    agent_models: Mapping[str, BaseChatModel | str] | None = None,
    knowledge: KnowledgeStore | Retriever | None = None,
    playbooks: Sequence[Playbook] = (),
    routing: AgentStatsBook | None = None,
) -> StateGraph:
    """Build the orchestrator graph, uncompiled, so callers can add a checkpointer or nodes.

    Args:
        model: The supervisor's model (and the agents' default): an instance or a spec.
        agents: The specialists the planner may route to.
        settings: Limits and options; read from the environment when omitted.
        agent_models: Per-agent model overrides by agent name (beside ``AgentSpec.model``).
        knowledge: The knowledge base for the ``retrieve`` tool and the planner's context.
        playbooks: Workflows for rules and hybrid coordination (checked against ``agents``).
        routing: Agent statistics shared across graphs (adaptive routing); a fresh one if None.

    Example:
        ```python
        graph = build_graph("fake", it_ops_agents()).compile(checkpointer=InMemorySaver())
        ```
    """
    ctx = engine_context(model, agents, settings=settings, agent_models=agent_models,
                         knowledge=knowledge, playbooks=playbooks, routing=routing)
    return graph_from_context(ctx)


def graph_from_context(ctx: EngineContext) -> StateGraph:
    """The orchestrator graph over an engine context the caller keeps (to end runs)."""
    graph = StateGraph(OrchestratorState)
    synthesize, respond = synthesize_then_respond(ctx), respond_node(ctx)
    graph.add_node("plan", routed(planner_node(ctx), _after_plan),
                   destinations=("execute", "respond"))
    # The answer is written in the execute step itself: one graph step and one checkpoint
    # fewer per run. A run stopped while it is written goes through the step again on
    # resume; its subtasks are not redone (their results are checkpointed tasks).
    graph.add_node("execute", routed(executor_node(ctx), _after_execute,
                                     finish={"synthesize": synthesize, "respond": respond}),
                   destinations=("approve", END))
    graph.add_node("approve", approval_node(ctx))
    # Still nodes: "respond" after a plan with nothing to do, and both for a run that a
    # version which ran them as steps of their own stopped before them.
    graph.add_node("synthesize", synthesize)
    graph.add_node("respond", respond)
    graph.add_edge(START, "plan")
    graph.add_edge("approve", "execute")
    graph.add_edge("synthesize", END)
    graph.add_edge("respond", END)
    return graph


class RoutedNodeFn(Protocol):
    """A graph node that also names the next one."""

    def __call__(self, state: OrchestratorState) -> Awaitable[Command[str]]: ...


def routed(node: NodeFn, route: Callable[[OrchestratorState], str], *,
           finish: Mapping[str, NodeFn] | None = None) -> RoutedNodeFn:
    """``node``, which also says where the run goes next: ``route`` over the state with the
    node's update applied (these nodes write no key with a reducer that a route reads), as
    ``Command(goto=...)``. The same choice a conditional edge makes, without the edge's own
    machinery on every step (a fresh copy of every channel for it to read, and a runnable
    run with callbacks). A route found in ``finish`` is not a step of its own: its node
    runs here, on the state with the update applied, and the run ends with both updates
    (the later node's keys win: it read the earlier ones)."""

    async def step(state: OrchestratorState) -> Command[str]:
        update = await node(state)
        merged = cast(OrchestratorState, {**state, **update})
        goto = route(merged)
        last = (finish or {}).get(goto)
        if last is None:
            return Command(update=update, goto=goto)
        return Command(update={**update, **await last(merged)}, goto=END)

    return step


def synthesize_then_respond(ctx: EngineContext) -> NodeFn:
    """The synthesizer and the responder as one step: one checkpoint and one graph step
    fewer per run (a run interrupted in it writes its answer again on resume)."""
    synthesize, respond = synthesizer_node(ctx), respond_node(ctx)

    async def node(state: OrchestratorState) -> dict[str, Any]:
        written = await synthesize(state)
        return {**written, **await respond(cast(OrchestratorState, {**state, **written}))}

    return node


def engine_context(
    model: BaseChatModel | str | None,
    agents: Sequence[AgentSpec],
    *,
    settings: Settings | None = None,
    agent_models: Mapping[str, BaseChatModel | str] | None = None,
    knowledge: KnowledgeStore | Retriever | None = None,
    playbooks: Sequence[Playbook] = (),
    routing: AgentStatsBook | None = None,
) -> EngineContext:
    """Resolve models and check the agents and playbooks once, before any run."""
    if not agents:
        raise ConfigError("the orchestrator needs at least one agent")
    by_name: dict[str, AgentSpec] = {}
    for spec in agents:
        if spec.name in by_name:
            raise ConfigError(f"two agents are named {spec.name!r} "
                              f"({by_name[spec.name].source} and {spec.source})")
        by_name[spec.name] = spec
    overrides = dict(agent_models or {})
    unknown = sorted(set(overrides) - set(by_name))
    if unknown:
        raise ConfigError(f"model overrides for unknown agent(s): {', '.join(unknown)}")
    settings = settings or load_settings()
    resolved = {}
    names = {"": _model_label(model)}
    for spec in agents:
        choice = overrides.get(spec.name, spec.model)
        if choice is not None:
            resolved[spec.name] = get_model(choice)
            names[spec.name] = _model_label(choice)
    for playbook in playbooks:
        playbook.check_agents(by_name)
    if settings.max_cost_usd is not None and settings.prices is None:
        raise ConfigError("ORCHESTRATOR_MAX_COST_USD needs a price table: set "
                          "ORCHESTRATOR_PRICES to a JSON/YAML file of model prices")
    retriever = (Retriever(knowledge, fusion=fusion_from(settings))
                 if isinstance(knowledge, KnowledgeStore) else knowledge)
    ctx = EngineContext(
        model=get_model(model), agents=by_name, agent_models=resolved, settings=settings,
        retriever=retriever, playbooks=list(playbooks), model_names=names,
        routing=routing or AgentStatsBook(settings.routing_window, settings.probe_every),
        prices=PriceTable.load(settings.prices) if settings.prices else PriceTable())
    _offer_to_rules_models(ctx)
    return ctx


def _offer_to_rules_models(ctx: EngineContext) -> None:
    """A model that decides by rules (the offline fake) lacks what a language model brings:
    a sense of meaning and knowing what the ids in a request are. Offer it the knowledge
    base's embedding model (not loaded until used) and the agents' tools as data; any model
    with a ``learn_engine`` method takes them (the engine names no model)."""
    retriever = ctx.retriever

    def embedder() -> object:
        return retriever.store.embedder if retriever is not None else None

    def agent_tools() -> dict[str, list[dict[str, object]]]:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return {name: [convert_to_openai_tool(t) for t in ctx.agent_tools(spec).values()]
                for name, spec in ctx.agents.items()}

    for model in {id(m): m for m in (ctx.model, *ctx.agent_models.values())}.values():
        learn = getattr(model, "learn_engine", None)
        if callable(learn):
            learn(embedder=embedder if retriever is not None else None,
                  agent_tools=agent_tools)


def fusion_from(settings: Settings) -> Fusion:
    """The hybrid fusion the settings choose (RRF keeps its usual 50 candidates)."""
    return Fusion.named(settings.fusion)


def _model_label(model: BaseChatModel | str | None) -> str:
    if model is None or isinstance(model, str):
        return model or "fake"
    return str(getattr(model, "model_name", None) or getattr(model, "model", None)
               or model._llm_type)


def _after_plan(state: OrchestratorState) -> Literal["execute", "respond"]:
    plan = state.get("plan")
    return "execute" if plan and plan.get("subtasks") and not state.get("error") else "respond"


def _after_execute(state: OrchestratorState) -> Literal["approve", "synthesize", "respond"]:
    if pending_approvals(state):
        return "approve"
    # One subtask: its report is the answer (the short path saves a model call).
    return "respond" if len(state.get("results") or {}) == 1 else "synthesize"
