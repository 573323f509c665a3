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
