"""Whether a subtask was done, judged from what its tools did, not from what the agent says.

- act (asked to change something): done only when a write succeeded and no write the agent
  attempted was left failed (a failed write later made with success counts as made);
- answer: done when it answered from successful reads (or needed no tool at all);
- either way, a reply that is an error, ``CANNOT:``, or a request to fix arguments, or a
  reply right after a step whose calls all failed, is a failure; except a ``CANNOT:`` after
  an act's writes all succeeded, which is done (what the tools did decides).
"""

from __future__ import annotations

import re

from orchestrator.request_mood import has_condition
from orchestrator.results import FailureKind, SubtaskResult, ToolCallRecord

CANNOT_MARKER = "CANNOT:"
"""A report starting with this says the agent could not do its goal (see the prompt)."""
NOT_NEEDED_MARKER = "NOT NEEDED:"
"""A report starting with this says the goal's condition does not hold, so nothing was done
(see the prompt); with no write made, the subtask is skipped like a playbook condition."""

_ERROR_REPLY = re.compile(
    r"^\s*(?:error\b|failed\b|invalid arguments\b|refused\b)|fix them and call again",
    re.IGNORECASE)


def judge(result: SubtaskResult, report: str, last_step: list[ToolCallRecord]) -> None:
    """Set ``result``'s status, output, error and failure kind for an agent that ended
    its loop with ``report``; ``last_step`` holds the calls of its final tool step."""
    result.output = report or "(no report)"
    if report.upper().startswith(NOT_NEEDED_MARKER) and _may_skip(result):
        result.status, result.failure_kind = "skipped", "condition"
        result.error = report[len(NOT_NEEDED_MARKER):].strip() or "its condition does not hold"
        return
    if _cannot_after_writes(result, report):
        # The tools did what was asked; the agent's doubt stays on record, not as a failure.
        result.output = (" ".join(c.output for c in result.writes_done) +
                         f" (the agent added: {report[len(CANNOT_MARKER):].strip()})")
        result.status, result.error, result.failure_kind = "done", None, None
        return
    failure = _failure(result, report, last_step)
    if failure is None:
        result.status, result.error, result.failure_kind = "done", None, None
        return
    kind, message = failure
    writes = result.summary_of_writes()
    if writes:
        message += f" (writes that did happen: {writes})"
    result.status, result.failure_kind, result.error = "failed", kind, message


def _cannot_after_writes(result: SubtaskResult, report: str) -> bool:
    """A ``CANNOT:`` from an act subtask whose writes all happened (small models add one
    after a successful call): the outcome is what the tools did. An answer's ``CANNOT:``
    still fails: it says the reads did not hold the answer."""
    return (report.upper().startswith(CANNOT_MARKER) and result.kind == "act"
            and bool(result.writes_done) and not _writes_left_failed(result))


def _may_skip(result: SubtaskResult) -> bool:
    """'Not needed' only for a goal that has a condition, with nothing written and no write
    tried and failed: an agent cannot decline an unconditional action and count as done."""
    tried = [c for c in result.tool_calls[result.attempt_first_call:] if c.write]
    return has_condition(result.goal) and not result.writes_done and not tried


def judge_cut_short(result: SubtaskResult, why: str, *, answers: bool = False) -> bool:
    """An attempt stopped before the agent's report (stall, loop, budget, time): done when
    the act subtask's writes all happened (what was done stays done), or, with
    ``answers``, when an answer subtask's reads succeeded (their results stand in for the
    report). Returns whether it was judged done."""
    if result.kind == "act":
        if not result.writes_done or _writes_left_failed(result):
            return False
        calls = result.writes_done
    else:
        calls = [c for c in result.tool_calls if c.status == "ok" and not c.write]
        if not answers or not calls:
            return False
    result.status, result.error, result.failure_kind = "done", None, None
    result.output = " ".join(c.output for c in calls) + f" ({why})"
    return True


def _failure(result: SubtaskResult, report: str, last_step: list[ToolCallRecord]
             ) -> tuple[FailureKind, str] | None:
    if report.upper().startswith(CANNOT_MARKER):
        return "no_result", report[len(CANNOT_MARKER):].strip() or "the agent could not do it"
    if last_step and all(c.status != "ok" for c in last_step):
        last = last_step[-1]
        return _kind_of(last), f"the agent stopped after a failed call ({last.name}: " \
                               f"{last.output})"
    if _ERROR_REPLY.search(report):
        return "no_result", f"the agent's reply is an error: {report[:300]}"
    if result.kind == "act":
        left = _writes_left_failed(result)
        if left:
            return _kind_of(left[-1]), f"a write did not happen ({left[-1].name}: " \
                                       f"{left[-1].output})"
        if not result.writes_done:
            tried = [c for c in result.tool_calls[result.attempt_first_call:] if c.write]
            if tried:
                return _kind_of(tried[-1]), f"no write succeeded ({tried[-1].name}: " \
                                            f"{tried[-1].output})"
            return "no_action", "the subtask asks for a change and the agent made none"
        return None
    calls = result.tool_calls[result.attempt_first_call:]
    reads = [c for c in calls if not c.write]
    if calls and not any(c.status == "ok" for c in reads):
        last = calls[-1]
        return _kind_of(last), f"no read succeeded ({last.name}: {last.output})"
    return None


def _writes_left_failed(result: SubtaskResult) -> list[ToolCallRecord]:
    """Writes of the current attempt that failed and were not made afterwards with success
    (same tool and target); an earlier attempt's failures are superseded by this one."""
    made = {(c.name, c.key) for c in result.writes_done}
    made_tools = {c.name for c in result.writes_done}
    left = []
    for call in result.tool_calls[result.attempt_first_call:]:
        if not call.write or call.status == "ok":
            continue
        if (call.name, call.key) in made or (call.key is None and call.name in made_tools):
            continue
        left.append(call)
    return left


def _kind_of(call: ToolCallRecord) -> FailureKind:
    return {"invalid": "invalid_arguments", "refused": "refused"}.get(call.status, "rejected")  # type: ignore[return-value]
