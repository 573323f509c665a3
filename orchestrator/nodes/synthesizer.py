"""The synthesizer and responder nodes: write the answer and add it to the conversation."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from orchestrator.errors import is_model_failure
from orchestrator.events import AnswerData, answer_chunks_wanted, emit, emit_answer_chunk
from orchestrator.model_slots import model_slot
from orchestrator.models.direct import ainvoke_chat, astream_chat
from orchestrator.nodes.specialist import cut_off, estimate_tokens
from orchestrator.prompts import load_prompt, tagged
from orchestrator.results import SubtaskResult, Usage
from orchestrator.state import EngineContext, NodeFn, OrchestratorState

logger = logging.getLogger(__name__)


def synthesizer_node(ctx: EngineContext) -> NodeFn:
    """Build the synthesizer node: one call from the subtask results to the answer, streamed
    (each piece goes out as an answer chunk as it arrives); for a model that says its
    summaries drop facts (``ctx.summary == "list"``: a small local one), the agents' reports
    listed, with no call."""

    async def synthesize(state: OrchestratorState) -> dict[str, Any]:
        results = [SubtaskResult.from_dict(r) for r in state["results"].values()]
        by_id = {r.id: r for r in results}
        blocks = "\n".join(_result_block(r, by_id) for r in results)
        human = tagged("request", state["request"]) + "\n" + tagged("results", blocks)
        usage = Usage.from_dict(state.get("supervisor_usage"))
        budget = ctx.budget(state["run_id"])
        if budget.exhausted:
            # No more model calls: a plain account of what was and was not done.
            return {"answer": f"Stopped early: {budget.hit}.\n" + fallback_answer(results),
                    "supervisor_usage": usage.to_dict(), "budget_hit": budget.hit}
        if ctx.summary == "list":  # the model's summary would drop facts: list the reports
            answer = fallback_answer(results)
            emit_answer_chunk(state["run_id"], answer, 0)
            return {"answer": answer, "supervisor_usage": usage.to_dict()}
        messages = [SystemMessage(load_prompt("synthesizer")), HumanMessage(human)]
        written = _StreamedAnswer(state["run_id"])
        try:
            async with model_slot(ctx.model):
                await asyncio.wait_for(written.read(ctx.model, messages,
                                                    stream=answer_chunks_wanted()),
                                       timeout=budget.remaining_s())
        except TimeoutError as exc:
            left = budget.remaining_s()
            written.count_cut_off(usage, messages, exc)
            if left is not None and left <= 0.01:  # our wall-time limit, not the provider's
                budget.expire_wall()
                return {"answer": f"Stopped early: {budget.hit}.\n" + fallback_answer(results),
                        "supervisor_usage": usage.to_dict(), "budget_hit": budget.hit}
            return {"answer": fallback_answer(results) + "\n(The supervisor model failed "
                    f"while writing the summary: TimeoutError: {exc})",
                    "supervisor_usage": usage.to_dict()}
        except Exception as exc:
            # The work is done; a failed summary must not lose it. A bug is logged as one.
            if not is_model_failure(exc):
                logger.exception("engine error while the supervisor wrote the answer")
            written.count_cut_off(usage, messages, exc)
            answer = fallback_answer(results) + (
                f"\n(The supervisor model failed while writing the summary: "
                f"{type(exc).__name__}: {exc})")
            return {"answer": answer, "supervisor_usage": usage.to_dict()}
        usage.add_message(written.usage_metadata)
        budget.charge(ctx.model_name(), written.usage_metadata)
        return {"answer": written.text.strip(), "supervisor_usage": usage.to_dict()}

    return synthesize


class _StreamedAnswer:
    """One streamed call of the synthesizer: what arrived so far (text and usage), each
    piece sent on as an answer chunk the moment it arrives."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.pieces: list[str] = []
        self.usage_metadata: dict[str, int] | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    async def read(self, model: BaseChatModel, messages: list[BaseMessage], *,
                   stream: bool = True) -> None:
        """Read the answer; with ``stream`` off (nobody listens for chunks) in one call, which
        saves the model's and the graph's work per piece."""
        if not stream:
            written = await ainvoke_chat(model, messages)
            self._add_usage(getattr(written, "usage_metadata", None))
            self.pieces.append(str(written.text).lstrip())
            return
        # A model without streaming answers in one piece (langchain-core falls back to
        # ainvoke), so recorded cassettes and plain models work unchanged.
        async for chunk in astream_chat(model, messages, **_stream_options(model)):
            self._add_usage(getattr(chunk, "usage_metadata", None))
            piece = str(chunk.text)
            if not self.pieces:  # leading blank lines are not part of the answer
                piece = piece.lstrip()
            if piece:
                emit_answer_chunk(self.run_id, piece, len(self.pieces))
                self.pieces.append(piece)

    def _add_usage(self, found: Any) -> None:
        if not found:
            return
        usage = self.usage_metadata or {"input_tokens": 0, "output_tokens": 0}
        for key in usage:
            usage[key] += int(found.get(key, 0) or 0)
        self.usage_metadata = usage

    def count_cut_off(self, usage: Usage, messages: list[BaseMessage],
                      exc: BaseException) -> None:
        """Count a call that failed: what the server reported, else, when it served part
        of it (pieces arrived) or was cut off while it had it, an estimate of its input and
        of the pieces it wrote."""
        if self.usage_metadata is not None:
            usage.add_message(self.usage_metadata)
        elif self.pieces or cut_off(exc):
            usage.add_message({"input_tokens": estimate_tokens(messages),
                               "output_tokens": -(-len(self.text) // 4)})
        else:
            usage.llm_calls += 1


def _stream_options(model: BaseChatModel) -> dict[str, Any]:
    """Ask for usage on the stream where the model can (``stream_usage``: OpenAI's
    ``stream_options.include_usage``; langchain-openai leaves it off for a custom
    ``base_url``), so a streamed call is counted as a plain one is."""
    return {"stream_usage": True} if "stream_usage" in type(model).model_fields else {}


def fallback_answer(results: list[SubtaskResult]) -> str:
    """A plain summary of the results, written without a model: done first, then not done
    (a failure a replacement made good is not listed: its replacement is)."""
    by_id = {r.id: r for r in results}
    done = [f"- {r.agent}: {r.output}" for r in results if r.status == "done"]
    unknown = [f"- {r.agent}: {r.goal}: {r.error}" for r in results if r.status == "unknown"]
    other = [f"- {r.agent} ({r.status}): {r.goal}: {r.error}" for r in results
             if r.status not in ("done", "unknown") and r.failure_kind != "condition"
             and not r.settled(by_id)]
    lines = [f"Done ({len(done)} of {len(results)} subtasks):", *(done or ["- nothing"])]
    if unknown:
        lines += ["Outcome unknown (check before trying again):", *unknown]
    if other:
        lines += ["Not done:", *other]
    return "\n".join(lines)


def single_result_answer(state: OrchestratorState) -> str:
    """The short path: one subtask's report is the answer, no synthesizer call."""
    (result,) = (SubtaskResult.from_dict(r) for r in state["results"].values())
    if result.status == "done":
        return result.output
    answer = f"The {result.agent} agent could not finish '{result.goal}': {result.error}"
    if state.get("budget_hit"):
        answer = f"Stopped early: {state['budget_hit']}.\n{answer}"
    return answer


def respond_node(ctx: EngineContext) -> NodeFn:
    """Build the responder: adds the answer to the conversation and emits ``answer``."""

    async def respond(state: OrchestratorState) -> dict[str, Any]:
        answer = state.get("answer") or ""
        if not answer and len(state.get("results") or {}) == 1:
            answer = single_result_answer(state)
        usage = Usage.from_dict(state.get("supervisor_usage"))
        for result in (state.get("results") or {}).values():
            usage = usage + Usage.from_dict(result.get("usage"))
        emit("answer", state["run_id"], usage=usage.to_dict(),
             data=AnswerData(answer=answer, error=state.get("error")))
        ctx.end_run(state["run_id"])
        return {"answer": answer, "messages": [AIMessage(answer)]}

    return respond


def _result_block(result: SubtaskResult, results: dict[str, SubtaskResult]) -> str:
    if result.status != "done" and result.settled(results):
        # recovered by a replan: say so, it is not a failure to report
        body = f"{result.error}; done instead by {', '.join(result.replaced_by)}"
        return tagged("result", body, id=result.id, agent=result.agent, status="replaced",
                      goal=_attr(result.goal))
    body = result.output if result.status == "done" else (result.error or result.status)
    status = "not needed" if result.failure_kind == "condition" else result.status
    return tagged("result", body, id=result.id, agent=result.agent, status=status,
                  goal=_attr(result.goal))


def _attr(text: str) -> str:
    return text.replace('"', "'").replace("\n", " ")
