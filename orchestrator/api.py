"""The ``Orchestrator`` facade: run requests, stream events, keep conversations.

Crash safety lives here too: a run is recorded when it starts and its events as they
arrive; the run and its thread are held by leases its process renews; an interrupted run is
continued from its LangGraph checkpoint (:meth:`Orchestrator.resume_run`); a caller's
request id makes sending a request again safe; a finished run's older checkpoints are
pruned, so a thread's storage grows with its turns, not their square.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import queue
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import (
    AbstractContextManager,
    asynccontextmanager,
    nullcontext,
)
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot

from orchestrator.agents.registry import AgentRegistry
from orchestrator.agents.spec import AgentSpec
from orchestrator.approvals import (
    ApprovalDecision,
    ApprovalRequest,
    check_decision,
    resume_payload,
)
from orchestrator.checkpoints import prune_checkpoints
from orchestrator.config import Settings, ensure_home, load_settings
from orchestrator.domain_db import use_domain_db
from orchestrator.errors import ConfigError, RequestError, RequestRunningError, ThreadBusyError
from orchestrator.event_writer import BurstQueue, EventWriter
from orchestrator.events import (
    ANSWER_CHUNKS_KEY,
    EVENT_MARKER,
    AnswerChunk,
    AnswerChunkSink,
    Event,
    EventSink,
    answer_chunk_from_dict,
    delivered_to,
)
from orchestrator.graph import engine_context, graph_from_context
from orchestrator.leases import LostLease, keep_lease
from orchestrator.plan import Plan
from orchestrator.playbooks import Playbook, check_event_name, default_playbooks
from orchestrator.records import RunRecords
from orchestrator.results import RunResult, RunStatus, SubtaskResult, Usage, run_status
from orchestrator.retrieval.search import Retriever
from orchestrator.retrieval.store import KnowledgeStore
from orchestrator.routing import AgentStatsBook
from orchestrator.runs import (
    FINISHED_RUN_STATUSES,
    HOST,
    BaseRunStore,
    Owner,
    RunDriver,
    refuse_workflow_run,
)
from orchestrator.start_gate import StartGate
from orchestrator.storage import SharedCheckpointer, open_run_store, open_write_journal
from orchestrator.storage.threaded_saver import read_ahead, write_barrier
from orchestrator.telemetry import default_tracer_provider, export_run

_DONE = object()
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}")
log = logging.getLogger(__name__)
_T = TypeVar("_T")


class _RunLost(Exception):
    """This process no longer holds the run it is running (the message says why)."""


async def _landed(write: Callable[[], _T], bursts: BurstQueue | None) -> _T:
    """``write()`` (a store call at the end of a run) on the event thread (``bursts``; else
    a thread), so the loop and the other runs on it do not wait for its transaction; it
    lands even when the caller is cancelled meanwhile (the thread goes on). A task already
    being cancelled writes at once, on the loop: nothing may stop it before it lands."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        return write()
    return await asyncio.shield(_on_store_thread(bursts, write))


async def _on_store_thread(bursts: BurstQueue | None, call: Callable[[], _T]) -> _T:
    """``call()`` (of the run store) on the event thread, after the bursts queued before it
    and without waiting for the store's lock or a free thread (:meth:`BurstQueue.call`);
    in a thread when there is no event thread or it is closed."""
    return await _queue_store_call(bursts, call)


def _queue_store_call(bursts: BurstQueue | None, call: Callable[[], _T]) -> asyncio.Future[_T]:
    """:func:`_on_store_thread`'s call, queued now; its future."""
    if bursts is not None:
        try:
            return bursts.call(call)
        except RuntimeError:  # closed under the run
            pass
    return asyncio.ensure_future(asyncio.to_thread(call))


def _then(first: Callable[[], _T], after: Callable[[], object]) -> Callable[[], _T]:
    """``first()`` and then, whatever it did, ``after()``: one call."""
    def both() -> _T:
        try:
            return first()
        finally:
            after()
    return both


@dataclass
class _ThreadHold:
    """A run's claim on its thread in the run store, given back once."""

    thread_id: str
    owner: Owner
    runs: BaseRunStore | None
    queued: bool = False
    """The give-back is queued with the run's record (so it happens after it)."""
    _given: threading.Lock = field(default_factory=threading.Lock)

    def give_back(self) -> None:
        """Release the thread's lease (a run store call: on its thread); once. A store
        that fails here is logged: the lease runs out by itself."""
        if self.runs is None or not self._given.acquire(blocking=False):
            return
        try:
            self.runs.release_thread(self.thread_id, self.owner)
        except Exception as exc:  # the run's own outcome stands: logged, not raised
            log.warning("thread %s: could not release its lease (%s)", self.thread_id, exc)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark ``future``'s exception as seen (asyncio logs one nobody retrieved)."""
    if not future.cancelled():
        future.exception()


def _check_writer(writer: EventWriter, lost_reason: Callable[[], str]) -> None:
    """Raise what the event writer met: a listener's exception, or the run lost."""
    if writer.error is not None:
        error, writer.error = writer.error, None
        raise error
    if writer.lost:
        raise _RunLost(lost_reason())


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
        checkpointer: Where conversations persist: a LangGraph checkpointer, a path or URL
            (``sqlite:///path``, ``postgresql://...``, ``memory://``; see
            :mod:`orchestrator.storage`), or None for in-memory threads (the database's
            when ``settings.database_url`` is set). A path or URL is opened once, on first
            use, and shared by every run until :meth:`aclose` (``async with
            Orchestrator(...)`` does it).
        settings: Limits and folders; read from ``ORCHESTRATOR_*`` variables when omitted.
        agent_models: Per-agent model overrides, by agent name.
        domain_db: The business-systems database the tools use: a path or a URL such as
            postgresql://host/db (default: ``ORCHESTRATOR_DOMAIN_DB``, see ``Settings``).
        knowledge: The knowledge base (a KnowledgeStore or Retriever); by default the store
            the settings name, unless ``settings.knowledge`` is off.
        playbooks: Predefined workflows; by default the built-in ones whose agents are all
            enabled, plus those in ``settings.playbooks_dir``.
        runs: Where runs, events and agent statistics are stored: a run store, or a path or
            URL for one; by default ``runs.sqlite`` in the data folder, or the database
            when ``settings.database_url`` is set (none when
            ``settings.record_runs`` is off).
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
        runs: BaseRunStore | str | Path | None = None,
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
        self._opened: list[Any] = []  # stores this object opened, and so closes
        stores = self.settings.stores  # SQLite in the data folder, or the database URL
        if isinstance(runs, str | Path) or (runs is None and self.settings.record_runs):
            runs = open_run_store(runs or stores.runs,
                                  max_text=self.settings.max_stored_chars)
            self._opened.append(runs)
        self.runs: BaseRunStore | None = runs
        # Who drives the runs this object starts (on their records): a Temporal worker's
        # orchestrator is "temporal"; a local one refuses to decide or resume those runs.
        self.driver: RunDriver = "local"
        # Every run's events are written from one thread, bursts that wait together in one
        # transaction, so no store call holds up the other runs on the loop (EventWriter).
        self._bursts = BurstQueue(runs) if runs is not None else None
        # A store whose calls share one connection and lock takes a run's start and end
        # calls on its event thread; another (PostgreSQL: a pool) in threads, where a
        # call waiting on a row lock holds up no one's events.
        self._store_calls = (self._bursts if getattr(runs, "one_connection", False)
                             else None)
        if tracer_provider is None and self.settings.otel:
            tracer_provider = default_tracer_provider()
        self.tracer_provider = tracer_provider
        self.routing = AgentStatsBook(self.settings.routing_window, self.settings.probe_every)
        if runs is not None:
            self.routing.seed(runs.recent_outcomes(self.settings.routing_window))
        self.playbooks = (list(playbooks) if playbooks is not None
                          else default_playbooks(self.settings, [a.name for a in self.agents]))
        self._engine = engine_context(
            model if model is not None else self.settings.model, self.agents,
            settings=self.settings, agent_models=agent_models, knowledge=knowledge,
            playbooks=self.playbooks, routing=self.routing)
        self._engine.journal = open_write_journal(stores.writes)
        self._opened.append(self._engine.journal)
        self.graph = graph_from_context(self._engine)
        # A path or a URL (postgresql://...): a URL must not go through Path. A business
        # database the settings name (or the shared database) is the default.
        if domain_db is None and (self.settings.domain_db or self.settings.database_url):
            domain_db = self.settings.domain_db_url
        self.domain_db: str | Path | None = domain_db
        self._busy_threads: set[str] = set()
        self._requests_here: set[str] = set()
        """Request ids whose run this process is starting or running (their record may not
        be in the store yet)."""
        self._start_gate = StartGate(self.settings.starting_runs)
        self._busy_lock = threading.Lock()
        # Compiled once; each checkpointer gets a copy of it (no recompiling per run), and a
        # path or URL is one checkpointer shared by every run (see SharedCheckpointer).
        self._checkpoints: SharedCheckpointer | None = None
        if isinstance(checkpointer, BaseCheckpointSaver):
            self._compiled: CompiledStateGraph = self.graph.compile(checkpointer=checkpointer)
        else:  # threads in memory unless a database is configured: then they are shared
            default = stores.checkpoints if self.settings.database_url else "memory://"
            self._checkpoints = SharedCheckpointer(
                checkpointer if checkpointer is not None else default)
            self._compiled = self.graph.compile()

    # --- running --------------------------------------------------------------------------

    async def arun(
        self, request: str, *, thread_id: str | None = None, on_event: EventSink | None = None,
        request_id: str | None = None, on_answer_chunk: AnswerChunkSink | None = None,
        history: Sequence[tuple[str, str]] = (),
    ) -> RunResult:
        """Run one request (a turn of ``thread_id``'s conversation) and return its result.

        A run that reaches a step needing approval returns with status ``paused`` and its
        ``pending_approvals``; :meth:`aresume` continues it.

        ``request_id`` is the caller's idempotency key: sent again, the same id returns the
        earlier run's result when it finished (or paused), continues it when it was
        interrupted, and is a RequestError while it runs elsewhere, so a request sent again
        after a crash never repeats its side effects.

        ``on_answer_chunk`` receives the answer piece by piece as the model writes it
        (:class:`~orchestrator.events.AnswerChunk`; not stored, unlike events); the result's
        ``answer`` is the whole of it, or the plain account written when the model failed
        part-way.

        ``history`` is the conversation before the request, as ``(role, text)`` pairs
        (``user`` or ``assistant``), when the caller keeps it rather than a thread (an
        OpenAI client sending its messages): a new thread starts with it (its last
        ``history_turns`` turns, each text cut at ``max_request_chars``); a thread that
        already has turns keeps its own.
        """
        text = self.check_request(request)
        return await self._start(text, None, thread_id, on_event, request_id,
                                 on_answer_chunk, self._history(history))

    def run(self, request: str, *, thread_id: str | None = None,
            on_event: EventSink | None = None, request_id: str | None = None,
            on_answer_chunk: AnswerChunkSink | None = None) -> RunResult:
        """Synchronous :meth:`arun` (not for use inside a running event loop)."""
        return asyncio.run(self.arun(request, thread_id=thread_id, on_event=on_event,
                                     request_id=request_id, on_answer_chunk=on_answer_chunk))

    async def afire_event(
        self, name: str, data: Mapping[str, Any] | None = None, *, thread_id: str | None = None,
        on_event: EventSink | None = None, request_id: str | None = None,
        on_answer_chunk: AnswerChunkSink | None = None,
    ) -> RunResult:
        """Fire a named event (e.g. ``service_down``): its playbook runs, or the supervisor
        plans it in adaptive mode. ``request_id`` and ``on_answer_chunk`` as in :meth:`arun`."""
        text, payload = self.check_event(name, data)
        return await self._start(text, {"name": name, "data": payload}, thread_id, on_event,
                                 request_id, on_answer_chunk)

    def fire_event(self, name: str, data: Mapping[str, Any] | None = None, *,
                   thread_id: str | None = None, on_event: EventSink | None = None,
                   request_id: str | None = None,
                   on_answer_chunk: AnswerChunkSink | None = None) -> RunResult:
        """Synchronous :meth:`afire_event`."""
        return asyncio.run(self.afire_event(name, data, thread_id=thread_id, on_event=on_event,
                                            request_id=request_id,
                                            on_answer_chunk=on_answer_chunk))

    async def aresume(
        self, thread_id: str, decision: bool | ApprovalDecision | Mapping[str, Any], *,
        reason: str = "", approver: str | None = None, on_event: EventSink | None = None,
        on_answer_chunk: AnswerChunkSink | None = None,
    ) -> RunResult:
        """Continue a paused run with an approval decision.

        ``decision``: True/False (or an :class:`ApprovalDecision`) for every pending step, or
        ``{subtask_id or approval key: True | False | {"approved": bool, "reason": str} |
        ApprovalDecision}``; anything else (``"false"``, ``1``) is a RequestError before the
        run is touched. ``approver`` is stored with the decision; when it is not given, the
        one a decision carries (``ApprovalDecision.approver``) is, else "unknown".
        Denied steps are not run and the answer says so.
        """
        async with self._graph() as graph:
            snapshot = await graph.aget_state(_config(thread_id))
        pending = _waiting_approvals(snapshot)
        values = snapshot.values
        if not pending:
            raise RequestError(self._nothing_paused(thread_id, values.get("run_id")))
        check_decision(decision, pending)
        run_id = values["run_id"]
        await self._refuse_workflow_run(run_id, "approve")
        owner = Owner.here()
        if self.runs is not None and not await asyncio.to_thread(
                self.runs.claim_paused, run_id, owner, self.settings.lease_s):
            raise RequestError(f"the paused run of thread {thread_id!r} is already being "
                               "resumed by someone else")
        payload = resume_payload(decision, reason=reason, approver=approver)
        async with self._thread_claim(thread_id, run_id, owner, give_back="paused") as hold:
            return await self._drive(Command(resume=payload), thread_id, run_id,
                                     values.get("request", ""), on_event, values.get("event"),
                                     owner, on_answer_chunk=on_answer_chunk, hold=hold)

    def resume(self, thread_id: str, decision: bool | ApprovalDecision | Mapping[str, Any], *,
               reason: str = "",
               approver: str | None = None, on_event: EventSink | None = None,
               on_answer_chunk: AnswerChunkSink | None = None) -> RunResult:
        """Synchronous :meth:`aresume`."""
        return asyncio.run(self.aresume(thread_id, decision, reason=reason, approver=approver,
                                        on_event=on_event, on_answer_chunk=on_answer_chunk))

    async def apending_approvals(self, thread_id: str) -> list[ApprovalRequest]:
        """What the paused run of ``thread_id`` waits for ([] when it is not paused): each
        approval's key, subtask_id, agent, goal, and for a tool call its tool, args, why and
        preview. A decision keyed by these keys covers exactly them."""
        async with self._graph() as graph:
            return (await _look_at_thread(graph, _config(thread_id))).waiting

    def pending_approvals(self, thread_id: str) -> list[ApprovalRequest]:
        """Synchronous :meth:`apending_approvals`."""
        return asyncio.run(self.apending_approvals(thread_id))

    # --- the service API: set-up and queries ----------------------------------------------

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *,
                      on_first_build: Callable[[], None] | None = None,
                      **options: Any) -> Orchestrator:
        """The orchestrator of a data folder, as the CLI and the server run it.

        The settings' model (the offline fake model when none is set), checkpoints, run
        store and business database in ``ORCHESTRATOR_HOME``, and, when the knowledge base
        is on, the domain packs' knowledge ingested on first use (``on_first_build`` is
        called before that one-time build). ``options`` go to the constructor.
        """
        from orchestrator.config import DEFAULT_MODEL_SPEC
        from orchestrator.demo import demo_knowledge_lock, ensure_demo_knowledge

        settings = settings or load_settings()
        ensure_home(settings)
        if settings.knowledge and "knowledge" not in options:
            store = KnowledgeStore.from_settings(settings)
            ensure_demo_knowledge(store, demo_knowledge_lock(settings), on_build=on_first_build)
            options["knowledge"] = store
        options.setdefault("checkpointer", settings.stores.checkpoints)
        options.setdefault("domain_db", settings.domain_db_url)
        return cls(options.pop("model", None) or settings.model or DEFAULT_MODEL_SPEC,
                   settings=settings, **options)

    @property
    def records(self) -> RunRecords:
        """Stored runs, traces, events and agent statistics (see :class:`RunRecords`)."""
        self._check_open()
        if self.runs is None:
            raise ConfigError("this orchestrator does not record runs (ORCHESTRATOR_RECORD_RUNS "
                              "is off and no run store was given)")
        return RunRecords(self.runs)

    async def aresume_run(self, run_id: str, *, on_event: EventSink | None = None,
                          on_answer_chunk: AnswerChunkSink | None = None) -> RunResult:
        """Continue an interrupted run (a crash, a kill, SIGTERM) from its checkpoint.

        Finished subtasks are not redone (their results are in the checkpoint), and writes
        that happened return their earlier results. A run that was waiting for a decision
        when it stopped goes back to ``paused``. ``run_id`` may be a unique prefix.
        """
        self._check_open()
        store = self._store("resuming a run")
        record = await asyncio.to_thread(store.run, run_id)
        full, thread = record["run_id"], record["thread_id"]
        if record["status"] != "interrupted":
            raise RequestError(_not_interrupted(record))
        if self.driver == "local":
            refuse_workflow_run(record, "resume")
        owner = Owner.here()
        if not await asyncio.to_thread(store.claim_interrupted, full, owner,
                                       self.settings.lease_s):
            raise RequestError(f"run {full[:12]} is being resumed by someone else")
        async with self._thread_claim(thread, full, owner, give_back="interrupted") as hold:
            async with self._graph() as graph:
                snapshot = await graph.aget_state(_config(thread))
            graph_input: Any = None
            if _checkpoint_run(snapshot) != full:
                later = await asyncio.to_thread(store.later_run, thread, record["started_at"])
                if later is not None:
                    store.set_status(full, "interrupted", owner)
                    raise RequestError(f"run {full[:12]} cannot be resumed: its thread "
                                       f"{thread!r} went on with run {later[:12]}")
                # Stopped before its first checkpoint: start it again under the same id.
                graph_input = _inputs(record["request"], full, record["event"])
            elif pending := _waiting_approvals(snapshot):
                # Stopped before a decision was applied: it waits for one again.
                store.set_status(full, "paused", owner)
                return _run_result(snapshot.values, thread, full, record["request"], 0.0, [],
                                   pending)
            elif not snapshot.next:  # it had finished; only its record had not
                result = _run_result(snapshot.values, thread, full, record["request"], 0.0,
                                     [], [])
                store.finish_run(result, status=result.status, owner=owner,
                                 mode=snapshot.values.get("mode", ""))
                return result
            return await self._drive(graph_input, thread, full, record["request"], on_event,
                                     record["event"], owner, on_answer_chunk=on_answer_chunk,
                                     hold=hold)

    def resume_run(self, run_id: str, *, on_event: EventSink | None = None,
                   on_answer_chunk: AnswerChunkSink | None = None) -> RunResult:
        """Synchronous :meth:`aresume_run`."""
        return asyncio.run(self.aresume_run(run_id, on_event=on_event,
                                            on_answer_chunk=on_answer_chunk))

    def _history(self, history: Sequence[tuple[str, str]]) -> list[BaseMessage]:
        """``history`` as the messages a new thread starts with (see :meth:`arun`);
        RequestError for a role other than ``user`` or ``assistant``."""
        messages: list[BaseMessage] = []
        limit = self.settings.max_request_chars
        for role, text in history:
            if role not in ("user", "assistant"):
                raise RequestError(f"a history message's role is 'user' or 'assistant', not "
                                   f"{role[:20]!r}")
            if text.strip():
                kind = HumanMessage if role == "user" else AIMessage
                messages.append(kind(self.check_request(text[:limit])))
        return messages[max(len(messages) - 2 * self.settings.history_turns, 0):]

    async def _start(self, text: str, event: dict[str, Any] | None, thread_id: str | None,
                     on_event: EventSink | None, request_id: str | None,
                     on_answer_chunk: AnswerChunkSink | None = None,
                     history: Sequence[BaseMessage] = ()) -> RunResult:
        self._check_open()
        # A burst of new requests starts in arrival order (a resume holds claims that only
        # its run renews: it does not wait in line).
        async with self._request_here(request_id), self._start_gate.entered():
            if request_id is not None:
                earlier = await self._repeated(request_id, text, thread_id, on_event,
                                               on_answer_chunk)
                if earlier is not None:
                    return earlier
            thread = thread_id or uuid.uuid4().hex
            run_id = uuid.uuid4().hex
            owner = Owner.here()
            async with self._thread_claim(thread, run_id, owner,
                                          request_id=request_id) as hold:
                async with self._graph() as graph:
                    saver = graph.checkpointer
                    # A new thread (no id given) has no checkpoint: nothing to read.
                    look = _ThreadLook([], read=True) if thread_id is None else (
                        await _look_at_thread(graph, _config(thread_id)))
                    if look.waiting:
                        raise RequestError(
                            f"thread {thread_id!r} has a run waiting for approval: resume it "
                            "(approve or deny) before sending a new request")
                if self.runs is not None:
                    await _on_store_thread(self._store_calls, functools.partial(
                        self.runs.start_run, run_id, thread, text, owner=owner,
                        lease_s=self.settings.lease_s, event=event, request_id=request_id,
                        driver=self.driver))
                # The run's first checkpoint read is the one just made: we hold the thread.
                with read_ahead(saver, _config(thread), look.latest) if look.read else (
                        nullcontext()):
                    # The caller's history starts a new thread; one with turns has its own.
                    seeded = history if look.read and look.latest is None else ()
                    return await self._drive(_inputs(text, run_id, event, seeded), thread,
                                             run_id, text, on_event, event, owner,
                                             on_answer_chunk=on_answer_chunk, hold=hold)

    @contextlib.asynccontextmanager
    async def _request_here(self, request_id: str | None) -> AsyncIterator[None]:
        """Hold ``request_id`` while its run starts and runs here: the same id sent again
        meanwhile is told it still runs (the store has no record of it before its thread is
        claimed)."""
        if request_id is None:
            yield
            return
        with self._busy_lock:
            if request_id in self._requests_here:
                raise RequestRunningError(f"request {request_id!r} is still running here; "
                                          "send it again when it has finished to get its "
                                          "result")
            self._requests_here.add(request_id)
        try:
            yield
        finally:
            with self._busy_lock:
                self._requests_here.discard(request_id)

    async def _drive(self, graph_input: Any, thread: str, run_id: str, text: str,
                     on_event: EventSink | None, event: dict[str, Any] | None,
                     owner: Owner, *, on_answer_chunk: AnswerChunkSink | None = None,
                     hold: _ThreadHold | None = None) -> RunResult:
        """Stream the graph; each event is stored as it arrives, each answer chunk goes to
        ``on_answer_chunk`` only (never to the store). The caller holds the thread
        (``hold``: given back in the same store call as the run's record).

        Checkpoints are written before each step goes on (durability "sync"), so a process
        killed at any point resumes from the last finished step. When this process loses its
        claim on the run (another process took it over once the lease ran out, or the lease
        could not be renewed in time), the run stops at once and the result says so; the
        record, which is then the new owner's, is not written over.
        """
        events: list[Event] = []
        config = _config(thread, run_id)
        # Nobody listens for answer chunks: the answer is written in one model call.
        config["configurable"][ANSWER_CHUNKS_KEY] = on_answer_chunk is not None
        started = time.perf_counter()
        db_scope = use_domain_db(self.domain_db) if self.domain_db else nullcontext()
        values: dict[str, Any] = {}
        paused: list[ApprovalRequest] = []
        outcome = "interrupted"  # until the graph has run to its end or pause
        lost: list[str] = []  # why this process lost the run, once it has
        work = asyncio.current_task()
        halted: list[bool] = []  # once halt() stopped the run (or the run is over)

        def halt() -> None:
            # The writer found the run lost (its events refused) or a listener failed: stop
            # the run at once, not at the end of its step (the run's own task, in drain and
            # flush, checks the writer itself).
            if not halted and work is not None and asyncio.current_task() is not work:
                halted.append(True)
                work.cancel()

        # Stored in bursts from the event thread, in order; told to listeners once stored.
        writer = EventWriter(self._bursts, run_id, owner, on_event, on_trouble=halt)
        keeper = (asyncio.ensure_future(self._keep_claims(
            run_id, thread, owner, lost, work)) if self.runs is not None
            else None)

        def check_writer() -> None:
            _check_writer(writer, lambda: self._lost_reason(
                run_id, thread, owner, LostLease(taken=True)))

        def before_checkpoint() -> Awaitable[None] | None:
            # A checkpoint waits for the events before it (written from the event thread): a
            # kill between the two must not leave a finished step's events out; and none is
            # written once the run is lost or its events failed.
            check_writer()
            return writer.unstored()

        loop, loop_thread = asyncio.get_running_loop(), threading.get_ident()

        def on_graph_event(item: Event) -> None:
            if threading.get_ident() != loop_thread:  # emitted off the loop: on it, in order
                loop.call_soon_threadsafe(on_graph_event, item)
                return
            events.append(item)
            writer.add(item)

        def on_chunk(piece: AnswerChunk) -> None:  # for on_answer_chunk
            if threading.get_ident() != loop_thread:  # as on_graph_event
                loop.call_soon_threadsafe(on_chunk, piece)
                return
            assert on_answer_chunk is not None
            writer.then(lambda: on_answer_chunk(piece))  # after the events told before it

        try:
            # Events go to the writer as they are emitted (not through the graph's stream):
            # a step's events are in it before any checkpoint write of that step.
            async with self._graph() as graph, _in_scope(db_scope), _in_scope(
                    write_barrier(before_checkpoint)), _in_scope(delivered_to(
                        on_graph_event, on_answer_chunk and on_chunk)), contextlib.aclosing(
                    cast(AsyncGenerator[Any, None], graph.astream(
                        graph_input, config, stream_mode=["custom", "values"],
                        durability="sync"))) as stream:  # closed at once when the run stops
                async for mode, chunk in stream:
                    if mode == "values" and isinstance(chunk, dict):
                        values = chunk  # this run's own state, never another run's
                    elif isinstance(chunk, dict) and chunk.get(EVENT_MARKER):
                        on_graph_event(Event.from_dict(chunk))  # emitted outside our scope
                    elif on_answer_chunk is not None and isinstance(chunk, dict) and (
                            piece := answer_chunk_from_dict(chunk)) is not None:
                        on_answer_chunk(piece)  # not stored: the answer event holds it all
                    check_writer()
                # Only the run's owner prunes: the thread may be another process's now.
                # Asked at once: the event thread answers right after the last events.
                owned = None if self.runs is None else _queue_store_call(
                    self._store_calls, functools.partial(self.runs.holds, run_id, owner))
                if owned is not None:
                    owned.add_done_callback(_retrieved)  # unawaited when the run fails here
                await writer.drain()
                check_writer()
                if not events or events[-1].type != "answer":
                    snapshot = await graph.aget_state(config)
                    paused = _waiting_approvals(snapshot)
                outcome = ""
                if not paused and (owned is None or await owned):
                    await prune_checkpoints(graph, thread)
        except _RunLost as exc:
            lost.append(str(exc))
        except OSError as exc:  # a store across the network went away (a dropped connection,
            # a database restarting): what was checkpointed stands, so the run can go on
            lost.append(f"run {run_id[:12]} stopped: {exc}; continue it with `orchestrator "
                        f"resume {run_id[:12]}` once the store answers again")
        except asyncio.CancelledError:
            if not lost and not halted:  # Ctrl-C, SIGTERM or the caller: not a lost claim
                raise
            cast(asyncio.Task[Any], asyncio.current_task()).uncancel()  # the keeper or halt
            try:
                if not lost:
                    check_writer()  # halted: raise what the writer met
            except _RunLost as exc:
                lost.append(str(exc))
            except Exception as exc:  # a listener's error: the run fails with it
                outcome = "failed"
                values = {**values, "error": values.get("error") or f"{type(exc).__name__}: {exc}"}
                raise
        except Exception as exc:  # a bug: on record as a failure, with its traceback raised
            outcome = "failed"
            values = {**values, "error": values.get("error") or f"{type(exc).__name__}: {exc}"}
            raise
        finally:
            halted.append(False)  # over: a late event (a leaked task's) must not stop `work`
            writer.flush()  # what the last turn of the loop left, before the record ends
            self._engine.end_run(run_id)  # its budget: a resume rebuilds it from the state
            if keeper is not None:
                keeper.cancel()
            result = _run_result(values, thread, run_id, text,
                                 time.perf_counter() - started, events, paused)
            if self.runs is not None:  # it must land even while cancelled: see _landed
                finish = functools.partial(self._finish, result, outcome or result.status,
                                           owner, lost, values.get("mode", ""), event)
                if hold is not None:  # one call for both: released once recorded
                    hold.queued = True
                result = await _landed(finish if hold is None else _then(
                    finish, hold.give_back), self._store_calls)
            if self.tracer_provider is not None:
                export_run(events, self.tracer_provider)
        return result

    def _finish(self, result: RunResult, status: str, owner: Owner, lost: list[str],
                mode: str, event: dict[str, Any] | None) -> RunResult:
        """Write the run's record unless another process owns it now; the result of a run
        this process lost says so (status ``interrupted``, the reason in ``error``)."""
        assert self.runs is not None
        try:
            written = self.runs.finish_run(result, status="interrupted" if lost else status,
                                           owner=owner, mode=mode, event=event)
        except (sqlite3.Error, OSError):  # OSError: a store across a network is unreachable
            if not lost:
                raise
            log.warning("run %s: could not record that it stopped", result.run_id)
            written = False
        if not written and not lost:  # taken over as it finished: its record is not ours
            lost.append(self._lost_reason(result.run_id, result.thread_id, owner,
                                          LostLease(taken=True)))
        if not lost:
            return result
        log.warning("%s", lost[0])
        return replace(result, status="interrupted", answer="", error=lost[0])

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

    async def ahas_thread(self, thread_id: str) -> bool:
        """Whether ``thread_id`` names a conversation that exists (has a checkpoint)."""
        async with self._graph() as graph:
            snapshot = await graph.aget_state(_config(thread_id))
        return snapshot.created_at is not None

    def has_thread(self, thread_id: str) -> bool:
        """Synchronous :meth:`ahas_thread`."""
        return asyncio.run(self.ahas_thread(thread_id))

    # --- internals ------------------------------------------------------------------------

    @asynccontextmanager
    async def _thread_claim(self, thread_id: str, run_id: str, owner: Owner, *,
                            give_back: str | None = None, request_id: str | None = None
                            ) -> AsyncIterator[_ThreadHold]:
        """Hold ``thread_id`` for one run: in this process, and across processes through the
        run store (released at the end, unless the run released it with its record). When
        the thread is busy, a run claim taken before is given back (its status set to
        ``give_back``) and ThreadBusyError says who holds the thread; for a request with an
        id, RequestRunningError: the holder may be that request's first run, started in
        another process a moment before its record was written, so it is asked again."""
        # Two turns of one conversation at once would interleave its history.
        with self._busy_lock:
            busy = thread_id in self._busy_threads
            if not busy:
                self._busy_threads.add(thread_id)
        try:
            if busy:
                raise ThreadBusyError(f"thread {thread_id!r} is already running a request; "
                                   "wait for it to finish or use another thread")
            if self.runs is not None:
                await _on_store_thread(self._store_calls, functools.partial(
                    self.runs.acquire_thread, thread_id, run_id, owner, self.settings.lease_s))
        except BaseException as exc:
            if not busy:
                with self._busy_lock:
                    self._busy_threads.discard(thread_id)
            if self.runs is not None:
                self._undo_claim(thread_id, run_id, owner, give_back,
                                 taken=not busy and not isinstance(exc, RequestError))
            if request_id is not None and isinstance(exc, ThreadBusyError):
                raise RequestRunningError(f"{exc}; request {request_id!r} is asked again "
                                          "once it is free") from None
            raise
        hold = _ThreadHold(thread_id, owner, self.runs)
        try:
            yield hold
        finally:
            try:
                if not hold.queued and self.runs is not None:  # else with the record
                    await _landed(hold.give_back, self._store_calls)
            finally:
                with self._busy_lock:
                    self._busy_threads.discard(thread_id)

    def _undo_claim(self, thread_id: str, run_id: str, owner: Owner, give_back: str | None,
                    *, taken: bool) -> None:
        """A thread claim that failed: the run claim taken before goes back to
        ``give_back``; when the thread's lease may have been taken (a store error, a
        cancellation while it was asked for), it is released, after that call."""
        runs = self.runs
        assert runs is not None
        if not taken:  # refused: nothing was taken, the store answered
            if give_back is not None:
                runs.set_status(run_id, give_back, owner)
            return

        def undo() -> None:
            runs.release_thread(thread_id, owner)
            if give_back is not None:
                runs.set_status(run_id, give_back, owner)

        with contextlib.suppress(RuntimeError):  # no running loop: nothing to undo with
            _queue_store_call(self._store_calls, undo).add_done_callback(_retrieved)

    async def _keep_claims(self, run_id: str, thread_id: str, owner: Owner,
                           lost: list[str], work: asyncio.Task[Any] | None) -> None:
        """Renew the run's and the thread's leases while the run works; once they are lost,
        say why in ``lost`` and stop the run (``work``, the task running it) at once."""
        runs, lease = self.runs, self.settings.lease_s
        assert runs is not None
        loss = await keep_lease(lambda: runs.renew(run_id, thread_id, owner, lease), lease)
        lost.append(self._lost_reason(run_id, thread_id, owner, loss))
        if work is not None:
            work.cancel()

    def _lost_reason(self, run_id: str, thread_id: str, owner: Owner, loss: LostLease) -> str:
        """What the result of a run this process lost says."""
        run, lease = run_id[:12], f"{self.settings.lease_s:g}s"
        if not loss.taken:
            return (f"run {run} stopped: this process could not renew its lease of {lease} "
                    f"before it ran out ({loss.error}), so another process could take the "
                    f"run over; continue it with `orchestrator resume {run}`")
        record: dict[str, Any] = {}
        with contextlib.suppress(RequestError, sqlite3.Error, OSError):
            assert self.runs is not None
            record = self.runs.run(run_id)
        if record.get("owner") == owner.token:  # the run is still ours, its thread is not
            return (f"run {run} stopped: its thread {thread_id!r} was taken over by another "
                    f"process after this process's lease of {lease} ran out; continue it "
                    f"with `orchestrator resume {run}`")
        by = ""
        if record.get("pid") is not None:
            where = "" if record["host"] == HOST else f" on {record['host']}"
            by = f" (pid {record['pid']}{where})"
        return (f"run {run} was taken over by another process{by} after this process's "
                f"lease of {lease} ran out; this process stopped it at once and left the run "
                f"and its record to that process (`orchestrator trace {run}`)")

    async def _repeated(self, request_id: str, text: str, thread_id: str | None,
                        on_event: EventSink | None,
                        on_answer_chunk: AnswerChunkSink | None = None) -> RunResult | None:
        """What sending ``request_id`` again gives: None for a new id, else the earlier
        run's result, or that run continued when it was interrupted."""
        store = self._store("a request id")
        if not _REQUEST_ID.fullmatch(request_id):
            raise RequestError(f"request id {request_id[:40]!r} must be 1-200 letters, digits "
                               "or . _ : / - (e.g. a UUID)")
        record = await asyncio.to_thread(store.find_request, request_id)
        if record is None:
            return None
        earlier, status = record["run_id"], record["status"]
        if record["request"] != store.capped(text) or thread_id not in (None,
                                                                         record["thread_id"]):
            raise RequestError(f"request id {request_id!r} was used for another request (run "
                               f"{earlier[:12]}); give each new request a new id")
        if status == "interrupted":
            return await self.aresume_run(earlier, on_event=on_event,
                                          on_answer_chunk=on_answer_chunk)
        if status in ("running", "resuming"):
            where = "" if record["host"] == HOST else f" on {record['host']}"
            raise RequestRunningError(
                f"request {request_id!r} is still running as run {earlier[:12]} (pid "
                f"{record['pid']}{where}); send it again when it has finished to get its "
                "result")
        return await self._stored_result(record)

    async def _stored_result(self, record: dict[str, Any]) -> RunResult:
        """A finished or paused run's result, from the run store (and a paused run's
        checkpoint, for what it waits for)."""
        assert self.runs is not None
        run_id, thread = record["run_id"], record["thread_id"]
        events = await asyncio.to_thread(self.runs.events, run_id)
        pending: list[ApprovalRequest] = []
        if record["status"] == "paused":
            async with self._graph() as graph:
                snapshot = await graph.aget_state(_config(thread))
            if snapshot.values.get("run_id") == run_id:
                pending = _waiting_approvals(snapshot)
        try:
            plan = Plan.model_validate(record["plan"]) if record["plan"] else None
            results = {k: SubtaskResult.from_dict(v)
                       for k, v in (record["results"] or {}).items()}
        except (TypeError, ValueError):  # cut short by the store's size cap
            plan, results = None, {}
        status = record["status"] if record["status"] in FINISHED_RUN_STATUSES | {
            "paused"} else "failed"
        return RunResult(
            run_id=run_id, thread_id=thread, request=record["request"],
            answer=record["answer"] or "", status=cast(RunStatus, status), plan=plan,
            results=results, usage=Usage(record["llm_calls"] or 0, record["input_tokens"] or 0,
                                         record["output_tokens"] or 0),
            elapsed_s=record["elapsed_s"] or 0.0, error=record["error"], events=events,
            pending_approvals=pending, mode=record["mode"] or "",
            budget_hit=record["budget_hit"])

    def _store(self, needs: str) -> BaseRunStore:
        if self.runs is None:
            raise RequestError(f"{needs} needs the run store (ORCHESTRATOR_RECORD_RUNS is off)")
        return self.runs

    async def _refuse_workflow_run(self, run_id: str, action: Literal["approve", "resume"]
                                   ) -> None:
        """DrivenElsewhereError when this local orchestrator is asked to act on a run its
        Temporal workflow drives (a run the store never saw is not refused)."""
        if self.driver != "local" or self.runs is None:
            return
        try:
            record = await asyncio.to_thread(self.runs.run, run_id)
        except RequestError:
            return
        refuse_workflow_run(record, action)

    def _nothing_paused(self, thread_id: str, run_id: str | None) -> str:
        message = f"thread {thread_id!r} has no paused run to resume"
        if run_id and self.runs is not None:
            try:
                status = self.runs.run(run_id)["status"]
            except RequestError:  # a run this store never saw
                return message
            if status == "interrupted":
                message += (f": its run {run_id[:12]} was interrupted; continue it with "
                            f"`orchestrator resume {run_id[:12]}`")
        return message

    def check_request(self, request: str) -> str:
        """The request stripped; RequestError if it is empty, not valid Unicode text or over
        the size limit."""
        text = (request or "").strip()
        if not text:
            raise RequestError("the request is empty: say what you need done")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: no store or model can hold it
            raise RequestError(f"the request holds an unpaired surrogate at character "
                               f"{exc.start}, which is not text: send valid UTF-8") from None
        limit = self.settings.max_request_chars
        if len(text) > limit:
            raise RequestError(
                f"the request is {len(text)} characters; the limit is {limit} "
                "(raise ORCHESTRATOR_MAX_REQUEST_CHARS or shorten it)"
            )
        return text

    def check_event(self, name: str, data: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
        """The text the planner sees for an event, and its data; RequestError for a bad
        name, data that is not a JSON object, or data over ``max_event_bytes``."""
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,59}", name or ""):
            raise RequestError(f"event name {name!r} must be snake_case (e.g. service_down)")
        check_event_name(self.playbooks, name)  # a typo must not run something else
        if data is not None and not isinstance(data, Mapping):
            raise RequestError(f"event data must be a JSON object, not {type(data).__name__}")
        payload = dict(data or {})
        try:
            body = json.dumps(payload, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise RequestError(f"event data must be plain JSON: {exc}") from None
        size, limit = len(body.encode()), self.settings.max_event_bytes
        if size > limit:
            raise RequestError(f"the event data is {size} bytes; the limit is {limit} "
                               "(raise ORCHESTRATOR_MAX_EVENT_BYTES or send less)")
        depth = _nesting(payload)
        if depth > MAX_EVENT_DEPTH:  # the checkpointer's serializer stops at about 250
            raise RequestError(f"the event data is nested {depth} levels deep; at most "
                               f"{MAX_EVENT_DEPTH} are accepted")
        return f"Event {name}: {body}", payload

    @asynccontextmanager
    async def _graph(self) -> AsyncIterator[CompiledStateGraph]:
        """The graph, compiled once, with this orchestrator's checkpointer (opened on first
        use and shared by every run)."""
        self._check_open()
        if self._checkpoints is not None:
            saver = await self._checkpoints.asaver()
            if self._compiled.checkpointer is not saver:  # first use, or opened again
                self._compiled = self._compiled.copy(update={"checkpointer": saver})
        yield self._compiled

    # --- closing --------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the shared checkpointer and the stores this orchestrator opened (run no more
        requests on it after that); ``async with Orchestrator(...) as orch:`` calls it."""
        if self._checkpoints is not None:
            await self._checkpoints.aclose()
        self._close_stores()

    def close(self) -> None:
        """Synchronous :meth:`aclose` (not inside a running event loop); ``with`` calls it."""
        if self._checkpoints is not None:
            self._checkpoints.close()
        self._close_stores()

    def _close_stores(self) -> None:
        self._closed = True
        if self._bursts is not None:
            self._bursts.close()
        for store in self._opened:
            store.close()
        self._opened.clear()

    def _check_open(self) -> None:
        if getattr(self, "_closed", False):
            raise RequestError("this Orchestrator is closed: make a new one (close() ends "
                               "its use; `with Orchestrator(...) as orch:` scopes it)")

    async def __aenter__(self) -> Orchestrator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@asynccontextmanager
async def _in_scope(scope: AbstractContextManager[Any]) -> AsyncIterator[None]:
    with scope:
        yield


MAX_EVENT_DEPTH = 32
"""How deeply an event's data may nest objects and lists."""


def _nesting(value: Any) -> int:
    """How deeply ``value`` nests objects and lists (a scalar is 0), without recursion."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, Mapping | list):
            deepest = max(deepest, depth + 1)
            todo.extend((v, depth + 1) for v in (item.values() if isinstance(item, Mapping)
                                                 else item))
    return deepest


@dataclass(frozen=True)
class _ThreadLook:
    """What a look at a thread found: the approvals its paused run waits for, and its
    latest checkpoint when one read settled that (``read``: a run holding the thread may
    start from it instead of reading it again)."""

    waiting: list[ApprovalRequest]
    read: bool = False
    latest: CheckpointTuple | None = None


async def _look_at_thread(graph: CompiledStateGraph, config: RunnableConfig) -> _ThreadLook:
    """:func:`_waiting_approvals` of the thread's latest state, read whole only when its
    latest checkpoint holds pending writes (an interrupt is one): a run that ended leaves
    none, and every new request on a thread asks, so it usually costs one checkpoint read
    instead of a whole state snapshot (its next tasks worked out, every channel read)."""
    saver = graph.checkpointer
    if isinstance(saver, BaseCheckpointSaver):
        latest = await saver.aget_tuple(config)
        if latest is None or not latest.pending_writes:
            return _ThreadLook([], read=True, latest=latest)
    return _ThreadLook(_waiting_approvals(await graph.aget_state(config)))


def _waiting_approvals(snapshot: StateSnapshot) -> list[ApprovalRequest]:
    """The approvals a thread's interrupted run waits for ([] when it is not paused)."""
    return [ApprovalRequest.from_dict(a) for task in snapshot.tasks for i in task.interrupts
            for a in (i.value or {}).get("approvals", [])]


def _config(thread_id: str, run_id: str | None = None) -> RunnableConfig:
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}, "recursion_limit": 100}
    if run_id is not None:  # kept in each checkpoint's metadata: whose checkpoint it is
        config["metadata"] = {"orchestrator_run_id": run_id}
    return config


def _checkpoint_run(snapshot: StateSnapshot) -> str | None:
    """The run a thread's latest checkpoint belongs to (stores from before the metadata:
    the run in its state)."""
    found = (snapshot.metadata or {}).get("orchestrator_run_id")
    return str(found) if found else snapshot.values.get("run_id")


def _inputs(text: str, run_id: str, event: dict[str, Any] | None,
            history: Sequence[BaseMessage] = ()) -> dict[str, Any]:
    return {"messages": [*history, HumanMessage(text)], "request": text, "run_id": run_id,
            "event": event}


def _not_interrupted(record: dict[str, Any]) -> str:
    run, status = record["run_id"][:12], record["status"]
    if status == "paused":
        return (f"run {run} is waiting for approval, not interrupted: orchestrator approve "
                f"{record['thread_id']} [--deny]")
    if status in ("running", "resuming"):
        where = "" if record["host"] == HOST else f" on {record['host']}"
        return (f"run {run} is still running (pid {record['pid']}{where}); it can be resumed "
                "once that process is gone")
    return f"run {run} has finished ({status}); there is nothing to resume"


def _run_result(values: dict[str, Any], thread_id: str, run_id: str, request: str,
                elapsed: float, events: list[Event], paused: list[ApprovalRequest]
                ) -> RunResult:
    results = {key: SubtaskResult.from_dict(value)
               for key, value in (values.get("results") or {}).items()}
    usage = Usage.from_dict(values.get("supervisor_usage"))
    for result in results.values():
        usage = usage + result.usage
    plan = Plan.model_validate(values["plan"]) if values.get("plan") else None
    error = values.get("error")
    status: RunStatus = run_status(results, paused=bool(paused), error=error,
                                   answered=bool(values.get("answer")))
    return RunResult(
        run_id=run_id, thread_id=thread_id, request=request, answer=values.get("answer", ""),
        status=status, plan=plan, results=results, usage=usage,
        elapsed_s=elapsed, error=error, events=events, pending_approvals=paused,
        mode=values.get("mode", ""), budget_hit=values.get("budget_hit"),
    )
