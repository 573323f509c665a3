"""A chat client's ``stop`` and ``max_tokens`` on an answer that arrives in pieces: the
text sent is the same however the answer is split."""

from __future__ import annotations

import pytest

from orchestrator.server.answer_limits import AnswerLimit

ANSWER = "Paged Dana Okafor for web-3. The incident for web-3 is logged."


def _streamed(limit: AnswerLimit, pieces: list[str]) -> str:
    return "".join(limit.take(p) for p in pieces) + limit.flush()


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(ANSWER)])
def test_a_stop_sequence_split_across_pieces_cuts_where_it_begins(size: int) -> None:
    pieces = [ANSWER[i:i + size] for i in range(0, len(ANSWER), size)]
    limit = AnswerLimit(stop=["web-3", "never"])
    assert _streamed(limit, pieces) == "Paged Dana Okafor for "
    assert (limit.done, limit.finish_reason) == (True, "stop")


@pytest.mark.parametrize("size", [1, 4, 9, len(ANSWER)])
def test_a_prefix_of_a_stop_that_does_not_go_on_is_sent_at_the_end(size: int) -> None:
    pieces = [ANSWER[i:i + size] for i in range(0, len(ANSWER), size)]
    limit = AnswerLimit(stop=["logged!"])
    assert _streamed(limit, pieces) == ANSWER
    assert not limit.done and limit.finish_reason == "stop"


def test_max_tokens_cuts_at_four_characters_a_token_and_says_length() -> None:
    limit = AnswerLimit(max_tokens=3)
    assert _streamed(limit, ["Paged Dana ", "Okafor", " for web-3."]) == ANSWER[:12]
    assert limit.finish_reason == "length"
    exact = AnswerLimit(max_tokens=3)
    assert exact.whole("twelve chars") == "twelve chars" and exact.finish_reason == "stop"
    assert AnswerLimit().whole(ANSWER) == ANSWER and not AnswerLimit().limited


def test_the_earliest_stop_sequence_cuts_whichever_is_listed_first() -> None:
    text = "web-1 is up (team web-platform)"
    assert AnswerLimit(stop=["team web", "(team"]).whole(text) == "web-1 is up "
    pieces = [text[i:i + 3] for i in range(0, len(text), 3)]
    assert _streamed(AnswerLimit(stop=["team web", "(team"]), pieces) == "web-1 is up "
