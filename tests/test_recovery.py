"""Fault injection: failing, hanging and looping agents, budgets. Each test checks the
domain database, the events, and that the rest of the run was not lost."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.agents.it_ops import tools as it_tools
from orchestrator.agents.spec import AgentSpec
from orchestrator.config import Settings
from orchestrator.models import FakeChatModel, tool_call
from orchestrator.results import RunResult

ALERT_REQUEST = "alert the on-call engineer for web-3: disk full on web-3"


class Faults:
    """Counts calls and fails the first ``fail_first`` of them (all when None)."""

    def __init__(self, fail_first: int | None = None) -> None:
        self.fail_first = fail_first
        self.calls = 0

    def wrap(self, name: str, func: BaseTool, description: str) -> BaseTool:
        def run(service: str, message: str, severity: str = "high") -> str:
            self.calls += 1
            if self.fail_first is None or self.calls <= self.fail_first:
                raise ConnectionError("pager gateway returned 503")
            return str(func.invoke({"service": service, "message": message,
                                    "severity": severity}))

        return StructuredTool.from_function(run, name=name, description=description,
                                            args_schema=it_tools.AlertArgs)


def hanging_pager() -> BaseTool:
    async def slow_alert(service: str, message: str, severity: str = "high") -> str:
        await asyncio.sleep(30)
        return "never"

    return StructuredTool.from_function(coroutine=slow_alert, name="alert_oncall",
                                        description="Page the on-call engineer.",
                                        args_schema=it_tools.AlertArgs)


def agents_with(notifications_tool: BaseTool, *extra: AgentSpec) -> list[AgentSpec]:
    specs = [s for s in it_ops_agents() if s.name != "notifications"]
    original = next(s for s in it_ops_agents() if s.name == "notifications")
    specs.append(AgentSpec(name="notifications", description=original.description,
                           skills=original.skills, prompt=original.prompt,
                           tools=[notifications_tool], domain="it_ops"))
    return [*specs, *extra]


def run(domain_db: Path, agents: list[AgentSpec], request: str, model: Any = "fake",
        **settings: Any) -> RunResult:
    orch = Orchestrator(model, agents=agents, domain_db=domain_db, settings=Settings(**settings))
    return orch.run(request)


def types_of(result: RunResult) -> list[str]:
    return [e.type for e in result.events]


def alert_rows(db: sqlite3.Connection) -> list[tuple[str, str]]:
    return [tuple(r) for r in db.execute("SELECT service, person FROM alerts")]


def test_a_tool_that_fails_once_is_retried_and_succeeds(domain_db: Path,
                                                        db: sqlite3.Connection) -> None:
    faults = Faults(fail_first=1)
    tool = faults.wrap("alert_oncall", it_tools.alert_oncall, "Page the on-call engineer.")
    result = run(domain_db, agents_with(tool), ALERT_REQUEST, max_retries=2)

    assert result.status == "ok", result.answer
    (subtask,) = result.results.values()
    assert subtask.status == "done" and subtask.attempts == 2
    assert faults.calls == 2
    assert alert_rows(db) == [("web-3", "Dana Okafor")]  # paged exactly once
    types = types_of(result)
    assert types.count("retried") == 1 and "reassigned" not in types
    retried = next(e for e in result.events if e.type == "retried")
    assert retried.data["kind"] == "tool_error" and "503" in retried.data["after"]
    assert retried.data["delay_s"] > 0


def test_backoff_doubles_between_retries(domain_db: Path, db: sqlite3.Connection) -> None:
    faults = Faults(fail_first=2)
    tool = faults.wrap("alert_oncall", it_tools.alert_oncall, "Page the on-call engineer.")
    result = run(domain_db, agents_with(tool), ALERT_REQUEST, max_retries=2,
                 retry_backoff_s=0.05)
    delays = [e.data["delay_s"] for e in result.events if e.type == "retried"]
    assert delays == [0.05, 0.1]
    assert result.status == "ok" and faults.calls == 3
    ends = [e.time for e in result.events if e.type == "attempt_finished"]
    starts = [e.time for e in result.events if e.type == "retried"]
    # each retry really waited: the next attempt ended at least its delay after the last
    assert ends[1] - starts[0] >= 0.05 and ends[2] - starts[1] >= 0.1
    assert alert_rows(db) == [("web-3", "Dana Okafor")]


def test_a_tool_that_always_fails_is_reassigned_to_an_alternative(
        domain_db: Path, db: sqlite3.Connection) -> None:
    broken = Faults().wrap("alert_oncall", it_tools.alert_oncall, "Page the on-call engineer.")
    backup = AgentSpec(
        name="backup_pager", description="Second paging channel: pages on-call engineers.",
        skills=["alert", "page", "on-call"], tools=[it_tools.alert_oncall], domain="it_ops")
    request = "check the health of web-2 and alert the on-call engineer for web-3: disk full"
    result = run(domain_db, agents_with(broken, backup), request, max_retries=1)

    assert result.status == "ok", result.answer
    paged = next(r for r in result.results.values() if "alert" in r.goal)
    assert paged.agent == "backup_pager" and paged.agents_tried == ["notifications",
                                                                    "backup_pager"]
    assert paged.attempts == 3  # two on notifications, one on the backup
    assert alert_rows(db) == [("web-3", "Dana Okafor")]
    moved = next(e for e in result.events if e.type == "reassigned")
    assert moved.data["from"] == "notifications" and moved.data["to"] == "backup_pager"
    # the independent health check was not disturbed
    health = next(r for r in result.results.values() if r.agent == "monitoring")
    assert health.status == "done" and "web-2" in health.output


def test_an_agent_with_no_alternative_is_replanned_and_dependents_wait(
        domain_db: Path, db: sqlite3.Connection) -> None:
    broken = Faults().wrap("alert_oncall", it_tools.alert_oncall, "Page the on-call engineer.")

    def send_sms(service: str, message: str, severity: str = "high") -> str:
        """Text the on-call engineer of a service by SMS."""
        return "SMS sent: " + str(it_tools.alert_oncall.invoke(
            {"service": service, "message": message, "severity": severity}))

    sms = AgentSpec(name="sms_gateway",
                    description="Sends an SMS text to the on-call engineer of a service.",
                    skills=["sms", "text message"],
                    tools=[StructuredTool.from_function(send_sms,
                                                        args_schema=it_tools.AlertArgs)],
                    domain="it_ops")
    request = ("alert the on-call engineer for web-3: disk full on web-3, "
               "then log an incident for web-3")
    result = run(domain_db, agents_with(broken, sms), request, max_retries=0)

    assert result.status == "ok", result.answer
    assert result.plan is not None
    failed = result.results["t1"]
    assert failed.status == "failed" and failed.replaced_by == ["r1_t1"]
    replacement = result.results["r1_t1"]
    assert replacement.agent == "sms_gateway" and replacement.status == "done"
    logged = result.results["t2"]
    assert logged.status == "done"
    assert result.plan.subtask("t2").depends_on == ["r1_t1"]  # rewired to the replacement
    assert alert_rows(db) == [("web-3", "Dana Okafor")]
    assert db.execute("SELECT count(*) FROM incidents WHERE service = 'web-3'").fetchone()[0] == 1
    types = types_of(result)
    assert "replanned" in types
    replan_time = next(e.time for e in result.events if e.type == "replanned")
    log_start = next(e.time for e in result.events
                     if e.type == "subtask_started" and e.subtask_id == "t2")
    assert log_start >= replan_time  # the dependent waited for its replacement


def test_a_hanging_tool_times_out_and_the_rest_of_the_run_survives(
        domain_db: Path, db: sqlite3.Connection) -> None:
    hang = hanging_pager()
    request = "check the health of web-2 and alert the on-call engineer for web-3: disk full"
    result = run(domain_db, agents_with(hang), request, subtask_timeout_s=0.3, max_retries=1,
                 max_replans=0)

    # The page was under way when the timeout cut it off: it may have gone out, so it is
    # neither done nor failed, and it is not tried again (that could page twice).
    assert result.status == "unknown"
    paged = next(r for r in result.results.values() if r.agent == "notifications")
    assert paged.status == "unknown" and paged.failure_kind == "outcome_unknown"
    assert paged.attempts == 1 and "cut off after 0.3s" in (paged.error or "")
    health = next(r for r in result.results.values() if r.agent == "monitoring")
    assert health.status == "done"
    assert alert_rows(db) == []
    assert result.elapsed_s < 10
    assert "web-2" in result.answer and "Outcome unknown" in result.answer


def test_a_hanging_read_times_out_and_is_retried(domain_db: Path) -> None:
    async def slow_health(service: str) -> str:
        await asyncio.sleep(30)
        return "never"

    from orchestrator.agents.policy import read_only

    hang = read_only(StructuredTool.from_function(
        coroutine=slow_health, name="check_service_health", args_schema=it_tools.ServiceArgs,
        description="Check a service's health."))
    specs = [s for s in it_ops_agents() if s.name != "monitoring"]
    specs.append(AgentSpec(name="monitoring", description="Checks service health.",
                           skills=["health check"], tools=[hang]))
    result = run(domain_db, specs, "check the health of web-2", subtask_timeout_s=0.3,
                 max_retries=1, max_replans=0, max_reassigns=0)
    (checked,) = result.results.values()
    assert checked.status == "failed" and checked.failure_kind == "timeout"
    assert checked.attempts == 2 and "timed out after 0.3s" in (checked.error or "")


def test_a_looping_agent_is_stopped(domain_db: Path, db: sqlite3.Connection) -> None:
    calls = [tool_call("reroute_traffic", {"service": "web-3"}, call_id=f"c{i}")
             for i in range(3)]
    looping = FakeChatModel(script=calls)
    orch = Orchestrator(
        "fake", agents=it_ops_agents(), domain_db=domain_db, agent_models={"traffic": looping},
        settings=Settings(max_retries=0, max_replans=0, max_identical_calls=2))
    result = orch.run("reroute web-3 traffic to a backup pool")

    (subtask,) = result.results.values()
    # The loop is stopped; the write it asked for happened once, so the subtask is done
    # (not failed) and says why it stopped.
    assert subtask.status == "done" and "repeated reroute_traffic" in subtask.output
    # the first call ran; the second was the same action: its earlier result came back
    # and nothing was redone; the third never ran
    assert [(c.name, c.replayed) for c in subtask.tool_calls] == [
        ("reroute_traffic", False), ("reroute_traffic", True)]
    assert db.execute("SELECT count(*) FROM routes WHERE service = 'web-3' AND "
                      "reason = 'failover'").fetchone()[0] == 1
    looping.assert_complete()


def test_a_stalled_agent_is_stopped(domain_db: Path) -> None:
    # The model keeps calling a tool it does not have: no progress, each step refused.
    calls = [tool_call("drop_database", {"n": i}, call_id=f"c{i}") for i in range(3)]
    orch = Orchestrator(
        "fake", agents=it_ops_agents(), domain_db=domain_db,
        agent_models={"monitoring": FakeChatModel(script=calls)},
        settings=Settings(max_retries=0, max_replans=0, stall_steps=3))
    result = orch.run("check the health of web-2")
    (subtask,) = result.results.values()
    assert subtask.failure_kind == "stalled" and "no progress in 3 steps" in (subtask.error or "")
    with sqlite3.connect(domain_db) as conn:  # nothing was changed by the refused calls
        assert conn.execute("SELECT count(*) FROM routes WHERE reason != 'initial'"
                            ).fetchone()[0] == 0
    assert [e.type for e in result.events].count("tool_refused") == 3


def test_a_budget_hit_stops_new_work_and_the_answer_says_what_was_not_done(
        domain_db: Path, db: sqlite3.Connection) -> None:
    request = "check the health of web-2, then reroute web-3 traffic to a backup pool"
    result = run(domain_db, it_ops_agents(), request, max_llm_calls=3)

    assert result.usage.llm_calls == 3  # the plan and the health check; nothing after
    assert result.status == "partial"
    health, reroute = result.results["t1"], result.results["t2"]
    assert health.status == "done"
    assert reroute.status == "cancelled" and reroute.failure_kind == "budget"
    assert "Stopped early" in result.answer and "max_llm_calls" in result.answer
    assert "traffic (cancelled)" in result.answer
    assert result.budget_hit is not None
    assert db.execute("SELECT count(*) FROM routes WHERE reason = 'failover'").fetchone()[0] == 0
    assert [e.type for e in result.events].count("budget_hit") == 1


def test_parallel_agents_cannot_overshoot_the_call_budget(domain_db: Path) -> None:
    request = ("check the health of web-2, check the health of api-1 and "
               "check the health of db-1")
    result = run(domain_db, it_ops_agents(), request, max_llm_calls=4)
    assert result.usage.llm_calls == 4
    # each agent made its tool call; the reports were cut, so the tool results stand in
    assert [r.status for r in result.results.values()] == ["done"] * 3
    assert all("report cut short: budget" in r.output for r in result.results.values())
    assert "api-1" in result.answer and "db-1" in result.answer


def test_a_wall_time_budget_cancels_work_in_flight(domain_db: Path) -> None:
    hang = hanging_pager()
    result = run(domain_db, agents_with(hang), ALERT_REQUEST, max_wall_s=0.5)
    (subtask,) = result.results.values()
    # cut off mid-page: whether the page went out is unknown (not reported as not done)
    assert subtask.status == "unknown" and subtask.failure_kind == "outcome_unknown"
    with sqlite3.connect(domain_db) as conn:
        assert conn.execute("SELECT count(*) FROM alerts").fetchone()[0] == 0
    assert "wall time" in (result.budget_hit or "")
    assert result.elapsed_s < 10


def test_the_answer_reports_a_replaced_subtask_as_recovered(domain_db: Path) -> None:
    broken = Faults().wrap("alert_oncall", it_tools.alert_oncall, "Page the on-call engineer.")

    def send_sms(service: str, message: str, severity: str = "high") -> str:
        """Text the on-call engineer of a service by SMS."""
        return f"SMS sent to the on-call of {service}"

    sms = AgentSpec(name="sms_gateway",
                    description="Sends an SMS text to the on-call engineer of a service.",
                    skills=["sms"], domain="it_ops",
                    tools=[StructuredTool.from_function(send_sms,
                                                        args_schema=it_tools.AlertArgs)])
    request = "check the health of web-2 and alert the on-call engineer for web-3: disk full"
    result = run(domain_db, agents_with(broken, sms), request, max_retries=0)
    assert result.status == "ok"
    assert "Completed 2 of 2 subtasks" in result.answer
    assert "Recovered:\n- notifications failed" in result.answer
    assert "done instead by r1_t1" in result.answer and "Not done" not in result.answer


def scripted_supervisor(plan: dict[str, Any], replan: dict[str, Any]) -> FakeChatModel:
    """A supervisor that plans, then answers the replan request with ``replan``."""
    return FakeChatModel(script=[tool_call("Plan", plan), tool_call("Plan", replan),
                                 "summary written"])


def test_a_replacement_can_use_finished_work_and_its_failure_is_reported(
        domain_db: Path, db: sqlite3.Connection) -> None:
    broken = Faults().wrap("alert_oncall", it_tools.alert_oncall, "Page the on-call engineer.")
    plan = {"subtasks": [
        {"id": "t1", "goal": "Find the root cause of the web-3 outage", "agent": "diagnostics",
         "kind": "answer"},
        {"id": "t2", "goal": "Alert the on-call engineer for web-3", "agent": "notifications",
         "depends_on": ["t1"], "kind": "act"}]}
    replan = {"subtasks": [{"id": "p1", "goal": "Log an incident for web-3: paging failed",
                            "agent": "incident_log", "depends_on": ["t1"]}]}
    orch = Orchestrator(scripted_supervisor(plan, replan), agents=agents_with(broken),
                        domain_db=domain_db,
                        agent_models={a.name: "fake" for a in it_ops_agents()},
                        settings=Settings(max_retries=0))
    result = orch.run("web-3 is down: find the cause and page someone")

    assert result.status == "ok", result.answer
    assert result.results["t2"].replaced_by == ["r1_p1"]
    assert result.plan is not None and result.plan.subtask("r1_p1").depends_on == ["t1"]
    summary = db.execute("SELECT summary FROM incidents").fetchone()[0]
    assert "disk" in summary.lower()  # it got the root cause of the finished t1


def test_rules_mode_never_asks_the_model_to_replan(domain_db: Path) -> None:
    broken = Faults().wrap("alert_oncall", it_tools.alert_oncall, "Page the on-call engineer.")
    orch = Orchestrator("fake", agents=agents_with(broken), domain_db=domain_db,
                        settings=Settings(coordination="rules", max_retries=0))
    result = orch.fire_event("service_down", {"service": "web-3"})
    assert "replanned" not in [e.type for e in result.events]
    assert result.results["alert"].status == "failed" and result.status == "partial"
    plan_event = next(e for e in result.events if e.type == "plan_made")
    assert plan_event.usage is not None and plan_event.usage["llm_calls"] == 0


def test_a_timed_out_synchronous_tool_is_not_run_twice(domain_db: Path,
                                                       db: sqlite3.Connection) -> None:
    import time as clock

    def slow_alert(service: str, message: str, severity: str = "high") -> str:
        """Page the on-call engineer of a service (slow gateway)."""
        clock.sleep(0.6)
        return str(it_tools.alert_oncall.invoke({"service": service, "message": message,
                                                 "severity": severity}))

    tool = StructuredTool.from_function(slow_alert, name="alert_oncall",
                                        args_schema=it_tools.AlertArgs)
    result = run(domain_db, agents_with(tool), ALERT_REQUEST, subtask_timeout_s=0.2,
                 max_retries=2)
    (subtask,) = result.results.values()
    assert subtask.failure_kind == "outcome_unknown" and subtask.attempts == 1
    # neither done nor not done: the run says so instead of ok or failed
    assert subtask.status == "unknown" and result.status == "unknown"
    assert "whether it took effect is unknown" in (subtask.error or "")
    clock.sleep(0.8)  # the thread finishes the one call it started
    assert len(alert_rows(db)) == 1


def test_a_run_that_makes_no_progress_is_stopped(domain_db: Path) -> None:
    broken = Faults().wrap("alert_oncall", it_tools.alert_oncall, "Page the on-call engineer.")
    request = ("alert the on-call engineer for web-3: disk full, alert the on-call engineer "
               "for web-4: disk full, alert the on-call engineer for api-1: latency")
    result = run(domain_db, agents_with(broken), request, max_retries=3, max_replans=0,
                 run_stall_attempts=4, max_parallel=1)
    assert "no progress: 4 failed attempts in a row" in (result.budget_hit or "")
    attempts = [e for e in result.events if e.type == "attempt_finished"]
    assert len(attempts) == 4  # not 3 subtasks x 4 attempts
    assert "Stopped early" in result.answer


def test_a_model_call_cut_off_by_the_subtask_timeout_is_still_counted(
        domain_db: Path) -> None:
    """Seen with llama.cpp: calls cut off by a timeout were missing from the usage figures
    (121 calls counted, 134 served)."""
    slow = FakeChatModel(latency=5.0)  # the agent's model answers after the timeout
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db,
                        agent_models={"monitoring": slow},
                        settings=Settings(subtask_timeout_s=0.3, max_retries=1, max_replans=0,
                                          max_reassigns=0))
    result = orch.run("check the health of web-2")
    (checked,) = result.results.values()
    assert checked.failure_kind == "timeout" and checked.attempts == 2
    assert checked.usage.llm_calls == 2  # one cut-off call per attempt, each counted
    assert checked.usage.input_tokens > 0  # estimated: the server never said
    assert result.usage.llm_calls >= checked.usage.llm_calls + 1  # + the planner's


def test_a_model_with_one_slot_takes_one_call_at_a_time_and_the_wait_is_not_charged(
        domain_db: Path) -> None:
    """Seen with llama.cpp (one or two slots): up to 8 parallel subtasks queued on the
    server, and the wait counted against each subtask's timeout."""
    from tests.test_engine import plan_reply

    services = ["web-1", "web-2", "web-3", "web-4", "api-1"]
    checks = [(f"t{i}", f"Check the health of {s}", "monitoring", [])
              for i, s in enumerate(services, start=1)]
    supervisor = FakeChatModel(script=[plan_reply(*checks), "All five checked."])
    one_slot = FakeChatModel(latency=0.2, metadata={"orchestrator_slots": 1})
    orch = Orchestrator(supervisor, agents=it_ops_agents(), domain_db=domain_db,
                        agent_models={"monitoring": one_slot},
                        settings=Settings(subtask_timeout_s=0.7, max_retries=0, max_replans=0,
                                          max_reassigns=0))
    result = orch.run("check the health of web-1, web-2, web-3, web-4 and api-1")
    # each subtask needs two calls (0.4 s of its own) but waits up to 1.6 s for the slot,
    # longer than its timeout (found in review: a wait still under way was counted)
    assert result.ok, [(r.id, r.error) for r in result.results.values()]
    spans = sorted((c.started_at, c.finished_at) for c in one_slot.calls)
    assert len(spans) == 10
    counted = sum(result.results[f"t{i}"].usage.llm_calls for i in range(1, 6))
    assert counted == 10  # every call the model took, no call that only waited
    assert all(later[0] >= earlier[1] - 0.01 for earlier, later in itertools.pairwise(spans))
    waited = [e.data.get("slot_wait_s", 0.0) for e in result.events
              if e.type == "attempt_finished"]
    assert max(waited) > 0.7

    # the run's own wall limit still holds, waits included
    walled = Orchestrator(FakeChatModel(script=[plan_reply(*checks)]), agents=it_ops_agents(),
                          domain_db=domain_db, agent_models={"monitoring": one_slot},
                          settings=Settings(subtask_timeout_s=0.7, max_wall_s=1.0,
                                            max_retries=0, max_replans=0, max_reassigns=0))
    started = time.monotonic()
    stopped = walled.run("check the health of web-1, web-2, web-3, web-4 and api-1")
    assert time.monotonic() - started < 1.6 and not stopped.ok
