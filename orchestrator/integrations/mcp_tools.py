"""Tools from MCP servers, for the agents whose cards name them.

A card names a server (a command over stdio, or a URL over streamable HTTP, with headers)
and which of its tools the agent may use: an allowlist, or every tool only when it says
``all_tools: true``. The tools are converted by langchain-mcp-adapters and keep their MCP
annotations (read-only, destructive, idempotent, open-world), which are the tool kinds of
:mod:`orchestrator.agents.policy`: a read-only MCP tool may serve a question, a write only
an action, and ``approval`` makes writes (all, the destructive ones, or named ones) wait
for a person, like any tool of ours.

Sessions live on one thread and event loop of this process (:class:`McpHub`), whatever
loop the engine calls from: a server is started on first use, its session reused by every
agent that names the same server, started again after it dies, and closed when the process
exits. A server that does not start, a call that times out or an error the server returns
fails that tool call with one line that says so, which fails (or retries) the subtask
like any tool error; nothing waits forever.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import json
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from langchain_core.tools import BaseTool, StructuredTool

from orchestrator.agents.policy import is_read_only, policy_of, requires_approval, writes
from orchestrator.errors import ConfigError

log = logging.getLogger(__name__)
_T = TypeVar("_T")

START_TIMEOUT_S = 30.0
"""How long a server may take to start and list its tools."""
CALL_TIMEOUT_S = 60.0
"""How long one tool call may take, unless the card says otherwise."""
RETRY_AFTER_S = 10.0
"""After a server failed to start, how long until it is tried again (not on every plan)."""


class McpUnavailable(RuntimeError):
    """An MCP server could not be reached, or a call to it failed for want of it."""


@dataclass(frozen=True)
class McpServer:
    """One MCP server an agent may use, and which of its tools (its card's ``mcp`` entry)."""

    name: str
    """What the card calls it (in errors and events)."""
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] | None = None
    cwd: str | None = None
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    tools: tuple[str, ...] = ()
    """The allowlist of the server's tools the agent may use."""
    all_tools: bool = False
    """Every tool the server lists (only when the card says so)."""
    approval: Literal["none", "writes", "destructive"] | tuple[str, ...] = "none"
    """Which of its tools need a person's approval: none, every write, the destructive
    writes, or the named tools."""
    timeout_s: float = CALL_TIMEOUT_S
    prefix: str = ""
    """Put before each tool's name (when two servers have a tool of the same name)."""
    trust_annotations: bool = True
    """Take what the server's annotations say a tool does; when False every tool is a
    destructive write unless ``read_only`` names it."""
    read_only: tuple[str, ...] = ()
    """Tools the card says only read, whatever the server says."""

    def __post_init__(self) -> None:
        if (self.command is None) == (self.url is None):
            raise ConfigError(f"MCP server {self.name!r}: give either a command (stdio) or a "
                              "url (streamable HTTP)")
        if not self.tools and not self.all_tools:
            raise ConfigError(f"MCP server {self.name!r}: list the tools the agent may use "
                              "(tools: [...]), or say all_tools: true")
        if self.tools and self.all_tools:
            raise ConfigError(f"MCP server {self.name!r}: give tools or all_tools, not both")
        if self.timeout_s <= 0:
            raise ConfigError(f"MCP server {self.name!r}: timeout_s must be positive")

    @property
    def key(self) -> str:
        """What identifies the server process or endpoint (one session per key)."""
        return json.dumps([self.command, self.args, self.env, self.cwd, self.url,
                           self.headers])

    def connection(self) -> dict[str, Any]:
        """The langchain-mcp-adapters connection config."""
        if self.url is not None:
            return {"transport": "streamable_http", "url": self.url,
                    "headers": dict(self.headers) or None}
        return {"transport": "stdio", "command": self.command, "args": list(self.args),
                "env": dict(self.env) if self.env is not None else None, "cwd": self.cwd}

    def where(self) -> str:
        return self.url or " ".join([self.command or "", *self.args]).strip()


@dataclass
class _Live:
    """A started session, owned by a task of the hub's loop (anyio's contexts must be left
    by the task that entered them)."""

    session: Any
    tools: list[Any]
    stop: asyncio.Event
    owner: asyncio.Task[None]
    dead: bool = False


@dataclass
class _Server:
    live: _Live | None = None
    starting: asyncio.Future[_Live] | None = None
    failed_at: float = 0.0
    failure: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


class McpHub:
    """The process's MCP sessions, on a thread and event loop of their own."""

    _shared: McpHub | None = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        # Made in a context of its own, as are the jobs it runs (see _submit): the loop's
        # own handles keep the context they were made in, and the hub outlives the run that
        # first needed it (a run's context holds its event writer, listeners and events).
        self._loop = contextvars.Context().run(asyncio.new_event_loop)
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp-sessions",
                                        daemon=True)
        self._thread.start()
        self._servers: dict[str, _Server] = {}
        self._closed = False

    @classmethod
    def shared(cls) -> McpHub:
        """The hub of this process (started on first use, closed at exit)."""
        with cls._shared_lock:
            if cls._shared is None or cls._shared._closed:
                cls._shared = McpHub()
                atexit.register(cls._shared.close)
            return cls._shared

    # --- from any thread ------------------------------------------------------------------

    def run(self, make: Callable[[], Awaitable[_T]], timeout: float) -> _T:
        """Run ``make()`` on the hub's loop and wait for it (from a thread not the hub's)."""
        future = self._submit(make)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    async def arun(self, make: Callable[[], Awaitable[_T]], timeout: float) -> _T:
        """Run ``make()`` on the hub's loop and await it from the caller's loop."""
        future = self._submit(make)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except (TimeoutError, asyncio.CancelledError):
            future.cancel()
            raise

    def close(self) -> None:
        """Close every session (stopping stdio servers) and the hub's loop."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _submit(self, make: Callable[[], Awaitable[_T]]) -> Future[_T]:
        if self._closed:
            raise McpUnavailable("the MCP sessions are closed (the orchestrator is stopping)")

        async def job() -> _T:
            return await make()
        # In a context of its own: a job started from a run would otherwise carry that run's
        # (its event sinks and checkpoint barrier) into the sessions it starts, which outlive
        # the run by far.
        return contextvars.Context().run(asyncio.run_coroutine_threadsafe, job(), self._loop)

    # --- on the hub's loop ----------------------------------------------------------------

    async def live(self, server: McpServer) -> _Live:
        """The server's session, started (again) when there is none."""
        state = self._servers.setdefault(server.key, _Server())
        if state.live is not None and not state.live.dead and not state.live.owner.done():
            return state.live
        if state.starting is None:
            if state.failure and time.monotonic() - state.failed_at < RETRY_AFTER_S:
                raise McpUnavailable(state.failure)
            state.starting = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().create_task(self._own(server, state))
        starting = state.starting
        return await asyncio.shield(starting)

    async def _own(self, server: McpServer, state: _Server) -> None:
        from langchain_mcp_adapters.sessions import create_session

        assert state.starting is not None
        ready = state.starting
        stop = asyncio.Event()
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                context = create_session(server.connection())  # type: ignore[arg-type]
                session = await context.__aenter__()
        except BaseException as exc:  # any failure to start is the start failure
            self._failed(server, state, ready, exc)
            return
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await session.initialize()
                tools = await _list_tools(session)
        except BaseException as exc:  # any failure to start is the start failure
            self._failed(server, state, ready, exc)
            with contextlib.suppress(BaseException):
                await context.__aexit__(None, None, None)
            return
        current = asyncio.current_task()
        assert current is not None
        state.live = _Live(session, tools, stop, current)
        state.starting, state.failure = None, ""
        ready.set_result(state.live)
        try:
            await stop.wait()
        finally:
            with contextlib.suppress(BaseException):
                await context.__aexit__(None, None, None)

    def _failed(self, server: McpServer, state: _Server, ready: asyncio.Future[_Live],
                exc: BaseException) -> None:
        why = ("it did not answer within "
               f"{START_TIMEOUT_S:g} s" if isinstance(exc, TimeoutError) else _reason(exc))
        state.failure = (f"MCP server {server.name!r} ({server.where()}) did not start: {why}; "
                         "check its command or URL")
        state.failed_at, state.starting = time.monotonic(), None
        log.warning("%s", state.failure)
        if not ready.done():
            ready.set_exception(McpUnavailable(state.failure))
            ready.exception()  # retrieved here too: not every start has a waiter left

    async def call(self, server: McpServer, tool: str, args: dict[str, Any]) -> Any:
        """Call ``tool`` with ``args``; a session that broke is marked dead (the next call
        starts the server again) and the call fails with a clear error."""
        live = await self.live(server)
        try:
            return await live.session.call_tool(tool, args)
        except Exception as exc:
            if _broken(exc):
                live.dead = True
                live.stop.set()
                raise McpUnavailable(f"MCP server {server.name!r} went away during "
                                     f"{tool}: {_reason(exc)}; it is started again on the "
                                     "next call") from None
            raise

    async def _close_all(self) -> None:
        for state in self._servers.values():
            if state.live is not None:
                state.live.stop.set()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(state.live.owner, 5)


async def _list_tools(session: Any) -> list[Any]:
    tools: list[Any] = []
    cursor: str | None = None
    while True:
        page = await session.list_tools(cursor)
        tools.extend(page.tools)
        cursor = page.nextCursor
        if not cursor:
            return tools


def _broken(exc: BaseException) -> bool:
    """Whether ``exc`` means the session is gone (not an error the tool returned)."""
    import anyio

    if isinstance(exc, anyio.ClosedResourceError | anyio.BrokenResourceError |
                  anyio.EndOfStream | ConnectionError | EOFError):
        return True
    return "connection closed" in str(exc).lower()


def _reason(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class McpToolset:
    """The tools one agent may use from one MCP server (an ``AgentSpec`` toolset)."""

    def __init__(self, server: McpServer, hub: McpHub | None = None) -> None:
        self.server = server
        self._hub = hub
        self._tools: list[BaseTool] | None = None

    @property
    def name(self) -> str:
        return f"mcp:{self.server.name}"

    @property
    def hub(self) -> McpHub:
        return self._hub or McpHub.shared()

    async def aload(self) -> list[BaseTool]:
        """The allowed tools (listing them starts the server on first use); McpUnavailable
        when the server cannot be reached, ConfigError for an allowlist it does not meet."""
        if self._tools is None:
            hub = self.hub
            live = await hub.arun(lambda: hub.live(self.server), START_TIMEOUT_S + 5)
            self._tools = self._convert(live.tools)
        return self._tools

    def loaded(self) -> list[BaseTool] | None:
        return self._tools

    def _convert(self, listed: list[Any]) -> list[BaseTool]:
        by_name = {t.name: t for t in listed}
        if self.server.tools:
            missing = [n for n in self.server.tools if n not in by_name]
            if missing:
                raise ConfigError(
                    f"MCP server {self.server.name!r} has no tool {', '.join(missing)} (it "
                    f"has: {', '.join(sorted(by_name)) or 'none'})")
            chosen = [by_name[n] for n in self.server.tools]
        else:
            chosen = [t for t in listed if _TOOL_NAME.fullmatch(t.name)]
            for odd in (t for t in listed if not _TOOL_NAME.fullmatch(t.name)):
                log.warning("MCP server %r: tool %r left out (a tool name is letters, digits, "
                            "_ . - only)", self.server.name, odd.name[:80])
        return [self._tool(t) for t in chosen]

    def _tool(self, listed: Any) -> BaseTool:
        server, hub, remote = self.server, self.hub, listed.name

        async def call(**args: Any) -> str:
            result = await hub.arun(lambda: hub.call(server, remote, args), server.timeout_s)
            return _text_of(server, remote, result)

        def call_sync(**args: Any) -> str:
            result = hub.run(lambda: hub.call(server, remote, args), server.timeout_s)
            return _text_of(server, remote, result)

        annotations = (listed.annotations.model_dump(exclude_none=True)
                       if listed.annotations is not None else {})
        if remote in server.read_only:  # the card vouches for it
            annotations = {"readOnlyHint": True, "destructiveHint": False}
        elif not server.trust_annotations:  # hints from the server do not count
            annotations = {"readOnlyHint": False, "destructiveHint": True}
        tool = StructuredTool(
            name=f"{server.prefix}{remote}", description=listed.description or remote,
            args_schema=listed.inputSchema, coroutine=call, func=call_sync,
            metadata={**annotations, "mcp_server": server.name})
        return self._with_approval(tool)

    def _with_approval(self, tool: BaseTool) -> BaseTool:
        rule = self.server.approval
        named = isinstance(rule, tuple) and tool.name.removeprefix(self.server.prefix) in rule
        if named and is_read_only(tool):
            # The card's word wins over the server's annotations (hints a server may get
            # wrong or lie about): a tool it names for approval is a write that waits.
            tool = writes(tool)
        if rule == "none" or is_read_only(tool):
            return tool
        kind = policy_of(tool).effective_kind
        needs = (rule == "writes" or (rule == "destructive" and kind.destructive) or named)
        if not needs:
            return tool
        return requires_approval(tool, reason=f"{tool.name} (MCP server {self.server.name}) "
                                 "needs an approval")


def _text_of(server: McpServer, tool: str, result: Any) -> str:
    """The call result's text; an error the tool returned raises with its text."""
    parts = []
    for block in getattr(result, "content", None) or []:
        text = getattr(block, "text", None)
        parts.append(text if text is not None else json.dumps(
            block.model_dump(exclude_none=True), default=str))
    text = "\n".join(parts)
    if not parts and getattr(result, "structuredContent", None) is not None:
        text = json.dumps(result.structuredContent, default=str)
    if getattr(result, "isError", False):
        raise RuntimeError(f"{tool} (MCP server {server.name}) failed: {text or 'no detail'}")
    return text


_TOOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""A tool name a model provider takes (others are left out of ``all_tools``)."""
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expanded(values: Mapping[str, str], where: str) -> dict[str, str]:
    """``values`` with each ``${VAR}`` taken from the environment (secrets stay out of
    cards); a variable that is not set is a ConfigError naming it."""
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{where}: the environment variable {name} is not set")
        return os.environ[name]
    return {key: _VARIABLE.sub(one, value) for key, value in values.items()}


def mcp_server_from_card(entry: Mapping[str, Any], source: str) -> McpServer:
    """An :class:`McpServer` from one entry of a card's ``mcp`` list (already validated by
    the card schema)."""
    approval = entry.get("approval") or "none"
    if not isinstance(approval, list) and approval not in ("none", "writes", "destructive"):
        raise ConfigError(f"{source}: MCP server {entry['server']!r}: approval is none, "
                          f"writes, destructive or a list of tool names, not {approval!r}")
    where = f"{source}: MCP server {entry['server']!r}"
    env = entry.get("env")
    return McpServer(
        name=entry["server"], command=entry.get("command"), args=tuple(entry.get("args") or ()),
        env=tuple(sorted(expanded(env, where).items())) if env is not None else None,
        cwd=entry.get("cwd"), url=entry.get("url"),
        headers=tuple(sorted(expanded(entry.get("headers") or {}, where).items())),
        tools=tuple(entry.get("tools") or ()), all_tools=bool(entry.get("all_tools")),
        approval=tuple(approval) if isinstance(approval, list) else cast(Any, approval),
        timeout_s=float(entry.get("timeout_s") or CALL_TIMEOUT_S),
        prefix=entry.get("prefix") or "",
        trust_annotations=bool(entry.get("trust_annotations", True)),
        read_only=tuple(entry.get("read_only") or ()))
