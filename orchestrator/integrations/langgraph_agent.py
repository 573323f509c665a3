"""Any compiled LangGraph graph with a messages channel as a specialist.

The graph gets the subtask as one human message; each tool call it makes (an AI message's
tool call and the tool message that answers it, at any depth of subgraphs) is reported as
it happens, so it shows in our events and tool-call records; its last AI message is the
subtask's output, and its AI messages' ``usage_metadata`` are the usage.

What it may do is read from its tools when a :class:`~langgraph.prebuilt.ToolNode` shows
them (our policy: :func:`orchestrator.agents.policy.read_only`, ``writes``, MCP
annotations; an undeclared tool is a write); otherwise it must be declared with ``kind``.

Example:
    ```python
    graph = builder.compile()   # e.g. an agent node and ToolNode([check_host, open_ticket])
    spec = langgraph_agent_spec("service_desk", graph,
                                description="Opens tickets in the service desk.",
                                skills=["open a ticket"])
    Orchestrator("fake", agents=[spec])
    ```
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.utils import convert_to_messages
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.errors import GraphRecursionError
from langgraph.graph import StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.pregel import Pregel

from orchestrator.agents.external import (
    ExternalReply,
    ExternalTask,
    ExternalToolCall,
    Report,
)
from orchestrator.agents.policy import READ_ONLY, ToolKind, is_read_only, tool_kind
from orchestrator.agents.spec import AgentSpec
from orchestrator.errors import ConfigError
from orchestrator.integrations._transient import retryable

INTERRUPT = "__interrupt__"


class LangGraphAgent:
    """An :class:`~orchestrator.agents.external.ExternalAgent` that runs a LangGraph graph.

    Args:
        graph: A compiled graph (an uncompiled ``StateGraph`` is compiled as is) whose
            state has a messages channel named ``input_key``.
        kind: What it may do. Default: read-only when every tool of its ``ToolNode``\\ s is
            read-only by our policy, else a write; required when no ``ToolNode`` is found.
        input_key: The messages channel the subtask goes into and the answer comes from.

    Raises:
        ConfigError: ``kind`` is missing and the tools are not known, or ``kind`` says
            read-only while a known tool writes.
    """

    reports_writes = True
    """Its tools run in this process and each call is reported as it ends."""

    def __init__(self, graph: Pregel[Any, Any, Any, Any] | StateGraph[Any, Any, Any, Any], *,
                 kind: ToolKind | None = None, input_key: str = "messages") -> None:
        self.graph: Pregel[Any, Any, Any, Any] = (
            graph.compile() if isinstance(graph, StateGraph) else graph)
        self.input_key = input_key
        self.tools = graph_tools(self.graph)
        """The graph's tools by name, or None when no ``ToolNode`` shows them."""
        self.kind = declared_kind(self.tools, kind, what=f"graph {self.graph.name!r}")

    async def run(self, task: ExternalTask, report: Report) -> ExternalReply:
        """Run the graph on the subtask; a lost connection or a timeout is raised (the
        engine retries), a graph that ran out of steps or waits for a person fails."""
        reading = _Reading(self, report)
        config: RunnableConfig = {"configurable": {"thread_id": task.context_id},
                                  "run_name": f"subtask {task.subtask_id}"}
        try:
            async for namespace, update in self.graph.astream(
                    {self.input_key: [HumanMessage(task.text())]}, config,
                    stream_mode="updates", subgraphs=True):
                if isinstance(update, Mapping) and INTERRUPT in update:
                    return reading.reply(status="failed", error=(
                        "the graph stopped to wait for input (an interrupt), which a "
                        "subtask cannot give"))
                reading.read(namespace, update)
        except GraphRecursionError as exc:
            return reading.reply(status="failed", error=f"the graph ran out of steps: {exc}")
        except Exception as exc:
            transient = retryable(exc)
            if transient is None or transient is exc:
                raise
            raise transient from exc
        return reading.reply()


class _Reading:
    """What one run of the graph said so far: calls waiting for their result, usage, and
    the last AI message (of the graph itself, not of a subgraph, when there is one)."""

    def __init__(self, agent: LangGraphAgent, report: Report) -> None:
        self.agent, self.report = agent, report
        self.calls: dict[str, tuple[str, dict[str, Any]]] = {}
        self.seen_ai: set[str] = set()
        self.answered: set[str] = set()
        self.last: AIMessage | None = None
        self.last_nested: AIMessage | None = None
        self.llm_calls = self.input_tokens = self.output_tokens = 0

    def read(self, namespace: Sequence[str], update: Any) -> None:
        for written in (update.values() if isinstance(update, Mapping) else ()):
            for message in self._messages(written):
                if isinstance(message, AIMessage):
                    self._ai(message, nested=bool(namespace))
                elif isinstance(message, ToolMessage):
                    self._tool(message)

    def _messages(self, written: Any) -> list[BaseMessage]:
        """The messages one node wrote to the messages channel (a list or one; a node that
        returned several commands wrote a list of updates)."""
        if isinstance(written, list | tuple):
            return [m for each in written for m in self._messages(each)]
        if not isinstance(written, Mapping) or written.get(self.agent.input_key) is None:
            return []
        value = written[self.agent.input_key]
        items = value if isinstance(value, list | tuple) else [value]
        try:
            return convert_to_messages(items)
        except (ValueError, TypeError, NotImplementedError):  # not messages: not ours to read
            return []

    def _ai(self, message: AIMessage, *, nested: bool) -> None:
        if nested:
            self.last_nested = message
        else:
            self.last = message
        if message.id is not None:
            # A subgraph's messages come again in its parent's update: count them once.
            if message.id in self.seen_ai:
                return
            self.seen_ai.add(message.id)
        if message.usage_metadata:
            self.llm_calls += 1
            self.input_tokens += message.usage_metadata.get("input_tokens", 0)
            self.output_tokens += message.usage_metadata.get("output_tokens", 0)
        for call in message.tool_calls:
            if call.get("id"):
                self.calls[str(call["id"])] = (call["name"], dict(call["args"]))

    def _tool(self, message: ToolMessage) -> None:
        call_id = message.tool_call_id
        if call_id in self.answered:
            return
        self.answered.add(call_id)
        name, args = self.calls.pop(call_id, (message.name or "tool", {}))
        self.report(ExternalToolCall(name=name, args=args, output=message.text,
                                     ok=message.status != "error", write=self._writes(name)))

    def _writes(self, name: str) -> bool:
        tools = self.agent.tools
        if tools is not None and name in tools:
            return not is_read_only(tools[name])
        return not self.agent.kind.read_only

    def reply(self, *, status: str = "done", error: str | None = None) -> ExternalReply:
        last = self.last or self.last_nested
        return ExternalReply(output=last.text if last is not None else "",
                             status="failed" if status == "failed" else "done", error=error,
                             llm_calls=self.llm_calls, input_tokens=self.input_tokens,
                             output_tokens=self.output_tokens)


def graph_tools(graph: Pregel[Any, Any, Any, Any]) -> dict[str, BaseTool] | None:
    """The tools of every ``ToolNode`` in ``graph`` and its subgraphs, by name; None when
    there is no ``ToolNode`` (the graph calls its tools some other way)."""
    graphs: list[Any] = [graph, *(sub for _, sub in graph.get_subgraphs(recurse=True))]
    nodes = [node.bound for g in graphs for node in getattr(g, "nodes", {}).values()]
    tool_nodes = [n for n in nodes if isinstance(n, ToolNode)]
    if not tool_nodes:
        return None
    return {name: tool for n in tool_nodes for name, tool in n.tools_by_name.items()}


def declared_kind(tools: Mapping[str, Any] | None, kind: ToolKind | None, *, what: str
                  ) -> ToolKind:
    """What an agent with ``tools`` (None: not known) may do: ``kind`` when given (checked
    against the tools), else read-only when every tool is, else a write that is as
    destructive, idempotent and open-world as its writes are.

    Raises:
        ConfigError: the tools are unknown and ``kind`` is not given, or ``kind`` is
            read-only and a tool writes.
    """
    if tools is None:
        if kind is None:
            raise ConfigError(f"{what}: its tools are not known (no ToolNode), so say what it "
                              "may do with kind= (READ_ONLY, or a ToolKind for a write)")
        return kind
    writers = sorted(name for name, tool in tools.items() if not is_read_only(tool))
    if kind is not None:
        if kind.read_only and writers:
            raise ConfigError(f"{what} is declared read-only but its tool(s) "
                              f"{', '.join(writers)} write (declare them read_only if not)")
        return kind
    if not writers:
        return READ_ONLY
    kinds = [tool_kind(tools[name]) for name in writers]
    return ToolKind(read_only=False, destructive=any(k.destructive for k in kinds),
                    idempotent=all(k.idempotent for k in kinds),
                    open_world=any(tool_kind(t).open_world for t in tools.values()))


def langgraph_agent_spec(name: str, graph: Pregel[Any, Any, Any, Any]
                         | StateGraph[Any, Any, Any, Any], *, description: str,
                         skills: Iterable[str] = (), kind: ToolKind | None = None,
                         domain: str = "general", input_key: str = "messages") -> AgentSpec:
    """An :class:`AgentSpec` whose subtasks ``graph`` runs (see :class:`LangGraphAgent`)."""
    return AgentSpec(name=name, description=description, skills=list(skills), domain=domain,
                     external=LangGraphAgent(graph, kind=kind, input_key=input_key))
