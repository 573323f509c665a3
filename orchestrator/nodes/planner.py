"""The planner node: one structured call that turns the request into a validated Plan.

The Plan schema is bound as a forced tool once per engine (the standard tool-calling path
that ``with_structured_output`` also uses), and parsed here so that every problem,
malformed JSON included, can be sent back to the model.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import ValidationError

from orchestrator.errors import ModelError, PlanError
from orchestrator.events import emit
from orchestrator.plan import Plan, check_agents
from orchestrator.results import Usage
from orchestrator.state import EngineContext, NodeFn, OrchestratorState
from prompts import render_prompt, tagged
from retrieval.tool import format_hits


def planner_messages(ctx: EngineContext, state: OrchestratorState, context: str = ""
                     ) -> list[BaseMessage]:
    """System prompt with the agent catalog; the request with recent conversation turns."""
    catalog = "\n".join(spec.catalog_line() for spec in ctx.agents.values())
    system = render_prompt("planner", agents=catalog)
    parts = []
    history = format_history(state.get("messages", [])[:-1], ctx.settings.history_turns)
    if history:
        parts.append(tagged("history", history))
    if context:
        parts.append(tagged("context", context))
    parts.append(tagged("request", state["request"]))
    return [SystemMessage(system), HumanMessage("\n".join(parts))]


def knowledge_context(ctx: EngineContext, request: str) -> str:
    """A few cited passages from the knowledge base about the request ('' when none)."""
    limit = ctx.settings.planner_context_chunks
    if ctx.retriever is None or limit == 0:
        return ""
    present = set(ctx.retriever.store.collection_names())
    collections = [c for c in ctx.planner_collections() if c in present]
    if not collections:
        return ""
    return format_hits(ctx.retriever.search(request, collections, k=limit))


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


async def make_plan(ctx: EngineContext, state: OrchestratorState, usage: Usage) -> Plan:
    """Ask the model for a plan; invalid plans go back with the error, a bounded number of times."""
    planner = ctx.planner_runnable(Plan)
    # Retrieval embeds the query on the CPU: keep it off the event loop.
    context = await asyncio.to_thread(knowledge_context, ctx, state["request"])
    messages = planner_messages(ctx, state, context)
    run_id = state["run_id"]
    last_error = ""
    for attempt in range(ctx.settings.max_plan_repairs + 1):
        try:
            raw = await planner.ainvoke(messages)
        except Exception as exc:
            raise ModelError(f"the supervisor model call failed: {type(exc).__name__}: {exc}"
                             ) from exc
        if not isinstance(raw, AIMessage):
            raise ModelError(f"the supervisor model returned {type(raw).__name__}, not a message")
        usage.add_message(raw.usage_metadata)
        try:
            plan = parse_plan(raw)
            check_agents(plan, ctx.agents)
            if len(plan.subtasks) > ctx.settings.max_subtasks:
                raise PlanError(f"the plan has {len(plan.subtasks)} subtasks; at most "
                                f"{ctx.settings.max_subtasks} are allowed: merge related work")
            return plan
        except PlanError as exc:
            last_error = str(exc)
        emit("plan_invalid", run_id, data={"error": last_error, "attempt": attempt + 1})
        messages = [*messages, *_repair_messages(raw, last_error)]
    raise PlanError(
        f"the model did not produce a valid plan after {ctx.settings.max_plan_repairs + 1} "
        f"attempt(s): {last_error}"
    )


def parse_plan(raw: AIMessage) -> Plan:
    """The Plan in the reply's first Plan tool call; PlanError says what is wrong with it."""
    call = next((c for c in raw.tool_calls if c["name"] == Plan.__name__), None)
    if call is None:
        bad = next((c for c in raw.invalid_tool_calls if c.get("name") == Plan.__name__), None)
        if bad is not None:
            raise PlanError(f"the Plan arguments are not valid JSON: {bad.get('error') or ''}")
        raise PlanError("no Plan tool call in the reply")
    try:
        return Plan.model_validate(call["args"])
    except ValidationError as exc:
        raise PlanError("; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'plan'}: {e['msg']}" for e in exc.errors()
        )) from None


def _repair_messages(raw: AIMessage, error: str) -> list[BaseMessage]:
    feedback = render_prompt("plan_repair", error=error)
    if raw.tool_calls:
        # Answer each tool call so the conversation stays valid for strict APIs.
        return [raw, *(ToolMessage(feedback, tool_call_id=c["id"] or "plan", status="error")
                       for c in raw.tool_calls)]
    return [raw, HumanMessage(feedback)]


def planner_node(ctx: EngineContext) -> NodeFn:
    """Build the planner node for ``ctx``."""

    async def plan(state: OrchestratorState) -> dict[str, Any]:
        run_id = state["run_id"]
        emit("run_started", run_id, data={"request": state["request"]})
        usage = Usage()
        started = time.time()
        reset: dict[str, Any] = {"results": {}, "answer": "", "error": None, "plan": None}
        try:
            made = await make_plan(ctx, state, usage)
        except PlanError as exc:
            return {**reset, "error": str(exc), "supervisor_usage": usage.to_dict(),
                    "answer": f"Sorry, I could not plan this request: {exc}"}
        emit("plan_made", run_id, usage=usage.to_dict(), data={
            "plan": made.model_dump(), "elapsed_s": round(time.time() - started, 4)})
        update = {**reset, "plan": made.model_dump(), "supervisor_usage": usage.to_dict()}
        if not made.subtasks:
            update["answer"] = made.answer or ""
        return update

    return plan
