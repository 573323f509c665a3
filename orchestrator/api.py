"""The ``Orchestrator`` facade: run requests, stream events, keep conversations."""

from __future__ import annotations

import asyncio
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
    nullcontext,
)
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot

from agents.registry import AgentRegistry
from agents.spec import AgentSpec
from orchestrator.config import Settings, load_settings
from orchestrator.domain_db import use_domain_db
from orchestrator.errors import RequestError
from orchestrator.events import EVENT_MARKER, Event, EventSink
from orchestrator.graph import build_graph
from orchestrator.plan import Plan
from orchestrator.playbooks import Playbook, default_playbooks
from orchestrator.results import RunResult, RunStatus, SubtaskResult, Usage
from orchestrator.routing import AgentStatsBook
from orchestrator.runs import RunStore
from orchestrator.telemetry import default_tracer_provider, export_run
from retrieval.search import Retriever
from retrieval.store import KnowledgeStore

_DONE = object()


class Orchestrator:
    """Plan a request, run specialists in parallel, and answer; one object per configuration.

    Example:
        ```python
        orch = Orchestrator(model="fake")
        result = orch.run("web-3 is down: find the root cause and alert the on-call team")
        print(result.answer, result.usage.llm_calls)
        ```

    Args:
        model: Supervisor model (and the agents' default): a ``BaseChatModel`` or a spec
            such as ``"fake"`` or ``"openai:gpt-4o-mini"``. Defaults to ``settings.model``,
            then the offline fake model.
        agents: The specialists; defaults to the registry (built-ins, plugins, cards).
        checkpointer: Where conversations persist: a LangGraph checkpointer, a path to a
            SQLite file, or None for in-memory threads.
        settings: Limits and folders; read from ``ORCHESTRATOR_*`` variables when omitted.
        agent_models: Per-agent model overrides, by agent name.
        domain_db: The business-systems database the tools use (default: in the data folder).
        knowledge: The knowledge base (a KnowledgeStore or Retriever); by default the store
            the settings name, unless ``settings.knowledge`` is off.
        playbooks: Predefined workflows; by default the built-in ones whose agents are all
            enabled, plus those in ``settings.playbooks_dir``.
        runs: Where runs, events and agent statistics are stored; by default
            ``runs.sqlite`` in the data folder (None when ``settings.record_runs`` is off).
        tracer_provider: An OpenTelemetry ``TracerProvider`` that receives each run as spans;
            by default none, or the global one when ``settings.otel`` is on.
    """

    def __init__(
        self,
        model: BaseChatModel | str | None = None,
        *,
        agents: Sequence[AgentSpec] | AgentRegistry | None = None,
        checkpointer: BaseCheckpointSaver | str | Path | None = None,
        settings: Settings | None = None,
        agent_models: Mapping[str, BaseChatModel | str] | None = None,
        domain_db: str | Path | None = None,
        knowledge: KnowledgeStore | Retriever | None = None,
        playbooks: Sequence[Playbook] | None = None,
        runs: RunStore | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self.settings = settings or load_settings()
        if knowledge is None and self.settings.knowledge:
            knowledge = KnowledgeStore.from_settings(self.settings)
        self.knowledge = knowledge
        if agents is None:
            agents = AgentRegistry.default(self.settings.agents_dir,
                                            domains=self.settings.domains)
        self.agents = list(agents)
        if runs is None and self.settings.record_runs:
            runs = RunStore(self.settings.runs_path)
        self.runs = runs
        if tracer_provider is None and self.settings.otel:
            tracer_provider = default_tracer_provider()
        self.tracer_provider = tracer_provider
        self.routing = AgentStatsBook(self.settings.routing_window, self.settings.probe_every)
        if runs is not None:
            self.routing.seed(runs.recent_outcomes(self.settings.routing_window))
        self.playbooks = (list(playbooks) if playbooks is not None
                          else default_playbooks(self.settings, [a.name for a in self.agents]))
        self.graph = build_graph(model if model is not None else self.settings.model,
                                 self.agents, settings=self.settings, agent_models=agent_models,
                                 knowledge=knowledge, playbooks=self.playbooks,
                                 routing=self.routing)
        self.domain_db = Path(domain_db) if domain_db is not None else None
        self._checkpoint_path: Path | None = None
        self._compiled: CompiledStateGraph | None = None
        self._busy_threads: set[str] = set()
        self._busy_lock = threading.Lock()
        if isinstance(checkpointer, str | Path):
            self._checkpoint_path = Path(checkpointer)
        else:
            self._compiled = self.graph.compile(checkpointer=checkpointer or InMemorySaver())

    # --- running --------------------------------------------------------------------------

    async def arun(
        self, request: str, *, thread_id: str | None = None, on_event: EventSink | None = None
    ) -> RunResult:
        """Run one request (a turn of ``thread_id``'s conversation) and return its result.

        A run that reaches a step needing approval returns with status ``paused`` and its
        ``pending_approvals``; :meth:`aresume` continues it.
        """
        text = self.check_request(request)
        return await self._start(text, None, thread_id, on_event)

    async def afire_event(
        self, name: str, data: Mapping[str, Any] | None = None, *, thread_id: str | None = None,
        on_event: EventSink | None = None,
    ) -> RunResult:
        """Fire a named event (e.g. ``service_down``): its playbook runs, or the supervisor
        plans it in adaptive mode."""
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,59}", name or ""):
            raise RequestError(f"event name {name!r} must be snake_case (e.g. service_down)")
        payload = dict(data or {})
        text = f"Event {name}: {json.dumps(payload, sort_keys=True)}"
        return await self._start(text, {"name": name, "data": payload}, thread_id, on_event)

    def fire_event(self, name: str, data: Mapping[str, Any] | None = None, *,
                   thread_id: str | None = None, on_event: EventSink | None = None
                   ) -> RunResult:
        """Synchronous :meth:`afire_event`."""
        return asyncio.run(self.afire_event(name, data, thread_id=thread_id, on_event=on_event))

    async def aresume(
        self, thread_id: str, decision: bool | Mapping[str, Any], *, reason: str = "",
        on_event: EventSink | None = None,
    ) -> RunResult:
        """Continue a paused run with an approval decision.

        ``decision``: True/False for every pending step, or ``{subtask_id: True | False |
        {"approved": bool, "reason": str}}``. Denied steps are not run and the answer says so.
        """
        async with self._graph() as graph:
            snapshot = await graph.aget_state(_config(thread_id))
        pending = _waiting_approvals(snapshot)
        if not pending:
            raise RequestError(f"thread {thread_id!r} has no paused run to resume")
        if not isinstance(decision, bool):
            known = {p["key"] for p in pending} | {p["subtask_id"] for p in pending}
            unknown = [str(k) for k in decision if k not in known and k not in
                       ("approved", "reason")]
            if unknown:
                waiting = ", ".join(sorted({p["subtask_id"] for p in pending}))
                raise RequestError(f"no pending approval named {', '.join(unknown)}; "
                                   f"waiting: {waiting}")
        values = snapshot.values
        if self.runs is not None and not await asyncio.to_thread(self.runs.claim_paused,
                                                                 values["run_id"]):
            raise RequestError(f"the paused run of thread {thread_id!r} is already being "
                               "resumed by someone else")
        resume: Any = ({"approved": decision, "reason": reason} if isinstance(decision, bool)
                       else dict(decision))
        return await self._drive(Command(resume=resume), thread_id, values["run_id"],
                                 values.get("request", ""), on_event, values.get("event"))

    def resume(self, thread_id: str, decision: bool | Mapping[str, Any], *, reason: str = "",
               on_event: EventSink | None = None) -> RunResult:
        """Synchronous :meth:`aresume`."""
        return asyncio.run(self.aresume(thread_id, decision, reason=reason, on_event=on_event))

    async def _start(self, text: str, event: dict[str, Any] | None, thread_id: str | None,
                     on_event: EventSink | None) -> RunResult:
        if thread_id is not None:
            async with self._graph() as graph:
                snapshot = await graph.aget_state(_config(thread_id))
            if _waiting_approvals(snapshot):
                raise RequestError(
                    f"thread {thread_id!r} has a run waiting for approval: resume it "
                    "(approve or deny) before sending a new request")
        thread = thread_id or uuid.uuid4().hex
        run_id = uuid.uuid4().hex
        inputs: dict[str, Any] = {
            "messages": [HumanMessage(text)], "request": text, "run_id": run_id, "event": event,
        }
        return await self._drive(inputs, thread, run_id, text, on_event, event)

    async def _drive(self, graph_input: Any, thread: str, run_id: str, text: str,
                     on_event: EventSink | None, event: dict[str, Any] | None) -> RunResult:
        events: list[Event] = []
        config = _config(thread)
        started = time.perf_counter()
        db_scope = use_domain_db(self.domain_db) if self.domain_db else nullcontext()
        values: dict[str, Any] = {}
        paused: list[dict[str, Any]] = []
        with self._claim_thread(thread):
            try:
                async with self._graph() as graph, _in_scope(db_scope):
                    async for mode, chunk in graph.astream(graph_input, config,
                                                           stream_mode=["custom", "values"]):
                        if mode == "values" and isinstance(chunk, dict):
                            values = chunk  # this run's own state, never another run's
                        elif isinstance(chunk, dict) and chunk.get(EVENT_MARKER):
                            item = Event.from_dict(chunk)
                            events.append(item)
                            if on_event is not None:
                                on_event(item)
                    if not events or events[-1].type != "answer":
                        snapshot = await graph.aget_state(config)
                        paused = _waiting_approvals(snapshot)
            finally:
                result = _run_result(values, thread, run_id, text,
                                     time.perf_counter() - started, events, paused)
                if self.runs is not None and events:
                    await asyncio.to_thread(self.runs.save, result, events,
                                            mode=values.get("mode", ""), event=event)
                if self.tracer_provider is not None:
                    export_run(events, self.tracer_provider)
        return result

    def run(self, request: str, *, thread_id: str | None = None,
            on_event: EventSink | None = None) -> RunResult:
        """Synchronous :meth:`arun` (not for use inside a running event loop)."""
        return asyncio.run(self.arun(request, thread_id=thread_id, on_event=on_event))

    async def astream(self, request: str, *, thread_id: str | None = None
                      ) -> AsyncIterator[Event]:
        """Events as they happen; the last one is ``answer``."""
        pending: asyncio.Queue[Any] = asyncio.Queue()
        job = asyncio.ensure_future(self.arun(request, thread_id=thread_id,
                                              on_event=pending.put_nowait))
        job.add_done_callback(lambda _: pending.put_nowait(_DONE))
        try:
            while (item := await pending.get()) is not _DONE:
                yield item
            job.result()  # re-raise a failure of the run itself
        finally:
            if not job.done():  # the consumer stopped listening: stop the work too
                job.cancel()

    def stream(self, request: str, *, thread_id: str | None = None) -> Iterator[Event]:
        """Synchronous :meth:`astream`: the run happens on a worker thread."""
        pending: queue.Queue[Any] = queue.Queue()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                asyncio.run(self.arun(request, thread_id=thread_id, on_event=pending.put))
            except BaseException as exc:
                failure.append(exc)
            finally:
                pending.put(_DONE)

        worker = threading.Thread(target=work, name="orchestrator-stream", daemon=True)
        worker.start()
        while (item := pending.get()) is not _DONE:
            yield item
        worker.join()
        if failure:
            raise failure[0]

    async def history(self, thread_id: str) -> list[tuple[str, str]]:
        """The (role, text) turns of a thread so far."""
        async with self._graph() as graph:
            config = RunnableConfig(configurable={"thread_id": thread_id})
            snapshot = await graph.aget_state(config)
        role = {"human": "user", "ai": "assistant"}
        return [(role.get(m.type, m.type), m.text) for m in snapshot.values.get("messages", [])]

    # --- internals ------------------------------------------------------------------------

    @contextmanager
    def _claim_thread(self, thread_id: str) -> Iterator[None]:
        # Two turns of one conversation at once would interleave its history.
        with self._busy_lock:
            if thread_id in self._busy_threads:
                raise RequestError(f"thread {thread_id!r} is already running a request; "
                                   "wait for it to finish or use another thread")
            self._busy_threads.add(thread_id)
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy_threads.discard(thread_id)

    def check_request(self, request: str) -> str:
        """The request stripped; RequestError if it is empty or over the size limit."""
        text = (request or "").strip()
        if not text:
            raise RequestError("the request is empty: say what you need done")
        limit = self.settings.max_request_chars
        if len(text) > limit:
            raise RequestError(
                f"the request is {len(text)} characters; the limit is {limit} "
                "(raise ORCHESTRATOR_MAX_REQUEST_CHARS or shorten it)"
            )
        return text

    def _graph(self) -> AbstractAsyncContextManager[CompiledStateGraph]:
        if self._compiled is not None:
            return nullcontext(self._compiled)
        return self._sqlite_graph()

    @asynccontextmanager
    async def _sqlite_graph(self) -> AsyncIterator[CompiledStateGraph]:
        # aiosqlite connections belong to one event loop, so open one per call.
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        assert self._checkpoint_path is not None
        self._checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        async with AsyncSqliteSaver.from_conn_string(str(self._checkpoint_path)) as saver:
            yield self.graph.compile(checkpointer=saver)


@asynccontextmanager
async def _in_scope(scope: AbstractContextManager[Any]) -> AsyncIterator[None]:
    with scope:
        yield


def _waiting_approvals(snapshot: StateSnapshot) -> list[dict[str, Any]]:
    """The approvals a thread's interrupted run waits for ([] when it is not paused)."""
    return [a for task in snapshot.tasks for i in task.interrupts
            for a in (i.value or {}).get("approvals", [])]


def _config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}, "recursion_limit": 100}


def _run_result(values: dict[str, Any], thread_id: str, run_id: str, request: str,
                elapsed: float, events: list[Event], paused: list[dict[str, Any]]
                ) -> RunResult:
    results = {key: SubtaskResult.from_dict(value)
               for key, value in (values.get("results") or {}).items()}
    usage = Usage.from_dict(values.get("supervisor_usage"))
    for result in results.values():
        usage = usage + result.usage
    plan = Plan.model_validate(values["plan"]) if values.get("plan") else None
    error = values.get("error")
    counted = [r for r in results.values() if r.failure_kind != "condition"]
    settled = sum(r.settled(results) for r in counted)
    status: RunStatus = "ok"
    if paused:
        status = "paused"
    elif error or (counted and settled == 0) or (not values.get("answer") and not results):
        status = "failed"
    elif settled < len(counted):
        status = "partial"
    return RunResult(
        run_id=run_id, thread_id=thread_id, request=request, answer=values.get("answer", ""),
        status=status, plan=plan, results=results, usage=usage,
        elapsed_s=elapsed, error=error, events=events, pending_approvals=paused,
        mode=values.get("mode", ""), budget_hit=values.get("budget_hit"),
    )
