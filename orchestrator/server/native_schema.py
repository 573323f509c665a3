"""The native API's bodies: what a client sends and is sent, as pydantic models (the OpenAPI
description at ``/docs`` is generated from these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from orchestrator.approvals import ApprovalRequest
from orchestrator.results import RunResult
from orchestrator.runs import RunSummary, ThreadSummary

RunStatusName = Literal["running", "resuming", "paused", "ok", "partial", "failed", "unknown",
                        "interrupted"]


class RunRequest(BaseModel):
    """A request to run."""

    model_config = ConfigDict(extra="forbid")

    request: str = Field(description="What to do, in words.")
    thread_id: str | None = Field(None, description="The conversation it continues (a new "
                                  "one when null; its id comes back).")
    background: StrictBool = Field(False, description="Answer 202 with the run id at once; "
                                   "the run goes on in the server (follow it at "
                                   "/api/runs/{id}/events).")
    request_id: str | None = Field(None, description="Your key for this request (as the "
                                   "Idempotency-Key header): sent again, it gets the first "
                                   "run's result instead of running again.")


class ResumeRequest(BaseModel):
    """How to resume an interrupted run."""

    model_config = ConfigDict(extra="forbid")

    background: StrictBool = Field(False, description="Answer 202 at once; the run goes on in "
                                   "the server (follow it at /api/runs/{id}/events).")


class ApprovalDecisionBody(BaseModel):
    """A decision on every call the thread's paused run waits for."""

    model_config = ConfigDict(extra="forbid", strict=True)

    approve: bool = Field(description="true to let the calls run, false to refuse them "
                          "(a JSON boolean: \"false\" as a string is refused).")
    reason: str | None = Field(None, description="Why; stored with the decision.")
    keys: list[str] | None = Field(
        None, min_length=1, max_length=100,
        description="The approval keys the decider was shown (each item's `key` from GET "
        "/api/approvals). When given, the decision applies only if they are exactly the calls "
        "the run waits for now; otherwise nothing is decided and the answer is 409 "
        "`approval_changed`. Without it, the decision covers whatever the run waits for.")


class UsageOut(BaseModel):
    llm_calls: int
    input_tokens: int
    output_tokens: int


class ApprovalOut(BaseModel):
    """One exact call waiting for a decision."""

    thread_id: str
    key: str = Field(description="The approval's key: this subtask, tool and arguments.")
    subtask_id: str
    agent: str
    goal: str
    why: str
    tool: str | None = Field(None, description="The tool to call; null for a playbook step.")
    args: dict[str, Any] | None = None
    preview: str | None = Field(None, description="What the call would do, from current "
                                "state.")
    again: bool = False

    @classmethod
    def of(cls, request: ApprovalRequest, thread_id: str) -> ApprovalOut:
        return cls(thread_id=thread_id, **request.to_dict())


class RunOut(BaseModel):
    """A run: its outcome once it has one."""

    run_id: str
    thread_id: str
    request: str
    status: RunStatusName
    mode: str = Field(description="How it was planned: supervisor or playbook:<name>.")
    answer: str
    error: str | None = None
    plan: dict[str, Any] | None = None
    results: dict[str, dict[str, Any]] = Field(description="Per subtask: status, agent, "
                                               "output, error, attempts, tool calls, usage.")
    usage: UsageOut
    elapsed_s: float
    started_at: float | None = None
    budget_hit: str | None = None
    pending_approvals: list[ApprovalOut] = Field(default_factory=list)

    @classmethod
    def of_result(cls, result: RunResult, thread_id: str) -> RunOut:
        out = result.to_dict()
        return cls(**{**out, "thread_id": thread_id, "request": result.request,
                      "pending_approvals": [ApprovalOut.of(p, thread_id)
                                            for p in result.pending_approvals]})

    @classmethod
    def of_record(cls, record: dict[str, Any], thread_id: str,
                  pending: list[ApprovalRequest]) -> RunOut:
        return cls(
            run_id=record["run_id"], thread_id=thread_id, request=record["request"] or "",
            status=record["status"], mode=record["mode"] or "", answer=record["answer"] or "",
            error=record["error"], plan=record["plan"], results=record["results"] or {},
            usage=UsageOut(llm_calls=record["llm_calls"] or 0,
                           input_tokens=record["input_tokens"] or 0,
                           output_tokens=record["output_tokens"] or 0),
            elapsed_s=record["elapsed_s"] or 0.0, started_at=record["started_at"],
            budget_hit=record["budget_hit"],
            pending_approvals=[ApprovalOut.of(p, thread_id) for p in pending])


class RunAccepted(BaseModel):
    """A background run, started."""

    run_id: str
    thread_id: str
    status: RunStatusName = "running"


class RunSummaryOut(BaseModel):
    run_id: str
    thread_id: str
    request: str
    mode: str
    status: RunStatusName
    started_at: float
    elapsed_s: float
    llm_calls: int
    tokens: int

    @classmethod
    def of(cls, run: RunSummary, thread_id: str) -> RunSummaryOut:
        return cls(run_id=run.run_id, thread_id=thread_id, request=run.request or "",
                   mode=run.mode or "", status=run.status,  # type: ignore[arg-type]
                   started_at=run.started_at, elapsed_s=run.elapsed_s or 0.0,
                   llm_calls=run.llm_calls or 0, tokens=run.tokens or 0)


class RunList(BaseModel):
    runs: list[RunSummaryOut]


class Turn(BaseModel):
    role: str
    text: str
    run_id: str | None = Field(default=None, description="The run a request started, or the "
                               "run an answer came from, where the run store has it.")
    status: RunStatusName | None = Field(default=None, description="That run's status.")


class ThreadHistory(BaseModel):
    thread_id: str
    turns: list[Turn]


class ThreadOut(BaseModel):
    """A conversation of the caller's tenant, as its runs tell it."""

    thread_id: str = Field(description="The id the client knows it by (X-Thread-Id).")
    title: str = Field(description="Its first request.")
    last_active_at: float = Field(description="When its latest run last did something "
                                  "(Unix time).")
    runs: int = Field(description="How many runs it has had.")
    status: RunStatusName = Field(description="Its latest run's status.")
    last_run_id: str

    @classmethod
    def of(cls, thread: ThreadSummary, thread_id: str) -> ThreadOut:
        return cls(thread_id=thread_id, title=thread.title, last_active_at=thread.last_active_at,
                   runs=thread.runs, status=thread.last_status,  # type: ignore[arg-type]
                   last_run_id=thread.last_run_id)


class ThreadList(BaseModel):
    threads: list[ThreadOut] = Field(description="Newest first: the thread whose latest run "
                                     "started last leads.")


class ApprovalList(BaseModel):
    approvals: list[ApprovalOut]
