"""One tool call of a specialist, with every guarantee checked in code, in this order.

1. least privilege: only the agent's own tools;
2. the subtask's kind: an answer subtask may call read-only tools only;
3. the arguments are validated against the tool's schema (before anyone is asked);
4. the tool's precondition may refuse the call outright (so may its preview, when it
   shows the call would be rejected);
5. a write that already happened (same run, subtask and action) returns its earlier result;
6. a call that needs an approval pauses unless this exact call and its previewed effect
   were approved, and an approval is spent by the call it allowed;
7. the tool runs (a write inside its idempotency key, a synchronous tool in its own
   thread); its output is capped.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import ToolMessage
from langchain_core.messages.tool import ToolCall
from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, ValidationError

from orchestrator.agents.policy import (
    approval_key,
    approval_reason,
    is_audited,
    is_read_only,
    needs_approval,
    non_null,
    preview_of,
    refusal_reason,
    write_key,
)
from orchestrator.agents.spec import AgentSpec
from orchestrator.effects import AlreadyApplied, WriteCall, earlier_result, write_call
from orchestrator.errors import ToolRefusedError
from orchestrator.events import ToolCalledData, ToolRefusedData, ToolStartedData, emit
from orchestrator.models.meaning import IDENTIFIER
from orchestrator.nodes.direct_tools import invoke_tool
from orchestrator.nodes.tool_threads import run_in_tool_thread
from orchestrator.results import FailureKind, SubtaskResult, ToolCallRecord
from orchestrator.text_match import mentions
from orchestrator.truncation import cap_text
from orchestrator.write_journal import JournalEntry, WriteJournal

REJECTIONS = (ValueError, LookupError, TypeError, PermissionError, ToolException)
"""Exceptions by which a tool rejects its input (unknown id, bad value): not transient."""


class ApprovalNeeded(Exception):
    """A tool call needs a person's approval first: the attempt pauses here."""

    def __init__(self, request: dict[str, Any]) -> None:
        super().__init__(request["why"])
        self.request = request
        self.done: list[ToolMessage] = []
        self.pending: list[dict[str, Any]] = []


class OutcomeUnknown(Exception):
    """A write of this subtask was in flight when a process died, and nothing records
    whether it took effect: it is not made again, and the subtask's outcome is unknown."""


class ToolFailed(Exception):
    """The tool raised: the attempt ends as failed with this kind."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind


@dataclass
class ToolCaller:
    """Makes one agent's tool calls for one subtask."""

    spec: AgentSpec
    tools: dict[str, BaseTool]
    result: SubtaskResult
    run_id: str
    grants: frozenset[str] = frozenset()
    max_output_chars: int = 20_000
    tool_threads: int = 16
    journal: WriteJournal | None = None
    given: str = ""
    """What the agent was given (its goal and its inputs): an argument that is only the
    example in the tool's description must come from here or from a tool's output."""
    _in_flight: dict[str, asyncio.Future[str]] = field(default_factory=dict, repr=False)
    """Writes of this step under way, by key: the same action twice at once runs once."""
    _checking: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    """Held while a write is checked, until it is under way (or answered without running)."""

    async def call(self, call: ToolCall) -> ToolMessage:
        name, args = call["name"], dict(call.get("args") or {})
        call_id = call.get("id") or name
        tool = self.tools.get(name)
        if tool is None:
            # Least privilege is enforced here, not in the prompt: the call reaches no tool.
            allowed = ", ".join(self.tools) or "none"
            return self._refuse(name, args, call_id, f"tool {name!r} is not available to "
                                f"agent {self.spec.name} (its tools: {allowed})")
        write = not is_read_only(tool)
        if write and self.result.kind == "answer":
            return self._refuse(name, args, call_id, f"{name} changes things and this subtask "
                                "only answers a question: use a read-only tool", write=True)
        size = len(json.dumps(args, default=str))
        if size > self.max_output_chars:  # a 30 MB argument would bloat every checkpoint
            return self._refuse(name, {"size": size}, call_id, f"the arguments are {size} "
                                f"characters; at most {self.max_output_chars} are accepted",
                                write=write)
        try:
            args = _validated(tool, args)
        except ValidationError as exc:
            return self._invalid(tool, args, call_id, exc)
        copied = self._copied_example(tool, args)
        if copied is not None:
            return self._refuse(name, args, call_id, f"{copied!r} is the example in {name}'s "
                                "description, not a value from your goal, inputs or tool "
                                "results: use the one the goal names", write=write,
                                status="rejected")
        invented = self._invented_id(tool, args)
        if invented is not None:
            return self._refuse(name, args, call_id, f"{invented!r} appears nowhere in your "
                                "goal, inputs or tool results: use the id the goal names, or "
                                "find it with a tool first", write=write, status="rejected")
        why_not = refusal_reason(tool, args)
        if why_not is not None:
            return self._refuse(name, args, call_id, why_not, write=write, status="rejected")
        if not write:
            try:
                spent = self._check_approval(tool, args)
            except (ValueError, LookupError) as exc:  # the preview shows it would be rejected
                return self._refuse(name, args, call_id, str(exc), status="rejected")
            return await self._run(tool, args, call_id, None, spent)
        key = write_key(self.run_id, self.result.origin or self.result.id, tool, args)
        # The writes of a step are checked one at a time (the stores are read in a thread),
        # so a twin of a write sees it under way and waits for it instead of running too.
        async with self._checking:
            twin = self._in_flight.get(key)
            if twin is None:
                earlier = await self._earlier(key, tool.name, ledgers=needs_approval(tool))
                if earlier is not None:
                    return self._replayed(tool, args, call_id, key, earlier)
                try:
                    spent = self._check_approval(tool, args)
                except (ValueError, LookupError) as exc:  # the preview shows a rejection
                    return self._refuse(name, args, call_id, str(exc), write=True,
                                        status="rejected")
                marker = self._begin_write(tool, args, key)
        if twin is not None:  # the same action, asked twice in one step
            return self._replayed(tool, args, call_id, key, await asyncio.shield(twin))
        return await self._run(tool, args, call_id, key, spent, marker)

    # --- the steps ---------------------------------------------------------------------

    def _copied_example(self, tool: BaseTool, args: dict[str, Any]) -> str | None:
        """An argument that is an example from the tool's description and appears nowhere
        the agent was given or has read (seen with a small model: the schema's "e.g. p-1"
        used as the patient id, and the wrong record read)."""
        examples = schema_examples(tool)
        if not examples:
            return None
        seen = self._seen()
        for value in args.values():
            if isinstance(value, str) and value.lower() in examples and not mentions(
                    seen, value):
                return value
        return None

    def _invented_id(self, tool: BaseTool, args: dict[str, Any]) -> str | None:
        """An id (the value of a parameter whose schema has a pattern, shaped like tx-1002)
        that appears nowhere the agent was given or has read: made up. Seen with a 1.5B
        model: order o-1002 scored as transaction tx-1002, and a visit summary written for
        an appointment ap-123 that no one named."""
        names = id_parameters(tool)
        if not names:
            return None
        seen = self._seen()
        for name in names:
            value = args.get(name)
            if isinstance(value, str) and IDENTIFIER.fullmatch(value.strip()) and not mentions(
                    seen, value.strip()):
                return value
        return None

    def _seen(self) -> str:
        """What the agent was given and what its successful calls returned, lower-cased (a
        refusal that names a value does not make it known)."""
        return " ".join([self.given, *(c.output for c in self.result.tool_calls
                                       if c.status == "ok")]).lower()

    def _check_approval(self, tool: BaseTool, args: dict[str, Any]) -> str | None:
        """The approval key this call spends, None when it needs none; raises
        :class:`ApprovalNeeded` when it needs one it does not have."""
        why = approval_reason(tool, args)
        if why is None:
            return None
        preview = preview_of(tool, args)
        key = approval_key(self.result.id, tool.name, args, preview)
        granted = sum(g == key or g.startswith(f"{key}#") for g in self.grants)
        used = self.result.used_approvals.count(key)
        if used < granted:
            return key
        raise ApprovalNeeded({
            "key": key if not used else f"{key}#{used}", "tool": tool.name,
            "args": _jsonable(args), "why": why, "preview": preview, "again": used > 0})

    async def _earlier(self, key: str, tool: str, *, ledgers: bool) -> str | None:
        """The result of this write if it already happened; raises :class:`OutcomeUnknown`
        when it was in flight in a process that died and nothing says how it ended.

        ``ledgers``: also ask the stores' ledgers now (before a person is asked to approve
        it); otherwise the store's own check, in the write's transaction, answers."""
        for record in self.result.tool_calls:
            if record.key == key and record.status == "ok":
                return record.output
        if not ledgers and self.journal is None:
            return None
        found, output, entry = await asyncio.to_thread(self._stored, key, ledgers)
        if found:
            return output or "(done earlier; its result was not recorded)"
        if entry is not None and entry.state == "done":
            return entry.output or "(done earlier)"
        if entry is not None and entry.state == "started":
            raise OutcomeUnknown(f"{tool} was under way when the process running it stopped; "
                                 "whether it took effect is unknown, so it is not made again")
        return None

    def _stored(self, key: str, ledgers: bool
                ) -> tuple[bool, str | None, JournalEntry | None]:
        """What the stores' ledgers (when ``ledgers``) and the journal hold for ``key``
        (SQLite reads: run in a thread, off the event loop)."""
        found, output = earlier_result(key) if ledgers else (False, None)
        if found:
            return found, output, None
        return False, None, self.journal.lookup(key) if self.journal is not None else None

    async def _run(self, tool: BaseTool, args: dict[str, Any], call_id: str, key: str | None,
                   approval: str | None, marker: WriteCall | None = None) -> ToolMessage:
        audit = is_audited(tool)
        started = time.perf_counter()
        record = ToolCallRecord(tool.name, args, "ok", write=key is not None, key=key)
        if approval is not None:
            self.result.used_approvals.append(approval)
        try:
            output = await self._settled_invoke(tool, args, marker)
        except AlreadyApplied as exc:  # another process or an earlier attempt did it
            return self._replayed(tool, args, call_id, exc.key,
                                  exc.output or "(done earlier; its result was not recorded)")
        except ToolRefusedError as exc:
            return self._refuse(tool.name, args, call_id, str(exc), write=key is not None)
        except ValidationError as exc:
            return self._invalid(tool, args, call_id, exc)
        except Exception as exc:
            record.status, record.output = "error", str(exc)
            self.result.tool_calls.append(record)
            self._emit(tool.name, args, "error", started, error=str(exc), key=key, audit=audit)
            kind: FailureKind = "rejected" if isinstance(exc, REJECTIONS) else "tool_error"
            raise ToolFailed(kind, f"{tool.name} failed: {exc}") from exc
        record.output = output
        self.result.tool_calls.append(record)
        self._emit(tool.name, args, "ok", started, key=key, audit=audit)
        return ToolMessage(output, tool_call_id=call_id, name=tool.name)

    def _begin_write(self, tool: BaseTool, args: dict[str, Any], key: str) -> WriteCall:
        """Announce the write (event) and mark it under way for twin calls; the journal
        notes it just before it runs (see :meth:`_invoke`), so a crash mid-call is known."""
        journal = self.journal
        marker = WriteCall(key, tool.name, _jsonable(args), on_ledger=(
            (lambda: journal.mark_ledger(key)) if journal is not None else None))
        self._in_flight[key] = asyncio.get_running_loop().create_future()
        emit("tool_started", self.run_id, subtask_id=self.result.id, agent=self.spec.name,
             data=ToolStartedData(tool=tool.name, args=marker.args, key=key))
        return marker

    async def _settled_invoke(self, tool: BaseTool, args: dict[str, Any],
                              marker: WriteCall | None) -> str:
        """The tool's output as capped text; a write's end is noted however it ends."""
        produced: list[str] = []  # the output, once the tool has run (set in its thread)
        try:
            output = await self._invoke(tool, args, marker, produced)
        except asyncio.CancelledError:
            # Cut off after the tool ran, while its thread records the output: it is done,
            # and twins get its output (the thread journals it), as before.
            self._settle(marker, produced[0] if produced else None,
                         None if produced else asyncio.CancelledError(),
                         journaled=bool(produced))
            raise
        except AlreadyApplied as exc:
            self._settle(marker, exc.output or "")
            raise
        except (KeyboardInterrupt, SystemExit, GeneratorExit) as exc:
            # Raised by the tool's code, not by us: a tool failure, never the run's end.
            failure = RuntimeError(f"the tool raised {type(exc).__name__}: {exc}")
            self._settle(marker, None, failure)
            raise failure from exc
        except BaseException as exc:
            self._settle(marker, None, exc)
            raise
        if marker is None:
            return output.text
        try:  # it ran: a twin or a later attempt sees its result
            if output.recorded:
                if output.record_error is not None:
                    raise output.record_error
            else:
                await _to_thread_whole(_record_output, marker, self.journal, output.text)
        finally:
            self._settle(marker, output.text, journaled=True)
        return output.text

    async def _invoke(self, tool: BaseTool, args: dict[str, Any], marker: WriteCall | None,
                      produced: list[str]) -> _Ran:
        """Run the tool; while a write (or a synchronous tool, in a thread a timeout cannot
        stop) runs, ``result.unsettled_tool`` names it, so a timeout that cuts it off knows
        its outcome is unknown."""
        sync = getattr(tool, "coroutine", None) is None
        self.result.unsettled_tool = tool.name if sync or marker is not None else None
        # Called as a tool call, so a tool that turns its own errors into a reply
        # (handle_tool_error) is seen to have failed, not to have done its write.
        call: ToolCall = {"name": tool.name, "args": args, "id": "orchestrator",
                          "type": "tool_call"}
        journal = self.journal if marker is not None else None

        def note() -> None:  # the journal's note, just before the write runs
            assert journal is not None and marker is not None
            journal.begin(marker.key, marker.tool, marker.args)

        def run_sync() -> _Ran:
            if journal is not None:
                note()  # in the tool's thread: noted if and only if the tool is started
            text = _text_of(invoke_tool(tool, call), self.max_output_chars)
            if marker is None:
                return _Ran(text)
            produced.append(text)
            # A write's output is recorded here too, in the tool's thread: no second trip
            # through asyncio's executor, and it lands however the run goes meanwhile.
            try:
                _record_output(marker, journal, text)
            except Exception as exc:  # raised once the call is settled (see the caller)
                return _Ran(text, recorded=True, record_error=exc)
            return _Ran(text, recorded=True)

        try:
            with write_call(marker) if marker is not None else nullcontext():
                if sync:
                    ran = await run_in_tool_thread(run_sync, limit=self.tool_threads)
                else:
                    if journal is not None:
                        await _to_thread_whole(note)
                    ran = _Ran(_text_of(await tool.ainvoke(call), self.max_output_chars))
        except _ReportedFailure:
            self.result.unsettled_tool = None  # it ended: it said it failed
            raise
        self.result.unsettled_tool = None
        return ran

    def _settle(self, marker: WriteCall | None, output: str | None,
                error: BaseException | None = None, *, journaled: bool = False) -> None:
        """A write ended: note it in the journal (unless ``journaled`` already) and hand
        its result to a twin call."""
        if marker is None:
            return
        settled = self._in_flight.pop(marker.key, None)
        if self.journal is not None and not journaled and not isinstance(
                error, asyncio.CancelledError):
            # Cancelled (a timeout): still in flight as far as anyone can tell.
            if error is None:
                self.journal.finish(marker.key, output or "")
            else:
                self.journal.fail(marker.key, f"{type(error).__name__}: {error}")
        if settled is not None and not settled.done():
            if error is None:
                settled.set_result(output or "")
            else:
                settled.set_exception(ToolFailed("tool_error", f"the same call failed: {error}"))
                settled.exception()  # retrieved: no warning when no twin call waits on it

    # --- outcomes that do not run the tool -----------------------------------------------

    def _refuse(self, name: str, args: dict[str, Any], call_id: str, reason: str, *,
                write: bool = False, status: Literal["refused", "rejected"] = "refused"
                ) -> ToolMessage:
        self.result.tool_calls.append(ToolCallRecord(name, args, status, reason, write=write))
        emit("tool_refused", self.run_id, subtask_id=self.result.id, agent=self.spec.name,
             data=ToolRefusedData(tool=name, args=_jsonable(args), reason=reason,
                                  precondition=status == "rejected"))
        return ToolMessage(f"Refused: {reason}.", tool_call_id=call_id, status="error")

    def _invalid(self, tool: BaseTool, args: dict[str, Any], call_id: str,
                 exc: ValidationError) -> ToolMessage:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
                           for e in exc.errors())
        self.result.tool_calls.append(ToolCallRecord(tool.name, args, "invalid", detail,
                                                     write=not is_read_only(tool)))
        emit("tool_called", self.run_id, subtask_id=self.result.id, agent=self.spec.name,
             data=ToolCalledData(tool=tool.name, args=_jsonable(args), status="invalid",
                                 error=detail))
        return ToolMessage(f"Invalid arguments for {tool.name}: {detail}. Fix them and call "
                           "again.", tool_call_id=call_id, status="error")

    def _replayed(self, tool: BaseTool, args: dict[str, Any], call_id: str, key: str,
                  output: str) -> ToolMessage:
        self.result.tool_calls.append(ToolCallRecord(tool.name, args, "ok", output, write=True,
                                                     key=key, replayed=True))
        emit("tool_called", self.run_id, subtask_id=self.result.id, agent=self.spec.name,
             data=ToolCalledData(tool=tool.name, args=_jsonable(args), status="ok",
                                 replayed=True, key=key))
        return ToolMessage(f"Already done earlier (not repeated): {output}",
                           tool_call_id=call_id, name=tool.name)

    def _emit(self, tool: str, args: dict[str, Any], status: str, started: float, *,
              key: str | None, error: str | None = None, audit: bool = False) -> None:
        data = ToolCalledData(tool=tool, args=_jsonable(args), status=status,
                              elapsed_ms=round((time.perf_counter() - started) * 1000, 2))
        if error is not None:
            data["error"] = error
        if key is not None:
            data["key"] = key
        if audit:
            data["audit"] = True
        emit("tool_called", self.run_id, subtask_id=self.result.id, agent=self.spec.name,
             data=data)


_EXAMPLE = re.compile(r"(?:\be\.g\.|\bfor example|\bexample:|\bsuch as)\s*[\"'`]?"
                      r"([A-Za-z0-9][\w.-]*[A-Za-z0-9])", re.IGNORECASE)


def schema_examples(tool: BaseTool) -> frozenset[str]:
    """Example values a tool's description and argument descriptions give (``e.g. web-3``),
    lower-cased."""
    texts = [tool.description or ""]
    schema = tool.args_schema
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        texts += [f.description or "" for f in schema.model_fields.values()]
    elif isinstance(schema, dict):
        texts += [str(p.get("description", "")) for p in (schema.get("properties") or {}
                                                          ).values() if isinstance(p, dict)]
    return frozenset(m.lower() for text in texts for m in _EXAMPLE.findall(text))


def id_parameters(tool: BaseTool) -> tuple[str, ...]:
    """The tool's string parameters whose JSON schema has a pattern (ids such as ``^tx-``)."""
    schema = tool.args_schema
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return _patterned(schema)  # a schema class: read once per process
    return _patterned_in(schema) if isinstance(schema, dict) else ()


@functools.lru_cache(maxsize=1024)
def _patterned(model: type[BaseModel]) -> tuple[str, ...]:
    return _patterned_in(model.model_json_schema())


def _patterned_in(schema: dict[str, Any]) -> tuple[str, ...]:
    return tuple(name for name, prop in (schema.get("properties") or {}).items()
                 if isinstance(prop, dict) and "pattern" in non_null(prop))


def _validated(tool: BaseTool, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments as the tool's schema parses them (defaults filled); ValidationError."""
    schema = tool.args_schema
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        parsed = schema.model_validate(args)
        fields = set(schema.model_fields)
        return {k: v for k, v in parsed.model_dump().items() if k in fields and
                (k in args or v is not None)}
    return args


class _ReportedFailure(RuntimeError):
    """A tool that turned its own error into its reply (``handle_tool_error``): not done."""


@dataclass
class _Ran:
    """A tool call that ran: its output as capped text and, for a write run in a thread,
    whether its output was recorded there (and the error recording it met)."""

    text: str
    recorded: bool = False
    record_error: Exception | None = None


def _text_of(output: Any, limit: int) -> str:
    """A tool's output as the text the model and the records get, cut to ``limit``;
    :class:`_ReportedFailure` for a reply in which the tool says it failed."""
    if isinstance(output, ToolMessage):
        if output.status == "error":
            raise _ReportedFailure(output.text or "the tool reported an error")
        output = output.content if isinstance(output.content, str) else output.text
    try:
        text = output if isinstance(output, str) else json.dumps(output, default=str)
    except (TypeError, ValueError):  # not JSON (a circular structure): its repr
        text = repr(output)
    return capped(text, limit)


def _record_output(marker: WriteCall, journal: WriteJournal | None, text: str) -> None:
    """A write's output, kept by the store that asked for it and noted in the journal."""
    try:
        if marker.save_output is not None:
            marker.save_output(text)
    finally:
        if journal is not None:
            journal.finish(marker.key, text)


async def _to_thread_whole(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a thread, off the event loop (these are SQLite writes that must
    land): if the caller is cancelled meanwhile, it still waits for ``fn`` to end."""
    done = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        await asyncio.wait([done])
        raise


def capped(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with a marker saying how much was left out."""
    return cap_text(text, limit) or ""


def _jsonable(args: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(args, default=str))
