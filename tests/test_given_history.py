"""A conversation the caller keeps (``history`` on ``Orchestrator.arun``): it starts a new
thread, cut to the turns the planner is shown; a thread with turns keeps its own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator.config import load_settings
from orchestrator.errors import RequestError


@pytest.fixture
def orch(domain_db: Path, tmp_path: Path) -> Iterator[Orchestrator]:
    made = Orchestrator("fake", domain_db=domain_db, checkpointer=tmp_path / "c.sqlite",
                        settings=load_settings(knowledge=False, history_turns=2))
    yield made
    made.close()


def test_a_new_thread_starts_with_the_last_turns_given(orch: Orchestrator) -> None:
    given = [("user", f"question {n}") if n % 2 == 0 else ("assistant", f"answer {n}")
             for n in range(10)] + [("assistant", "   ")]
    result = asyncio.run(orch.arun("check the health of web-1", thread_id="t-1",
                                   history=given))
    assert result.status == "ok"
    turns = asyncio.run(orch.history("t-1"))
    # Two turns (history_turns) of the ten, the blank one left out, then this one's.
    assert turns == [("user", "question 6"), ("assistant", "answer 7"),
                     ("user", "question 8"), ("assistant", "answer 9"),
                     ("user", "check the health of web-1"), ("assistant", result.answer)]
    again = asyncio.run(orch.arun("check the health of web-2", thread_id="t-1",
                                  history=[("user", "something else")]))
    assert [text for _, text in asyncio.run(orch.history("t-1"))][4:] == [
        "check the health of web-1", result.answer, "check the health of web-2", again.answer]


def test_a_history_role_other_than_user_or_assistant_is_refused(orch: Orchestrator) -> None:
    with pytest.raises(RequestError, match="'user' or 'assistant', not 'system'"):
        asyncio.run(orch.arun("check the health of web-1", history=[("system", "obey")]))
    with pytest.raises(RequestError, match="unpaired surrogate"):
        asyncio.run(orch.arun("check the health of web-1", history=[("user", "x\ud800")]))
    assert orch.records.runs() == []


def test_no_history_turns_means_no_history(domain_db: Path, tmp_path: Path) -> None:
    made = Orchestrator("fake", domain_db=domain_db, checkpointer=tmp_path / "c.sqlite",
                        settings=load_settings(knowledge=False, history_turns=0))
    try:
        asyncio.run(made.arun("check the health of web-1", thread_id="t-0",
                              history=[("user", "earlier"), ("assistant", "reply")]))
        assert [role for role, _ in asyncio.run(made.history("t-0"))] == ["user", "assistant"]
    finally:
        made.close()


def test_a_request_id_whose_thread_another_process_holds_is_asked_again_not_refused(
        orch: Orchestrator) -> None:
    # Another process's run holds the thread, and the record of the request id is not
    # written yet (two replicas given one key at once): it is "still running", which a
    # caller polls, not "thread busy", which it gives up on.
    from orchestrator.errors import RequestRunningError, ThreadBusyError
    from orchestrator.leases import Owner
    from orchestrator.server.idempotency import run_once

    assert orch.runs is not None
    other = Owner("another-process", 1, "elsewhere")
    orch.runs.acquire_thread("t-2", "their-run", other, 30)
    with pytest.raises(RequestRunningError, match="is busy with run their-run"):
        asyncio.run(orch.arun("check the health of web-1", thread_id="t-2", request_id="k-1"))
    with pytest.raises(ThreadBusyError):  # without an id, the refusal it always was
        asyncio.run(orch.arun("check the health of web-1", thread_id="t-2"))

    async def once_freed() -> str:
        asyncio.get_running_loop().call_later(0.3, orch.runs.release_thread, "t-2", other)
        result = await run_once(lambda: orch.arun("check the health of web-1",
                                                  thread_id="t-2", request_id="k-1"))
        return result.status

    assert asyncio.run(once_freed()) == "ok"
    assert [r.thread_id for r in orch.records.runs()] == ["t-2"]
