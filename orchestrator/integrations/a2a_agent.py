"""Remote specialists over the A2A protocol (a2a-sdk): a subtask becomes one A2A message to
the remote agent, its task's status updates become ``agent_status`` events, and its
artifacts (or its reply message) the subtask's output.

The remote agent gets the goal and the outputs of the subtask's dependencies, nothing else
(:meth:`ExternalTask.text`), in the A2A context ``<run id>:<subtask id>``. Its agent card,
read from ``<url>/.well-known/agent-card.json``, gives the description and skills the
planner sees unless they are given.

Example:
    ```python
    pager = a2a_agent_spec("pager", "https://pager.example.com",
                           headers={"Authorization": "Bearer ..."})
    orch = Orchestrator("openai:gpt-4o-mini", agents=[*builtin_agents(), pager])
    ```
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import AsyncGenerator, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import httpx
from a2a.client import (
    A2ACardResolver,
    A2AClientError,
    A2AClientTimeoutError,
    AgentCardResolutionError,
    Client,
    ClientConfig,
    ClientFactory,
)
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, TransportProtocol
from a2a.utils.errors import A2AError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.agents.external import (
    ExternalReply,
    ExternalTask,
    ExternalUnreachable,
    Report,
)
from orchestrator.agents.policy import ToolKind
from orchestrator.agents.spec import AgentSpec
from orchestrator.errors import ConfigError
from orchestrator.integrations._a2a_replies import NEEDS_INPUT, TaskProgress
from orchestrator.integrations.mcp_tools import expanded

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 120.0
"""Longest wait for the remote agent's next word (a response, the next streamed event)."""
CONNECT_TIMEOUT_S = 10.0
CARD_TIMEOUT_S = 10.0
"""Longest wait for the agent card when a spec is made (at start-up)."""
CANCEL_WAIT_S = 2.0
"""How long a remote task left behind (cut at the timeout, or waiting for input) is given
to acknowledge its cancellation; the subtask does not wait longer."""
MAX_SKILLS = 24

READS = ToolKind(read_only=True, destructive=False, idempotent=True, open_world=True)
"""A remote agent declared read-only: it may take questions."""
WRITES = ToolKind(read_only=False, destructive=True, idempotent=False, open_world=True)
"""Any other remote agent: it may change things, as MCP assumes of an undeclared tool."""


class A2AAgent:
    """An :class:`~orchestrator.agents.external.ExternalAgent` that is a remote A2A agent.

    One HTTP client per event loop is reused by every subtask run in that loop; it is closed
    when the loop shuts down (``asyncio.run`` ends) or on :meth:`aclose`.
    """

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None, kind: ToolKind,
                 timeout_s: float = DEFAULT_TIMEOUT_S, card: AgentCard | None = None) -> None:
        """``card``: the remote agent card when already read (else read on first use)."""
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"A2A agent url {url!r} must start with http:// or https://")
        if timeout_s <= 0:
            raise ConfigError(f"A2A agent {url}: timeout_s must be positive, not {timeout_s}")
        self.url = url.rstrip("/")
        self.kind = kind
        self.timeout_s = timeout_s
        self._headers = dict(headers or {})
        self._card = card
        self._sessions: dict[asyncio.AbstractEventLoop, _Session] = {}
        self._lock = threading.Lock()  # sync callers may run loops in several threads

    def __repr__(self) -> str:  # no headers: they may hold a key
        return f"A2AAgent({self.url!r}, read_only={self.kind.read_only})"

    async def run(self, task: ExternalTask, report: Report) -> ExternalReply:
        """Send the task as one message and follow the remote task to its end. Raises
        ConnectionError or TimeoutError (one line naming the URL) when the agent cannot
        be reached or goes quiet, so the engine retries; anything the agent decided (a
        failure, a refusal, a question back) is a failed reply saying so."""
        try:
            client = await self._client()
            return await self._exchange(client, task, report)
        except A2AClientTimeoutError:
            raise TimeoutError(f"the A2A agent at {self.url} sent nothing for "
                               f"{self.timeout_s:g}s") from None
        except A2AClientError as exc:
            status = _http_status(exc)
            if status is not None and status < 500 and status not in (408, 429):
                return ExternalReply("", status="failed", error=_http_refusal(self.url, status))
            lost = ExternalUnreachable if _not_sent(exc, status) else ConnectionError
            raise lost(f"cannot reach the A2A agent at {self.url}: {_reason(exc)}") from None
        except httpx.TransportError as exc:
            lost = ExternalUnreachable if _not_sent(exc, None) else ConnectionError
            raise lost(f"cannot reach the A2A agent at {self.url}: {_reason(exc)}") from None
        except A2AError as exc:  # a JSON-RPC error: the agent answered, and said no
            return ExternalReply("", status="failed",
                                 error=f"the A2A agent at {self.url} answered with an error: "
                                       f"{exc.message}")
        except _NoTransport as exc:
            return ExternalReply("", status="failed",
                                 error=f"the A2A agent at {self.url} cannot be called: {exc} "
                                       "(its card offers no JSON-RPC or HTTP+JSON interface)")

    async def card(self) -> AgentCard:
        """The remote agent card (read once, then kept)."""
        if self._card is None:
            async with httpx.AsyncClient(headers=self._headers, timeout=httpx.Timeout(
                    min(self.timeout_s, CARD_TIMEOUT_S))) as http:
                self._card = await A2ACardResolver(http, self.url).get_agent_card()
        return self._card

    async def aclose(self) -> None:
        """Close the HTTP clients this agent opened (it opens new ones if used again)."""
        with self._lock:
            sessions, self._sessions = self._sessions, {}
        current = asyncio.get_running_loop()
        for loop, session in sessions.items():
            if loop is current:
                await session.close()
            elif not loop.is_closed():  # a loop still running in another thread
                asyncio.run_coroutine_threadsafe(session.close(), loop)

    async def _client(self) -> Client:
        loop = asyncio.get_running_loop()
        with self._lock:
            session = self._sessions.get(loop)
        if session is not None:
            return session.client
        card = await self.card()
        http = httpx.AsyncClient(headers=self._headers, timeout=httpx.Timeout(
            self.timeout_s, connect=min(self.timeout_s, CONNECT_TIMEOUT_S)))
        factory = ClientFactory(ClientConfig(
            httpx_client=http, streaming=True, supported_protocol_bindings=[
                TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON]))
        try:
            session = _Session(http, factory.create(card))
        except ValueError as exc:  # the SDK's "no compatible transports found"
            await http.aclose()
            raise _NoTransport(str(exc)) from None
        await session.open()
        with self._lock:
            self._sessions = {k: v for k, v in self._sessions.items() if not k.is_closed()}
            kept = self._sessions.setdefault(loop, session)
        if kept is not session:  # another subtask of this loop made one meanwhile
            await session.close()
        return kept.client

    async def _exchange(self, client: Client, task: ExternalTask, report: Report
                        ) -> ExternalReply:
        request = SendMessageRequest(message=Message(
            role=Role.ROLE_USER, message_id=uuid.uuid4().hex, context_id=task.context_id,
            parts=[Part(text=task.text())]))
        seen = TaskProgress()
        try:
            # the SDK declares an iterator; it is a generator, closed here even when cut
            replies = cast(AsyncGenerator[StreamResponse, None], client.send_message(request))
            async with contextlib.aclosing(replies) as stream:
                async for response in stream:
                    seen.take(response, report)
                    if seen.over:
                        break
        except asyncio.CancelledError:  # cut at the subtask's timeout: stop the remote work
            if seen.task_id and not seen.over:
                await _cancel_remote(client, seen.task_id)
            raise
        if seen.state in NEEDS_INPUT:
            await _cancel_remote(client, seen.task_id)
        return seen.reply(self.url)


class _NoTransport(Exception):
    """The remote card offers no interface this client speaks."""


@dataclass
class _Session:
    """One event loop's HTTP client and A2A client, closed with that loop."""

    http: httpx.AsyncClient
    client: Client
    keeper: AsyncGenerator[None, None] | None = None

    async def open(self) -> None:
        # asyncio.run closes every async generator still open in its loop before the loop
        # ends (shutdown_asyncgens): this one closes the HTTP client then, in its own loop.
        async def closed_with_loop() -> AsyncGenerator[None, None]:
            try:
                yield
            finally:
                await self.http.aclose()

        self.keeper = closed_with_loop()
        await anext(self.keeper)

    async def close(self) -> None:
        await (self.keeper.aclose() if self.keeper is not None else self.http.aclose())


def a2a_agent_spec(name: str, url: str, *, headers: Mapping[str, str] | None = None,
                   read_only: bool = False, description: str | None = None,
                   skills: Sequence[str] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                   domain: str = "general", source: str = "python") -> AgentSpec:
    """An agent whose subtasks a remote A2A agent runs.

    The remote agent card fills in the description and skills not given (its skills'
    names, descriptions and tags become skill phrases). A card that cannot be read is a
    ConfigError when there is no description to go on; with one, the agent is registered
    and the card read when the agent is first used.

    Args:
        name: The agent's name here (snake_case).
        url: The remote agent's base URL; its card is at ``/.well-known/agent-card.json``.
        headers: HTTP headers for every call (an ``Authorization`` key, say).
        read_only: Declares that it only reads, so it may take questions; otherwise it is
            a write and gets only ``act`` subtasks.
        timeout_s: Longest wait for the remote agent's next word.
    """
    card: AgentCard | None = None
    if not description or not skills:
        try:
            card = fetch_agent_card(url, headers=headers,
                                    timeout_s=min(timeout_s, CARD_TIMEOUT_S))
        except ConnectionError as exc:
            if not description:
                raise ConfigError(
                    f"agent {name!r}: cannot read the A2A agent card at "
                    f"{url.rstrip('/')}{AGENT_CARD_WELL_KNOWN_PATH} ({exc}); start the remote "
                    "agent or fix its url, or give a description (and skills) to register "
                    "it while it is down") from None
            log.warning("agent %r: the A2A agent card at %s cannot be read now (%s); it is "
                        "read again when the agent is first used", name, url, exc)
    agent = A2AAgent(url, headers=headers, kind=READS if read_only else WRITES,
                     timeout_s=timeout_s, card=card)
    return AgentSpec(
        name=name, description=description or (_card_description(card) if card else ""),
        skills=list(skills or (_card_skills(card) if card else [])), domain=domain,
        source=source, external=agent)


class A2ASection(BaseModel):
    """The ``a2a:`` section of an agent card (YAML)."""

    model_config = ConfigDict(extra="forbid")

    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    read_only: bool = False
    timeout_s: float | None = Field(None, gt=0)


def a2a_spec_from_card(name: str, section: Mapping[str, Any], *,
                       description: str | None = None, skills: Sequence[str] | None = None,
                       domain: str = "general", source: str = "card") -> AgentSpec:
    """The agent of a card whose ``a2a:`` section names a remote agent.

    The section's keys: ``url`` (the remote agent's base URL, required), ``headers`` (a
    mapping; ``${VAR}`` in a value is read from the environment, so secrets stay out of
    the card), ``read_only`` (declares that it only reads, so it may take questions;
    default false), ``timeout_s`` (longest wait for its next word; default 120). The
    card's description and skills win over the remote card's; empty ones are filled from
    it (see :func:`a2a_agent_spec`).

    Example:
        ```yaml
        name: pager
        description: Pages the on-call engineer of a service.
        a2a:
          url: https://pager.example.com
          headers: {Authorization: "Bearer ${PAGER_TOKEN}"}
          read_only: false
        ```
    """
    try:
        given = A2ASection.model_validate(dict(section))
    except ValidationError as exc:
        problems = "; ".join(f"a2a.{'.'.join(map(str, e['loc'])) or 'section'}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"agent {name!r}: {problems}") from None
    headers = expanded(given.headers, f"agent {name!r}: a2a.headers")
    return a2a_agent_spec(
        name, given.url, headers=headers, read_only=given.read_only,
        description=description or None, skills=list(skills or []) or None,
        timeout_s=given.timeout_s or DEFAULT_TIMEOUT_S, domain=domain, source=source)


def fetch_agent_card(url: str, *, headers: Mapping[str, str] | None = None,
                     timeout_s: float = CARD_TIMEOUT_S) -> AgentCard:
    """Read a remote agent card (from synchronous code; inside a running event loop it is
    read in a thread of its own). ConnectionError, saying why, when it cannot be had."""
    agent = A2AAgent(url, headers=headers, kind=WRITES, timeout_s=timeout_s)

    async def read() -> AgentCard:
        try:
            return await agent.card()
        except AgentCardResolutionError as exc:
            raise ConnectionError(_reason(exc)) from None

    return _run_sync(read())


def _run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _cancel_remote(client: Client, task_id: str) -> None:
    """Ask the remote agent to drop a task we stopped following (best effort, bounded)."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.cancel_task(CancelTaskRequest(id=task_id)),
                               CANCEL_WAIT_S)


def _card_description(card: AgentCard) -> str:
    # One line, whatever the remote card holds: the planner's catalog is a line per agent,
    # and a remote agent must not add lines (agents) of its own to it.
    text = (card.description.strip() or " ".join(s.description for s in card.skills).strip()
            or f"The remote A2A agent {card.name}.")
    return " ".join(text.split())[:400]


def _card_skills(card: AgentCard) -> list[str]:
    """The card's skills as short phrases: each one's name, description and tags."""
    phrases: dict[str, str] = {}
    for skill in card.skills:
        for phrase in (skill.name, skill.description, *skill.tags):
            cleaned = " ".join(phrase.split()).rstrip(".")
            if cleaned and len(cleaned) <= 120:
                phrases.setdefault(cleaned.lower(), cleaned)
    return list(phrases.values())[:MAX_SKILLS]


def _http_status(exc: BaseException) -> int | None:
    if isinstance(exc, AgentCardResolutionError):
        return exc.status_code
    cause = exc.__cause__
    return cause.response.status_code if isinstance(cause, httpx.HTTPStatusError) else None


def _not_sent(exc: BaseException, status: int | None) -> bool:
    """Whether the message never reached the agent (no connection was made, or the server
    turned the request away unread: 429, 503), so sending it again cannot do it twice."""
    if status in (429, 503):
        return True
    root: BaseException | None = exc
    while root is not None:
        if isinstance(root, httpx.ConnectError | httpx.ConnectTimeout):
            return True
        root = root.__cause__ or root.__context__
    return False


def _http_refusal(url: str, status: int) -> str:
    hint = " (check its headers: the key it expects)" if status in (401, 403) else ""
    return f"the A2A agent at {url} answered HTTP {status}{hint}"


def _reason(exc: BaseException) -> str:
    """The root cause's message, on one line."""
    root: BaseException = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = " ".join(str(root).split()) or type(root).__name__
    return text[:300]

