"""The orchestrator as an MCP server: the tools of :mod:`orchestrator.mcp_server.tools`, each
answered through the service API (``Orchestrator`` and its ``RunRecords``).

A user error (an empty request, an unknown run, a run that is not paused) is a tool error
whose text is one line saying what is wrong and what to do; a bug is logged with its
traceback and is a tool error too: the server keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from mcp import types
from mcp.server.lowlevel import Server
from pydantic import BaseModel, ValidationError

from orchestrator.api import Orchestrator
from orchestrator.errors import OrchestratorError, RequestError
from orchestrator.mcp_server.outcomes import (
    RunLine,
    RunList,
    RunOutcome,
    approve_hint,
    outcome_of_record,
    outcome_of_result,
    outcome_text,
)
from orchestrator.mcp_server.tools import (
    PLAYBOOK_PREFIX,
    DecideApprovalArgs,
    ListRunsArgs,
    RunIdArgs,
    RunRequestArgs,
    catalogue,
)
from orchestrator.playbooks import Playbook
from orchestrator.results import RunResult

log = logging.getLogger(__name__)
NOT_NAMED = "not named in keys"
INSTRUCTIONS = (
    "An LLM orchestrator: run_request plans a request and runs specialist agents, which may "
    "change business systems; the playbook_* tools run predefined workflows. Actions that "
    "need a person's approval pause the run and the result says how to approve. list_runs, "
    "get_run and get_trace read what ran.")
ToolResult = tuple[list[types.ContentBlock], dict[str, Any]]


class OrchestratorTools:
    """The tools' behaviour over one ``Orchestrator`` (shared by every MCP session)."""

    def __init__(self, orch: Orchestrator, *, allow_approvals: bool = False,
                 cli_flags: Sequence[str] = ()) -> None:
        self.orch = orch
        self.allow_approvals = allow_approvals
        self.cli_flags = list(cli_flags)
        self.playbooks: dict[str, Playbook] = {
            f"{PLAYBOOK_PREFIX}{p.name}": p for p in orch.playbooks if p.trigger.event}
        self.tools = catalogue(orch.playbooks, approvals=allow_approvals,
                               adaptive=orch.settings.coordination == "adaptive")

    async def call(self, name: str, arguments: Mapping[str, Any], client: str
                   ) -> ToolResult | types.CallToolResult:
        """Answer one tool call; a user error becomes a one-line tool error."""
        try:
            return await self._dispatch(name, dict(arguments), client)
        except OrchestratorError as exc:
            return tool_error(str(exc))
        except ValidationError as exc:  # the schema let it through; the model did not
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "arguments"
            return tool_error(f"{where}: {first['msg']}")

    async def _dispatch(self, name: str, args: dict[str, Any], client: str
                        ) -> ToolResult | types.CallToolResult:
        if name == "run_request":
            run = RunRequestArgs.model_validate(args)
            result = await self.orch.arun(run.request, thread_id=run.thread_id,
                                          request_id=run.request_id)
            return self._run_result(result)
        if name in self.playbooks:
            playbook = self.playbooks[name]
            assert playbook.trigger.event is not None
            result = await self.orch.afire_event(playbook.trigger.event, args)
            return self._run_result(result)
        if name == "decide_approval" and self.allow_approvals:
            return await self._decide(DecideApprovalArgs.model_validate(args), client)
        if name == "list_runs":
            limit = ListRunsArgs.model_validate(args).limit
            found = await asyncio.to_thread(self.orch.records.runs, limit)
            runs = RunList(runs=[RunLine(**vars(r)) for r in found])
            text = "\n".join(f"{r.run_id} {r.status} {r.mode or '-'}: {r.request[:80]}"
                             for r in runs.runs) or "No runs yet."
            return _content(text, runs)
        if name == "get_run":
            return _content_of(await self._stored(RunIdArgs.model_validate(args).run_id))
        if name == "get_trace":
            run_id = RunIdArgs.model_validate(args).run_id
            trace = (await asyncio.to_thread(self.orch.records.trace, run_id)).to_dict()
            return ([types.TextContent(type="text", text=json.dumps(trace, default=str))],
                    json.loads(json.dumps(trace, default=str)))
        known = ", ".join(t.name for t in self.tools)
        raise RequestError(f"unknown tool {name!r}; the tools are: {known}")

    async def _decide(self, args: DecideApprovalArgs, client: str) -> ToolResult:
        thread = await self._paused_thread(args.thread_id, args.run_id)
        pending = await self.orch.apending_approvals(thread)
        decision: bool | dict[str, Any] = args.approve
        if args.keys is not None:
            waiting = [p.key for p in pending]
            unknown = [k for k in args.keys if k not in waiting]
            if unknown or not args.keys:
                raise RequestError(f"no waiting call has key {', '.join(unknown) or '(none)'}; "
                                   f"waiting: {', '.join(waiting)} (get_run shows them)")
            decision = {key: {"approved": args.approve and key in args.keys,
                              "reason": args.reason if key in args.keys else NOT_NAMED}
                        for key in waiting}
        result = await self.orch.aresume(thread, decision, reason=args.reason,
                                         approver=args.approver or f"mcp:{client}")
        return self._run_result(result)

    async def _paused_thread(self, thread_id: str | None, run_id: str | None) -> str:
        """The thread of the paused run named by its thread or its run id."""
        if (thread_id is None) == (run_id is None):
            raise RequestError("give either thread_id or run_id of the paused run "
                               "(run_request's result names both)")
        if thread_id is not None:
            return thread_id
        assert run_id is not None
        record = await asyncio.to_thread(self.orch.records.run, run_id)
        if record["status"] != "paused":
            raise RequestError(f"run {record['run_id'][:12]} is {record['status']}, not "
                               "paused: there is nothing to approve")
        return str(record["thread_id"])

    async def _stored(self, run_id: str) -> RunOutcome:
        record = await asyncio.to_thread(self.orch.records.run, run_id)
        pending = (await self.orch.apending_approvals(record["thread_id"])
                   if record["status"] == "paused" else [])
        return outcome_of_record(record, pending, self._hint(record["thread_id"]))

    def _run_result(self, result: RunResult) -> ToolResult:
        return _content_of(outcome_of_result(result, self._hint(result.thread_id)))

    def _hint(self, thread_id: str) -> str:
        return approve_hint(thread_id, self.cli_flags, self.allow_approvals)


def create_mcp_server(orch: Orchestrator, *, allow_approvals: bool = False,
                      cli_flags: Sequence[str] = ()) -> Server[Any, Any]:
    """An MCP server whose tools run requests and playbooks on ``orch`` and read its runs.

    Args:
        orch: The orchestrator every session shares (its caller closes it).
        allow_approvals: Offer ``decide_approval``, so MCP clients can approve what paused
            runs wait for; off by default, so a person decides (``orchestrator approve``).
        cli_flags: The flags ``orchestrator approve`` needs to rebuild this orchestrator
            (``--model``, ``--agents-dir``), shown in a paused run's instructions.
    """
    tools = OrchestratorTools(orch, allow_approvals=allow_approvals, cli_flags=cli_flags)
    server: Server[Any, Any] = Server("orchestrator", instructions=INSTRUCTIONS)

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return tools.tools

    @server.call_tool()
    async def call_tool(name: str, arguments: dict[str, Any]
                        ) -> ToolResult | types.CallToolResult:
        try:
            return await tools.call(name, arguments, _client_name(server))
        except Exception:
            log.exception("tool %s failed", name)  # a bug: keep its traceback in the log
            raise  # the SDK answers with an error result; the server goes on

    return server


def tool_error(message: str) -> types.CallToolResult:
    """A tool error: one line saying what is wrong and what to do."""
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)],
                                isError=True)


def _client_name(server: Server[Any, Any]) -> str:
    params = server.request_context.session.client_params
    return params.clientInfo.name if params is not None else "unknown"


def _content(text: str, data: BaseModel) -> ToolResult:
    return [types.TextContent(type="text", text=text)], data.model_dump(mode="json")


def _content_of(outcome: RunOutcome) -> ToolResult:
    return _content(outcome_text(outcome), outcome)
