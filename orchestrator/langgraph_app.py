"""The orchestrator as a graph for LangGraph's API server (``langgraph dev``, Agent Chat UI).

``langgraph.json`` names :data:`graph`. The server sends ``{"messages": [...]}`` and keeps
the thread's turns with its own checkpointer; this graph takes the last human message as
the request, runs the orchestrator's graph on it (the engine the CLI builds from the
settings: model, agents, playbooks, knowledge, write journal, data folder), and adds the
answer to ``messages`` as an AI message.

The orchestrator's graph runs inside the ``orchestrate`` node, so the server sees only the
chat state below (its schema must be a ``typing_extensions.TypedDict`` for the server's
schema generation on Python 3.11), and a turn's approval pause and resume go through the
server's checkpointer like any interrupt.

Run it with ``langgraph dev`` from the project folder; the engine's SQLite calls (write
journal, ledger) run in threads, so the dev server's blocking-call guard stays on.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Annotated, Any

from langchain_core.messages import AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

from orchestrator.agents.registry import AgentRegistry
from orchestrator.config import DEFAULT_MODEL_SPEC, Settings, ensure_home, load_settings
from orchestrator.demo import demo_knowledge_lock, ensure_demo_knowledge
from orchestrator.errors import RequestError
from orchestrator.graph import engine_context, graph_from_context
from orchestrator.playbooks import default_playbooks
from orchestrator.retrieval.store import KnowledgeStore
from orchestrator.state import EngineContext
from orchestrator.storage import open_write_journal

__all__ = ["ChatInput", "ChatState", "build_chat_graph", "graph"]

#: Enough supersteps for a turn with several approval rounds (the service API's limit).
_RECURSION_LIMIT = 100


class ChatInput(TypedDict):
    """What a chat client sends: the new message(s) of the turn."""

    messages: Annotated[list[AnyMessage], add_messages]


class ChatState(TypedDict, total=False):
    """One chat thread as the server stores it."""

    messages: Annotated[list[AnyMessage], add_messages]
    request: str
    """This turn's request: the text of the last human message."""
    run_id: str
    """This turn's run id (events and budgets are keyed by it)."""
    answer: str


class ChatOutput(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    run_id: str
    answer: str


_engines: dict[str, tuple[EngineContext, CompiledStateGraph]] = {}
_engines_lock = threading.Lock()


def _engine_for(settings: Settings) -> tuple[EngineContext, CompiledStateGraph]:
    """The engine of ``settings`` and its graph (compiled without a checkpointer: it runs
    under the server's), built once per distinct settings (a data folder's engine stays
    warm across runs)."""
    key = settings.model_dump_json()
    with _engines_lock:
        if key not in _engines:
            _engines[key] = _build_engine(settings)
        return _engines[key]


def _build_engine(settings: Settings) -> tuple[EngineContext, CompiledStateGraph]:
    # What Orchestrator.from_settings and Orchestrator.__init__ set up for the CLI; this
    # module may not import the service API (tests/test_layers.py), so it is repeated here.
    ensure_home(settings)
    knowledge = None
    if settings.knowledge:
        knowledge = KnowledgeStore.from_settings(settings)
        ensure_demo_knowledge(knowledge, demo_knowledge_lock(settings))
    agents = list(AgentRegistry.default(settings.agents_dir, domains=settings.domains))
    ctx = engine_context(
        settings.model or DEFAULT_MODEL_SPEC, agents, settings=settings, knowledge=knowledge,
        playbooks=default_playbooks(settings, [a.name for a in agents]))
    ctx.journal = open_write_journal(settings.stores.writes)
    return ctx, graph_from_context(ctx).compile()


def _request_text(messages: list[AnyMessage], settings: Settings) -> str:
    """The text of the last human message; RequestError when there is none, it is empty, or
    it is over ``max_request_chars``."""
    last = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
    text = (last.text if last is not None else "").strip()
    if not text:
        raise RequestError("the request is empty: say what you need done")
    if len(text) > settings.max_request_chars:
        raise RequestError(f"the request is {len(text)} characters; the limit is "
                           f"{settings.max_request_chars}")
    return text


async def _start_turn(state: ChatState) -> dict[str, Any]:
    """The turn's request and run id, kept in the thread so a resumed turn reuses them."""
    text = _request_text(state.get("messages", []), load_settings())
    return {"request": text, "run_id": uuid.uuid4().hex, "answer": ""}


async def _orchestrate(state: ChatState, config: RunnableConfig) -> dict[str, Any]:
    """Run the orchestrator's graph on the turn; its new messages (the answer) come back."""
    ctx, orchestrator = await asyncio.to_thread(_engine_for, load_settings())
    messages = state.get("messages", [])
    run_id = state["run_id"]
    turn = {"messages": messages, "request": state["request"], "run_id": run_id,
            "event": None}
    try:
        values = await orchestrator.ainvoke(
            turn, {**config, "recursion_limit": _RECURSION_LIMIT})
    finally:
        ctx.end_run(run_id)  # its budget (a resumed turn rebuilds it from the state)
    known = {m.id for m in messages}
    return {"messages": [m for m in values.get("messages", []) if m.id not in known],
            "answer": values.get("answer", "")}


def build_chat_graph() -> StateGraph:
    """The chat graph, uncompiled: ``messages`` in, the answer added to ``messages`` out.

    Example:
        ```python
        chat = build_chat_graph().compile(checkpointer=InMemorySaver())
        config = {"configurable": {"thread_id": "t1"}}
        state = await chat.ainvoke({"messages": [("user", "check web-1")]}, config)
        print(state["messages"][-1].text)
        ```
    """
    builder = StateGraph(ChatState, input_schema=ChatInput, output_schema=ChatOutput)
    builder.add_node("start_turn", _start_turn)
    builder.add_node("orchestrate", _orchestrate)
    builder.add_edge(START, "start_turn")
    builder.add_edge("start_turn", "orchestrate")
    builder.add_edge("orchestrate", END)
    return builder


#: What ``langgraph.json`` names; no checkpointer: the server brings its own. The engine is
#: built from the settings (``ORCHESTRATOR_*``) on the first run, not on import.
graph: CompiledStateGraph = build_chat_graph().compile(name="orchestrator")
