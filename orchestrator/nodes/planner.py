"""The planner node: one structured call that turns the request into a validated Plan.

The Plan schema is bound as a forced tool once per engine (the standard tool-calling path
that ``with_structured_output`` also uses), and parsed here so that every problem,
malformed JSON included, can be sent back to the model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import ValidationError

from orchestrator.agents.spec import AgentSpec
from orchestrator.budget import RunBudget
from orchestrator.errors import (
    BudgetExceededError,
    ConfigError,
    ModelError,
    PlanError,
    RequestError,
    is_model_failure,
)
from orchestrator.events import PlanInvalidData, PlanMadeData, RunStartedData, emit
from orchestrator.models.meaning import IDENTIFIER
from orchestrator.nodes.plan_fit import fit_plan_off_loop
from orchestrator.nodes.shortlist import named_agents, playbook_agents, shortlist
from orchestrator.nodes.specialist import estimate_tokens, invoke_model
from orchestrator.plan import Plan, check_agents, check_kinds, copied_goals
from orchestrator.plan_schema import GOAL_MAX_CHARS
from orchestrator.playbooks import Playbook, find_for_event, find_for_request
from orchestrator.prompts import render_prompt, tagged
from orchestrator.request_mood import not_an_instruction, only_asks
from orchestrator.results import Usage
from orchestrator.retrieval.tool import format_hits
from orchestrator.state import EngineContext, NodeFn, OrchestratorState
from orchestrator.text_match import mentions
from orchestrator.text_tool_calls import json_in_text, tool_calls_in_text

logger = logging.getLogger(__name__)
T = TypeVar("T")


def planner_messages(ctx: EngineContext, state: OrchestratorState, context: str = "",
                     agents: Sequence[AgentSpec] | None = None) -> list[BaseMessage]:
    """System prompt with the agent catalog (``agents``, default all); the request with
    recent conversation turns and knowledge passages.

    What stays the same from request to request comes first (instructions, then the
    catalog), so a server's prompt cache can reuse it; the conversation, the passages and
    the request follow."""
    shown = ctx.agents.values() if agents is None else agents
    system = render_prompt("planner", agents="\n".join(ctx.catalog_line(s) for s in shown))
    parts = []
    history = format_history(state.get("messages", [])[:-1], ctx.settings.history_turns)
    if history:
        parts.append(tagged("history", history))
    if context:
        parts.append(tagged("context", context))
    parts.append(tagged("request", state["request"]))
    return [SystemMessage(system), HumanMessage("\n".join(parts))]


async def planner_inputs(ctx: EngineContext, state: OrchestratorState
                         ) -> tuple[str, list[AgentSpec]]:
    """The knowledge passages and the agents the planner is shown. Reading the knowledge
    base and embedding a shortlist block, so each goes to a thread, but only when there is
    one to read or a catalog to shorten (a thread hop costs the loop more than the check)."""
    searches = _searches_knowledge(ctx)
    shortens = len(ctx.agents) > ctx.shortlist_size
    if not searches and not shortens:
        return "", list(ctx.agents.values())
    return await asyncio.gather(
        _off_loop_if(searches, knowledge_context, ctx, state["request"]),
        _off_loop_if(shortens, planner_agents, ctx, state))


async def _off_loop_if(blocks: bool, fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args) if blocks else fn(*args)


def _searches_knowledge(ctx: EngineContext) -> bool:
    return ctx.retriever is not None and ctx.settings.planner_context_chunks != 0


def knowledge_context(ctx: EngineContext, request: str) -> str:
    """A few cited passages from the knowledge base about the request ('' when none).

    BM25 only: the planner needs the passages that name the request's services and terms,
    and keyword search finds those without the embedding model, which would cost seconds
    to load before the first plan even when no agent searches the knowledge base. Agents'
    own ``retrieve`` calls search hybrid.
    """
    limit = ctx.settings.planner_context_chunks
    if ctx.retriever is None or not _searches_knowledge(ctx):
        return ""
    present = set(ctx.retriever.store.collection_names())
    collections = [c for c in ctx.planner_collections() if c in present]
    if not collections:
        return ""
    hits = ctx.retriever.search(request, collections, k=limit, mode="bm25")
    return format_hits(hits) if hits else ""


def planner_agents(ctx: EngineContext, state: OrchestratorState) -> list[AgentSpec]:
    """The agents the planner is shown: the whole catalog, or in a catalog larger than
    ``planner_shortlist`` the shortlist for the request (and the user's previous turn, which
    "it" may refer to), the agents it names and a matching playbook's kept. An embedder
    that cannot load leaves the catalog whole. Blocks: call it off the event loop."""
    agents = list(ctx.agents.values())
    if len(agents) <= ctx.shortlist_size:
        return agents
    request = state["request"]
    event = state.get("event")
    earlier = [m.text for m in state.get("messages", [])[:-1] if isinstance(m, HumanMessage)]
    keep = [*named_agents(request, ctx.agents),
            *playbook_agents(ctx, request, event["name"] if event else None)]
    try:
        return shortlist(ctx, [request, *earlier[-1:]], keep=keep)
    except ConfigError as exc:
        logger.warning("planner shortlist unavailable, showing every agent: %s", exc)
        return agents


def format_history(messages: list[Any], turns: int) -> str:
    """The last ``turns`` user/assistant exchanges, answers shortened."""
    if turns <= 0:
        return ""
    lines: list[str] = []
    for message in messages[-2 * turns:]:
        if isinstance(message, HumanMessage):
            lines.append(f"user: {message.text}")
        elif isinstance(message, AIMessage) and message.text:
            text = message.text if len(message.text) <= 400 else message.text[:400] + " ..."
            lines.append(f"assistant: {text}")
    return "\n".join(lines)


async def make_plan(ctx: EngineContext, state: OrchestratorState, usage: Usage,
                    budget: RunBudget | None = None, notes: list[str] | None = None) -> Plan:
    """Ask the model for a plan; invalid plans go back with the error, a bounded number of
    times. What the engine changed in the model's plan goes into ``notes`` (a goal that
    copied a catalog line twice dropped; a subtask moved to the agent whose tools fit it; an
    act that only reads made an answer: see ``plan_fit``)."""
    notes = notes if notes is not None else []
    context, agents = await planner_inputs(ctx, state)
    messages = planner_messages(ctx, state, context, agents)
    sources = {**passages(context), **{f"the catalog line of {s.name}": ctx.catalog_line(s)
                                       for s in agents}}

    asked: set[str] = set()
    copies_sent_back: list[bool] = []

    question = only_asks(state["request"])

    def check(plan: Plan) -> Plan:
        check_agents(plan, ctx.agents)
        check_kinds(plan)
        if question:  # enforced, not asked for: a question never writes
            plan = plan.model_copy(update={"subtasks": [
                s.model_copy(update={"kind": "answer"}) for s in plan.subtasks]})
        check_can_act(ctx, plan)
        if copies_sent_back:  # sent back once and copied again: the copies go, not the plan
            plan = drop_copied(plan, state["request"], sources, notes)
        else:
            try:
                check_not_copied(plan, state["request"], sources)
            except PlanError:
                copies_sent_back.append(True)
                raise
        # An id the request named and no goal carries goes back once: a plan may drop one
        # for a reason ("do not touch web-1"), so a second plan without it stands.
        lost = [i for i in lost_ids(plan, state["request"]) if i not in asked]
        if lost:
            asked.update(lost)
            raise PlanError(f"the request names {', '.join(lost)}, which no subtask goal "
                            "carries: write each id into the goal of the subtask that needs "
                            "it (leave it out only if no subtask is about it)")
        if len(plan.subtasks) > ctx.settings.max_subtasks:
            raise PlanError(f"the plan has {len(plan.subtasks)} subtasks; at most "
                            f"{ctx.settings.max_subtasks} are allowed: merge related work")
        return plan

    plan = await plan_with_repairs(ctx, messages, state["run_id"], usage, budget,
                                   lambda raw: check(parse_plan(raw, ctx.agents)),
                                   agents=[s.name for s in agents])
    fitted, moved = await fit_plan_off_loop(ctx, plan, agents, state["request"])
    notes.extend(moved)
    return fitted


async def plan_with_repairs(
    ctx: EngineContext, messages: list[BaseMessage], run_id: str, usage: Usage,
    budget: RunBudget | None, accept: Callable[[AIMessage], Plan], *,
    agents: Sequence[str] = (),
) -> Plan:
    """Call the supervisor until ``accept`` takes its reply; a :class:`PlanError` from
    ``accept`` goes back to the model, at most ``max_plan_repairs`` times.

    The plan is asked for the way the model's server supports (``ctx.structured``): in
    ``auto``, a first reply that carries no plan at all (no Plan call, no plan written as
    JSON) means the server ignores function calling, and this planning's next attempts ask
    with a JSON-schema ``response_format`` instead (the next run tries function calling
    again: one odd reply must not change how every later run asks). ``agents`` are those
    the prompt shows: a JSON schema admits only them (see ``plan_schema``)."""
    method = ctx.structured
    if method == "json":
        messages = [*messages, SystemMessage(_json_mode_note())]
    planner = ctx.planner_runnable(Plan, method, agents)
    last_error = ""
    for attempt in range(ctx.settings.max_plan_repairs + 1):
        if budget is not None:
            try:
                budget.begin_call(estimate_tokens(messages))
            except BudgetExceededError as exc:
                raise PlanError(f"budget used up before a valid plan: {exc}") from None
        try:
            limit = budget.remaining_s() if budget is not None else None
            raw = await invoke_model(planner, messages, usage, timeout=limit)
        except TimeoutError as exc:
            left = budget.remaining_s() if budget is not None else None
            if budget is None or left is None or left > 0.01:  # the provider's own timeout
                raise ModelError(f"the supervisor model call failed: TimeoutError: {exc}"
                                 ) from exc
            budget.expire_wall()
            raise PlanError(f"the run's time ran out while the supervisor planned "
                            f"({budget.hit})") from None
        except Exception as exc:
            if not is_model_failure(exc):
                logger.exception("engine error while the supervisor planned")
                raise
            raise ModelError(f"the supervisor model call failed: {type(exc).__name__}: {exc}"
                             ) from exc
        finally:
            if budget is not None:
                budget.end_call()
        if not isinstance(raw, AIMessage):
            raise ModelError(f"the supervisor model returned {type(raw).__name__}, not a message")
        usage.add_message(raw.usage_metadata)
        if budget is not None:
            budget.charge(ctx.model_name(), raw.usage_metadata)
        try:
            if (raw.response_metadata or {}).get("finish_reason") == "length":
                raise PlanError("the reply was cut off at the model's token limit "
                                "(max_tokens): write a shorter plan")
            return accept(raw)
        except PlanError as exc:
            last_error = str(exc)
        emit("plan_invalid", run_id, data=PlanInvalidData(error=last_error, attempt=attempt + 1))
        if method == "auto" and not raw.tool_calls and _written_plan(raw) is None:
            method = "json_schema"  # this server seems not to do function calling
            planner = ctx.planner_runnable(Plan, method, agents)
            messages = [*messages, raw, HumanMessage(render_prompt("plan_repair",
                                                                   error=last_error))]
            continue
        messages = [*messages, *_repair_messages(raw, last_error)]
    raise PlanError(
        f"the model did not produce a valid plan after {ctx.settings.max_plan_repairs + 1} "
        f"attempt(s): {last_error}"
    )


def lost_ids(plan: Plan, request: str) -> list[str]:
    """The identifiers the request names that no subtask goal carries (the agent doing it
    would guess which one; seen: a tool schema's example id)."""
    if not plan.subtasks:
        return []
    goals = " ".join(s.goal for s in plan.subtasks).lower()
    return [i for i in dict.fromkeys(IDENTIFIER.findall(request))
            if not mentions(goals, i)]


def passages(context: str) -> dict[str, str]:
    """The knowledge passages of a planner ``<context>`` by citation (``[source#n]``)."""
    found = re.findall(r"^\[([^\]\s]+#\d+)\]([^\n]*(?:\n(?!\[[^\]\s]+#\d+\])[^\n]*)*)",
                       context, re.MULTILINE)
    return {f"the knowledge passage [{cite}]": text for cite, text in found}


def copied_work(plan: Plan, request: str, sources: dict[str, str]) -> list[tuple[str, str]]:
    """:func:`copied_goals`, less a goal that copies an agent's catalog line and names an id
    the request gave ("Find the root cause of an outage from logs and metrics for web-4"):
    that is the agent's own work on what the request is about."""
    ids = {i.lower() for i in IDENTIFIER.findall(request)}
    goals = {s.id: s.goal.lower() for s in plan.subtasks}
    return [(i, label) for i, label in copied_goals(plan, request, sources)
            if not (label.startswith("the catalog line") and any(
                mentions(goals[i], x) for x in ids))]


def check_not_copied(plan: Plan, request: str, sources: dict[str, str]) -> None:
    """Raise :class:`PlanError` for a goal that copies a knowledge passage or a catalog
    line (seen with a small model: the runbook's steps became nine subtasks): passages
    inform a plan, the request's work makes its subtasks."""
    copied = copied_work(plan, request, sources)
    if copied:
        raise PlanError("; ".join(f"subtask {i!r} copies {label} as its goal" for i, label
                                  in copied) + ": a goal is work the request asks for, in its "
                        "own words; use passages only for facts in it, with the citation")


def drop_copied(plan: Plan, request: str, sources: dict[str, str], notes: list[str]) -> Plan:
    """``plan`` without the subtasks whose goals copy a source and that no other subtask
    needs (one that others wait for stays: its agent still does the work the plan needs);
    when every subtask would go, the first alone with the request as its goal (the request
    is the work). A note says what went."""
    copied = dict(copied_work(plan, request, sources))
    needed = {d for s in plan.subtasks for d in s.depends_on}
    gone = {i: label for i, label in copied.items() if i not in needed}
    if not gone:
        return plan
    kept = [s for s in plan.subtasks if s.id not in gone]
    if not kept:
        first = plan.subtasks[0]
        notes.append(f"every goal copied a passage or catalog line again: subtask "
                     f"{first.id!r} alone, with the request as its goal")
        return plan.model_copy(update={"subtasks": [first.model_copy(update={
            "goal": request.strip()[:GOAL_MAX_CHARS], "depends_on": []})]})
    notes.append("; ".join(f"subtask {i!r} dropped: it copied {label} again"
                           for i, label in gone.items()))
    return plan.model_copy(update={"subtasks": kept})


def check_can_act(ctx: EngineContext, plan: Plan) -> None:
    """Raise :class:`PlanError` for an act subtask given to an agent that cannot change
    anything (it would report the change as done without making it), or an answer subtask
    given to an agent whose tools all write (it would answer from nothing)."""
    wrong = [f"subtask {s.id!r} is 'act' but {s.agent} has no tool that changes anything"
             + (f" ({ctx.toolset_problems[s.agent]})" if s.agent in ctx.toolset_problems
                else "")
             for s in plan.subtasks if s.kind == "act" and not ctx.can_change(s.agent)]
    if wrong:
        raise PlanError("; ".join(wrong) + ": give it to an agent whose tools change "
                        "things, or make it 'answer'")
    blind = [f"subtask {s.id!r} is 'answer' but {s.agent} has no tool that reads"
             + (f" ({ctx.toolset_problems[s.agent]})" if s.agent in ctx.toolset_problems
                else "")
             for s in plan.subtasks if s.kind == "answer" and not ctx.can_read(s.agent)]
    if blind:
        raise PlanError("; ".join(blind) + ": give it to an agent that can look it up, or "
                        "make it 'act' if the user asked for a change")


def plan_arguments(raw: AIMessage) -> dict[str, Any]:
    """The arguments of the reply's first Plan tool call; PlanError when there is none."""
    call = next((c for c in raw.tool_calls if c["name"] == Plan.__name__), None)
    if call is None:
        bad = next((c for c in raw.invalid_tool_calls if c.get("name") == Plan.__name__), None)
        if bad is not None:
            raise PlanError(f"the Plan arguments are not valid JSON: {bad.get('error') or ''}")
        written = _written_plan(raw)
        if written is not None:
            return written
        raise PlanError("no Plan tool call in the reply")
    return dict(call["args"])


def _written_plan(raw: AIMessage) -> dict[str, Any] | None:
    """A plan the reply wrote as text: a Plan tool call written out (a server that ignores
    forced function calling), or the plan object itself (JSON-schema or JSON mode)."""
    written = next((c for c in tool_calls_in_text(raw.text) if c["name"] == Plan.__name__),
                   None)
    if written is not None:
        return dict(written["args"])
    data = json_in_text(raw.text)
    # {"answer": ...} alone is a plan too: no agent is needed (or, replanning, none can).
    return data if isinstance(data, dict) and ("subtasks" in data or "answer" in data) else None


def _json_mode_note() -> str:
    schema = json.dumps(Plan.model_json_schema(), separators=(",", ":"))
    return ("Reply with one JSON object, nothing else, that follows this JSON schema: "
            f"{schema}")


def validate_plan(args: dict[str, Any], agents: Collection[str] = ()) -> Plan:
    """A Plan from tool-call arguments; PlanError says what is wrong with them. ``agents``:
    the known agents' names (a dependency on one is read as on its subtask)."""
    try:
        return Plan.model_validate(_dependencies_by_id(args, agents))
    except ValidationError as exc:
        raise PlanError("; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'plan'}: {e['msg']}" for e in exc.errors()
        )) from None


def _dependencies_by_id(args: dict[str, Any], agents: Collection[str] = ()
                        ) -> dict[str, Any]:
    """``args`` with a dependency written as an agent's name (seen: ``"depends_on":
    ["monitoring"]`` from a 1.5B model, repeated after every repair) turned into the id of
    that agent's only subtask, or dropped when one of ``agents`` has no subtask in the plan
    (there is nothing to wait for); a subtask's dependency on itself is dropped too.
    Anything else (a mistyped id) is left for validation."""
    subtasks = args.get("subtasks")
    if not isinstance(subtasks, list) or not all(isinstance(s, dict) for s in subtasks):
        return args
    ids = {str(s.get("id")) for s in subtasks}
    by_agent: dict[str, list[str]] = {}
    for sub in subtasks:
        by_agent.setdefault(str(sub.get("agent")), []).append(str(sub.get("id")))
    fixed = []
    for sub in subtasks:
        deps = sub.get("depends_on")
        if isinstance(deps, list) and all(isinstance(d, str) for d in deps):
            named = [by_agent[d][0] if d not in ids and len(by_agent.get(d, [])) == 1 else d
                     for d in deps if d in ids or d in by_agent or d not in agents]
            sub = {**sub, "depends_on": [d for d in dict.fromkeys(named) if d != sub.get("id")]}
        fixed.append(sub)
    return {**args, "subtasks": fixed}


def parse_plan(raw: AIMessage, agents: Collection[str] = ()) -> Plan:
    """The Plan in the reply's first Plan tool call; PlanError says what is wrong with it."""
    return validate_plan(plan_arguments(raw), agents)


def _repair_messages(raw: AIMessage, error: str) -> list[BaseMessage]:
    feedback = render_prompt("plan_repair", error=error)
    if raw.tool_calls:
        # Answer each tool call so the conversation stays valid for strict APIs.
        return [raw, *(ToolMessage(feedback, tool_call_id=c["id"] or "plan", status="error")
                       for c in raw.tool_calls)]
    return [raw, HumanMessage(feedback)]


def planner_node(ctx: EngineContext) -> NodeFn:
    """Build the planner node: a playbook plan (rules), else the supervisor's (adaptive)."""

    async def plan(state: OrchestratorState) -> dict[str, Any]:
        run_id = state["run_id"]
        event = state.get("event")
        emit("run_started", run_id, data=RunStartedData(
            request=state["request"], event=event, coordination=ctx.settings.coordination))
        usage = Usage()
        budget = ctx.budget(run_id)
        started = time.time()
        adjusted: list[str] = []
        reset: dict[str, Any] = {"results": {}, "answer": "", "error": None, "plan": None,
                                 "replans": 0, "budget_hit": None, "approvals": {},
                                 "wall_used_s": None, "inputs": {}}
        try:
            await ctx.load_toolsets()  # MCP servers' tools: started on first use
            made, mode, inputs = await choose_plan(ctx, state, usage, budget, adjusted)
        except (PlanError, RequestError, ModelError) as exc:
            # A supervisor model that failed is a failed run with the reason, not a crash.
            return {**reset, "error": str(exc), "supervisor_usage": usage.to_dict(),
                    "mode": "none", "budget_hit": budget.hit,
                    "answer": f"Sorry, I could not plan this request: {exc}"}
        emit("plan_made", run_id, usage=usage.to_dict(), data=PlanMadeData(
            plan=made.model_dump(), mode=mode, elapsed_s=round(time.time() - started, 4),
            adjusted=adjusted))
        update = {**reset, "plan": made.model_dump(), "supervisor_usage": usage.to_dict(),
                  "mode": mode, "inputs": inputs}
        if not made.subtasks:
            update["answer"] = made.answer or ""
        return update

    return plan


async def choose_plan(ctx: EngineContext, state: OrchestratorState, usage: Usage,
                      budget: RunBudget, adjusted: list[str] | None = None
                      ) -> tuple[Plan, str, dict[str, Any]]:
    """The plan, how it was made (``playbook:<name>`` or ``supervisor``), and its inputs
    (a playbook's data: defaults, then the event data or the pattern's captures); what the
    engine changed in a supervisor's plan goes into ``adjusted``.

    rules: only playbooks; hybrid: a matching playbook first, else the supervisor;
    adaptive: always the supervisor (an event becomes a request it plans).
    """
    mode = ctx.settings.coordination
    event = state.get("event")
    # A pattern that matches "do not book ..." or "should we book ...?" must not run the
    # playbook: only an instruction does (an event is one by definition).
    why_not = None if event else not_an_instruction(state["request"])
    if mode != "adaptive" and why_not is None:
        found = _matching_playbook(ctx, state)
        if found is not None:
            playbook, data = found
            inputs = {**playbook.defaults, **data}
            return (playbook.plan_for(data, state["request"]), f"playbook:{playbook.name}",
                    inputs)
    if mode == "rules":
        what = f"event {event['name']!r}" if event else "this request"
        if why_not is not None:
            raise PlanError(f"no playbook runs for this request in rules mode: {why_not}")
        names = ", ".join(p.name for p in ctx.playbooks) or "none"
        raise PlanError(f"no playbook handles {what} in rules mode (playbooks: {names}); "
                        "use --coordination hybrid to let the supervisor plan it")
    data = dict((event or {}).get("data") or {})
    return await make_plan(ctx, state, usage, budget, adjusted), "supervisor", data


def _matching_playbook(ctx: EngineContext, state: OrchestratorState
                       ) -> tuple[Playbook, dict[str, Any]] | None:
    event = state.get("event")
    if event:
        playbook = find_for_event(ctx.playbooks, event["name"])
        return (playbook, dict(event.get("data") or {})) if playbook else None
    return find_for_request(ctx.playbooks, state["request"])
