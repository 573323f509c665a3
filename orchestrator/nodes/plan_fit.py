"""A plan checked against what the agents' tools do, by meaning.

A small model picks agents by their names and marks kinds by habit. Seen with a 1.5B model:
"show the route of web-2" given to the agent that checks health (which then checked health),
"page the on-call" given to customer support, "check the stock of sku-3" and "list
suspicious transactions" planned as changes (the agent read, made no change, and the
subtask failed). Each time another agent's tool, or one of the agent's own reading tools,
said plainly what the goal asks.

:func:`fit_plan` compares each goal with the tools of the agents the planner was shown, with
the knowledge base's embedding model (the offline model's router, :class:`AgentRouter`):

- a subtask moves to another agent only when that agent's card and tools fit the goal
  clearly (:data:`CONFIDENT`) and much better than the chosen one's
  (:data:`REROUTE_MARGIN`), or when that agent's tools take the id the goal names and the
  chosen one's take none; an
  agent the request names is never moved away from, and the chosen agent stays first among
  the alternatives;
- an ``act`` subtask becomes ``answer`` when its goal does not start with the verb of one of
  its agent's changing tools ("set the stock ...") and either starts with the verb of one of
  its reading tools ("check the documents of cl-3": check_documents) or fits a reading tool
  better than any changing one by :data:`KIND_MARGIN`. Reading instead of writing is the
  safe direction: an ``answer`` is never turned into an ``act``;
- when the request is one command that names its change by a changing tool's verb
  ("refund order o-1002"), the acts of agents without such a tool are dropped: the model
  added them.

Each move is returned as a note for the ``plan_made`` event. The plan is left as it is
without an embedding model (the hashing test embedder), and when neither the knowledge base
nor the shortlist loaded one for this plan (loading one takes seconds).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from langchain_core.utils.function_calling import convert_to_openai_tool

from orchestrator.agents.policy import is_read_only
from orchestrator.agents.spec import AgentSpec
from orchestrator.errors import ConfigError
from orchestrator.models.meaning import (
    CONFIDENT,
    AgentRouter,
    Catalog,
    Meaning,
    id_fit,
    meaning_for,
    tool_text,
)
from orchestrator.nodes.shortlist import named_agents, query_parts
from orchestrator.plan import Plan, Subtask
from orchestrator.request_mood import LEADING_FILLER
from orchestrator.state import EngineContext
from orchestrator.text_match import tokens

__all__ = ["KIND_MARGIN", "REROUTE_MARGIN", "embeds_to_fit", "fit_plan", "fit_plan_off_loop"]

logger = logging.getLogger(__name__)

REROUTE_MARGIN = 0.15
"""How much better (router score: mostly cosine similarity) another agent must fit a goal
before the subtask moves to it: a near tie is the planner's call."""
KIND_MARGIN = 0.1
"""How much better a reading tool must fit an ``act`` goal than every changing tool of the
agent before the subtask only reads."""


def embeds_to_fit(ctx: EngineContext, plan: Plan, shown: Sequence[AgentSpec]) -> bool:
    """Whether :func:`fit_plan` would embed (and so block) for ``plan``: not when the plan
    is empty, nor when no embedding model is loaded for anything else (no knowledge base)
    and the planner was shown every agent: one is not loaded for this alone."""
    return bool(plan.subtasks) and (ctx.retriever is not None or len(shown) < len(ctx.agents))


async def fit_plan_off_loop(ctx: EngineContext, plan: Plan, shown: Sequence[AgentSpec],
                            request: str, *, kinds: bool = True) -> tuple[Plan, list[str]]:
    """:func:`fit_plan` in a thread when it embeds, else at once (a thread hop costs the
    event loop more than the check)."""
    if not embeds_to_fit(ctx, plan, shown):
        return plan, []
    return await asyncio.to_thread(fit_plan, ctx, plan, shown, request, kinds=kinds)


def fit_plan(ctx: EngineContext, plan: Plan, shown: Sequence[AgentSpec], request: str, *,
             kinds: bool = True) -> tuple[Plan, list[str]]:
    """``plan`` with subtasks moved to the agent whose tools do what the goal says and (with
    ``kinds``) acts that only read made answers (see the module), and a note per change.
    Blocks while it embeds: call it off the event loop."""
    if not embeds_to_fit(ctx, plan, shown):
        return plan, []
    meaning = _meaning(ctx)
    if meaning is None:
        return plan, []
    tools = {s.name: [convert_to_openai_tool(t) for t in ctx.agent_tools(s).values()]
             for s in shown}
    catalog: Catalog = [(s.name, s.description, ", ".join(s.skills),
                         ", ".join(t["function"]["name"] for t in tools[s.name]
                                   if _reads(ctx, s, t)),
                         ", ".join(t["function"]["name"] for t in tools[s.name]
                                   if not _reads(ctx, s, t)))
                        for s in shown]
    router = AgentRouter(catalog, meaning, tools)
    router.prefetch([s.goal for s in plan.subtasks])
    named = set(named_agents(request, [s.name for s in shown]))
    notes: list[str] = []
    subtasks: list[Subtask] = []
    for subtask in plan.subtasks:
        moved = subtask
        if subtask.agent not in named:
            moved = _reroute(router, catalog, moved, ctx.subtask_kind(moved), notes)
        if kinds and ctx.subtask_kind(moved) == "act" and moved.agent in tools:
            moved = _read_only(meaning, tools[moved.agent], ctx, moved, notes)
        subtasks.append(moved)
    if kinds:
        subtasks = _only_the_named_change(ctx, subtasks, request, shown, notes)
    if not notes:
        return plan, []
    return plan.model_copy(update={"subtasks": subtasks}), notes


def _only_the_named_change(ctx: EngineContext, subtasks: list[Subtask], request: str,
                           shown: Sequence[AgentSpec], notes: list[str]) -> list[Subtask]:
    """The subtasks without the changes a one-action command did not ask for: when the
    request is one clause that starts with the verb of a changing tool ("estimate the cost
    of ap-1": estimate_visit_cost) and the plan makes that change, an ``act`` of an agent
    without such a tool is the model's addition (seen with a 1.5B model: diagnostics
    ordered and a visit summary written, completing the visit, for a cost estimate), and is
    dropped. Work a policy adds to an action belongs in a playbook."""
    if len(query_parts([request])) > 1:
        return subtasks  # several clauses: each may ask for its own change
    verb = _leading_verb(request)
    named = {spec.name for spec in shown for tool in ctx.agent_tools(spec).values()
             if verb and not is_read_only(tool)
             and _leading_verb(tool.name.replace("_", " ")) == verb}
    acts = [s for s in subtasks if ctx.subtask_kind(s) == "act"]
    if not named or not any(s.agent in named for s in acts):
        return subtasks
    extra = {s.id for s in acts if s.agent not in named}
    if not extra:
        return subtasks
    notes.append(f"dropped {', '.join(sorted(extra))}: the request asks for one change "
                 f"('{verb}'), and those make others")
    return [s.model_copy(update={"depends_on": [d for d in s.depends_on if d not in extra]})
            for s in subtasks if s.id not in extra]


def _meaning(ctx: EngineContext) -> Meaning | None:
    try:
        meaning = meaning_for(ctx.embedder())
    except (ConfigError, OSError, ImportError) as exc:
        logger.warning("the plan is not checked by meaning: no embedding model (%s)", exc)
        return None
    return meaning if meaning is not None and not meaning.broken else None


def _reads(ctx: EngineContext, spec: AgentSpec, tool: dict[str, Any]) -> bool:
    return is_read_only(ctx.agent_tools(spec)[tool["function"]["name"]])


def _reroute(router: AgentRouter, catalog: Catalog, subtask: Subtask, kind: str,
             notes: list[str]) -> Subtask:
    """The subtask given to the agent that fits its goal clearly better, if one does (among
    those that can do its kind)."""
    able = [e for e in catalog if (e[4] if kind == "act" else e[3])]
    found = router.scores(subtask.goal, able)
    if found is None:
        return subtask
    scores, _ = found
    best = max(scores, key=lambda n: scores[n])
    if best == subtask.agent or scores[best] < CONFIDENT:
        return subtask
    chosen = scores.get(subtask.agent)
    if chosen is None and id_fit(subtask.goal, router.tools.get(subtask.agent, ())):
        return subtask  # its tools take the goal's id, if less exactly than best's
    if chosen is not None and scores[best] - chosen < REROUTE_MARGIN:
        return subtask
    why = (f"fits {best}'s tools ({scores[best]:.2f} against {chosen:.2f})"
           if chosen is not None else f"names an id that only {best}'s tools take")
    notes.append(f"subtask {subtask.id!r} moved from {subtask.agent} to {best}: its goal {why}")
    alternatives = [a for a in dict.fromkeys([subtask.agent, *subtask.alternatives]) if a != best]
    return subtask.model_copy(update={"agent": best, "alternatives": alternatives})


def _read_only(meaning: Meaning, tools: list[dict[str, Any]], ctx: EngineContext,
               subtask: Subtask, notes: list[str]) -> Subtask:
    """The act subtask as an answer when a reading tool of its agent fits its goal clearly
    better than every changing one."""
    spec = ctx.agents.get(subtask.agent)
    if spec is None:
        return subtask
    reads = [t for t in tools if _reads(ctx, spec, t)]
    changes = [t for t in tools if not _reads(ctx, spec, t)]
    if not reads or not changes:
        return subtask
    verb = _leading_verb(subtask.goal)
    if verb and verb in {_tool_verb(t) for t in changes}:
        return subtask  # "set the stock of sku-3 ...": says the change outright
    same = next((t for t in reads if verb and _tool_verb(t) == verb), None)
    if same is not None:  # "check the onboarding documents of cl-3": check_documents
        notes.append(f"subtask {subtask.id!r} only reads: its goal starts with the verb of "
                     f"{subtask.agent}'s reading tool {same['function']['name']}")
        return subtask.model_copy(update={"kind": "answer"})
    found = meaning.similarities(subtask.goal, [tool_text(t) for t in [*reads, *changes]])
    if not found:
        return subtask
    best_read, best_change = max(found[:len(reads)]), max(found[len(reads):])
    if best_read - best_change < KIND_MARGIN:
        return subtask
    name = reads[found.index(best_read)]["function"]["name"]
    notes.append(f"subtask {subtask.id!r} only reads: its goal fits {subtask.agent}'s reading "
                 f"tool {name} ({best_read:.2f}) better than any that changes things "
                 f"({best_change:.2f})")
    return subtask.model_copy(update={"kind": "answer"})


def _tool_verb(tool: dict[str, Any]) -> str:
    return _leading_verb(str(tool["function"]["name"]).replace("_", " "))


def _leading_verb(text: str) -> str:
    found = tokens(LEADING_FILLER.sub("", text))
    return found[0] if found else ""
