from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.errors import PlanError
from orchestrator.plan import Plan, Subtask, check_agents, topological_order


def sub(id: str, agent: str = "a", deps: list[str] | None = None) -> dict:
    return {"id": id, "goal": f"do {id}", "agent": agent, "depends_on": deps or []}


def test_valid_plan_orders_dependencies_and_measures_critical_path() -> None:
    plan = Plan(subtasks=[sub("t3", deps=["t1", "t2"]), sub("t1"), sub("t2", deps=["t1"])])
    assert [s.id for s in topological_order(plan)] == ["t1", "t2", "t3"]
    assert plan.critical_path_length() == 3


@pytest.mark.parametrize(
    ("subtasks", "message"),
    [
        ([sub("t1"), sub("t1")], "duplicate subtask id 't1'"),
        ([sub("t1", deps=["t9"])], "depends on unknown subtask 't9'"),
        ([sub("t1", deps=["t1"])], "depends on itself"),
        ([sub("t1", deps=["t2"]), sub("t2", deps=["t1"])], "dependency cycle"),
        ([], "at least one subtask or a direct answer"),
        ([{"id": "t1", "goal": "  ", "agent": "a"}], "empty goal"),
    ],
)
def test_invalid_plans_are_rejected_with_the_reason(subtasks: list[dict], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Plan(subtasks=subtasks)


def test_unknown_agent_names_the_subtask_and_known_agents() -> None:
    plan = Plan(subtasks=[sub("t1", agent="ghost")])
    message = r"subtask 't1' names unknown agent 'ghost'.*known agents: a, b"
    with pytest.raises(PlanError, match=message):
        check_agents(plan, ["b", "a"])


def test_direct_answer_plan_has_no_subtasks() -> None:
    plan = Plan(subtasks=[], answer="I can't do that.")
    assert plan.critical_path_length() == 0
    assert Subtask(id="x", goal="g", agent="a").depends_on == []


def test_the_copy_check_keeps_nothing_of_the_requests_and_goals_it_saw() -> None:
    # Requests and goals are new with every run: cached, each distinct request of the
    # longest length accepted (8,000 characters) pinned ~380 KB of word 4-grams, 1.5 GB
    # once the cache was full. Only the sources (catalog lines) come again.
    import gc
    import random
    import tracemalloc

    from orchestrator.plan import copied_goals

    rng = random.Random(7)

    def text(chars: int) -> str:
        return " ".join("".join(rng.choices("abcdefghij", k=3)) for _ in range(chars // 4))

    sources = {"the catalog line of a": "reads logs and metrics of a host to find a root cause"}
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(40):
            plan = Plan(subtasks=[{"id": "t1", "goal": text(2000), "agent": "a"}])
            assert copied_goals(plan, text(8000), sources) == []
        del plan
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000, f"{kept:,} bytes kept after 40 requests"
