"""The MCP tools the orchestrator offers: their names, descriptions, input and output schemas
and annotations (read-only, destructive, idempotent, open-world), as data.

A playbook with an event trigger becomes ``playbook_<name>``, its inputs (and defaults, and
the data its conditions read) the tool's arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcp import types
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.mcp_server.outcomes import RunList, RunOutcome
from orchestrator.playbooks import Playbook

PLAYBOOK_PREFIX = "playbook_"
_RUNS = types.ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=False,
                              openWorldHint=True)
"""Runs act through agents' tools: business systems, alerts, model providers."""
_READS = types.ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True,
                               openWorldHint=False)
"""Reads of this orchestrator's own run store."""


class RunRequestArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request: str = Field(description="What you need done, in plain words.")
    thread_id: str | None = Field(None, description="A conversation id: a follow-up on it sees "
                                  "its earlier turns. Omit for a new conversation.")
    request_id: str | None = Field(None, description="Your idempotency key: the same id sent "
                                   "again returns that run's result instead of redoing it.")


class DecideApprovalArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thread_id: str | None = Field(None, description="The paused run's thread (or give run_id).")
    run_id: str | None = Field(None, description="The paused run's id (or give thread_id).")
    approve: bool = Field(description="true approves, false denies.")
    reason: str = Field("", description="Why, for the record.")
    keys: list[str] | None = Field(None, description="Decide only these approval keys; the "
                                   "other waiting calls are denied. Omit to decide all.")
    approver: str | None = Field(None, description="Who decides, stored with the decision "
                                 "(default: mcp:<client name>).")


class ListRunsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(20, ge=1, le=1000, description="How many of the newest runs.")


class RunIdArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(description="A run id, or a unique prefix of one (see list_runs).")


def catalogue(playbooks: Sequence[Playbook], *, approvals: bool,
              adaptive: bool) -> list[types.Tool]:
    """Every tool, in a stable order: run_request, the playbooks, decide_approval (only when
    ``approvals``), then the read-only ones."""
    tools = [_tool("run_request", "Run a request", (
        "Run a request through the orchestrator: the supervisor plans it, specialist agents "
        "do the subtasks (some change business systems), and the answer comes back with the "
        "run id, status and each subtask's agent and status. A run that reaches an action "
        "needing approval returns paused, naming the exact calls that wait and how to "
        "approve them."), RunRequestArgs, _RUNS, RunOutcome)]
    tools += [playbook_tool(p, adaptive) for p in playbooks if p.trigger.event]
    if approvals:
        tools.append(_tool("decide_approval", "Approve or deny a paused run", (
            "Approve or deny what a paused run waits for (see run_request's "
            "waiting_for_approval), then let the run go on; returns its result. The decision "
            "and who made it are stored."), DecideApprovalArgs, _RUNS, RunOutcome))
    tools += [
        _tool("list_runs", "List recent runs", "The newest runs: id, thread, request, how it "
              "was planned, status, time and tokens.", ListRunsArgs, _READS, RunList),
        _tool("get_run", "Get a run", "One run: status, request, answer, each subtask's agent "
              "and status, and when paused the calls that wait for approval.", RunIdArgs,
              _READS, RunOutcome),
        _tool("get_trace", "Get a run's trace", "A run's trace, as `orchestrator trace --json` "
              "shows it: the stored run, a span per subtask (when it could start, started, "
              "ended, attempts, tokens) and every event in order.", RunIdArgs, _READS, None),
    ]
    return tools


def playbook_tool(playbook: Playbook, adaptive: bool) -> types.Tool:
    """``playbook_<name>``: fires the playbook's event with the arguments as its data."""
    steps = ", ".join(f"{s.id} ({s.agent})" for s in playbook.steps)
    how = ("In adaptive coordination the supervisor plans the event instead of running the "
           "playbook's steps as written." if adaptive else f"Steps: {steps}.")
    description = (f"{playbook.description.rstrip('.') or playbook.name}. Fires event "
                   f"{playbook.trigger.event!r}, which runs playbook {playbook.name!r}. {how} "
                   "Returns the answer, run id, status and each step's status; a step "
                   "needing approval pauses the run.")
    writes = any(s.kind != "answer" for s in playbook.steps)
    annotations = _RUNS if writes else types.ToolAnnotations(
        readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=True)
    return types.Tool(name=f"{PLAYBOOK_PREFIX}{playbook.name}",
                      title=f"Playbook {playbook.name}", description=description,
                      inputSchema=playbook_schema(playbook), annotations=annotations,
                      outputSchema=RunOutcome.model_json_schema())


def playbook_schema(playbook: Playbook) -> dict[str, Any]:
    """The event data a playbook reads: its inputs (required unless defaulted), its defaults,
    and the data fields its steps' conditions test."""
    properties: dict[str, Any] = {}
    for name in playbook.inputs:
        if name not in playbook.defaults:
            properties[name] = {"type": "string", "description": f"Input {name!r} of the "
                                f"playbook (used in its steps' goals)."}
    for name, value in playbook.defaults.items():
        properties[name] = {**_json_type(value), "default": value,
                            "description": f"{name!r}; default {value!r}."}
    for step in playbook.steps:
        path = step.when.path if step.when is not None else ""
        name = path.removeprefix("data.")
        if path.startswith("data.") and name not in properties:
            properties[name] = {"description": f"Read by step {step.id!r}'s condition."}
    required = [n for n in playbook.inputs if n not in playbook.defaults]
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


def _json_type(value: Any) -> dict[str, Any]:
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
                       (list, "array"), (dict, "object")):
        if isinstance(value, kind):
            return {"type": name}
    return {}


def _tool(name: str, title: str, description: str, args: type[BaseModel],
          annotations: types.ToolAnnotations, output: type[BaseModel] | None) -> types.Tool:
    return types.Tool(name=name, title=title, description=description,
                      inputSchema=args.model_json_schema(), annotations=annotations,
                      outputSchema=output.model_json_schema() if output else None)
