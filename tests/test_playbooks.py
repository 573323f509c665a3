"""Playbooks and coordination modes: events, patterns, conditions, approvals."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.config import Settings
from orchestrator.errors import ConfigError, RequestError
from orchestrator.playbooks import load_playbook, load_playbooks, pack_playbooks


def orch(domain_db: Path, checkpointer: Any = None, **settings: Any) -> Orchestrator:
    return Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db,
                        checkpointer=checkpointer, settings=Settings(**settings))


def route(db: sqlite3.Connection, service: str) -> str:
    return str(db.execute("SELECT pool FROM routes WHERE service = ?", (service,)).fetchone()[0])


def test_service_down_event_runs_rca_reroute_alert_and_log(domain_db: Path,
                                                           db: sqlite3.Connection) -> None:
    result = orch(domain_db).fire_event("service_down", {"service": "web-3"})

    assert result.status == "ok", result.answer
    assert result.mode == "playbook:service_down"
    assert [e.type for e in result.events][:2] == ["run_started", "plan_made"]
    plan_event = next(e for e in result.events if e.type == "plan_made")
    assert plan_event.usage == {"llm_calls": 0, "input_tokens": 0, "output_tokens": 0}
    assert {r.agent for r in result.results.values()} == {
        "diagnostics", "traffic", "notifications", "incident_log"}
    assert route(db, "web-3") != "web-primary"
    assert db.execute("SELECT count(*) FROM alerts WHERE service = 'web-3'").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM incidents WHERE service = 'web-3'").fetchone()[0] == 1
    # the alert waited for the root cause and the reroute, and carries what they found
    alert = db.execute("SELECT message FROM alerts").fetchone()[0]
    assert "disk" in alert.lower()


def test_a_false_condition_skips_the_step_but_not_its_dependents(
        domain_db: Path, db: sqlite3.Connection) -> None:
    result = orch(domain_db).fire_event("service_down", {"service": "web-3", "severity": "low"})

    assert result.status == "ok"
    reroute = result.results["reroute"]
    assert reroute.status == "skipped" and reroute.failure_kind == "condition"
    assert result.results["alert"].status == "done" and result.results["log"].status == "done"
    assert route(db, "web-3") == "web-primary"
    assert db.execute("SELECT severity FROM alerts").fetchone()[0] == "low"


def test_a_request_pattern_triggers_a_playbook_in_hybrid_mode(domain_db: Path) -> None:
    result = orch(domain_db).run("run the outage playbook for web-3 please")
    assert result.mode == "playbook:service_down"
    assert result.results["diagnose"].goal == "Find the root cause of the web-3 outage"


def test_rules_mode_refuses_what_no_playbook_covers(domain_db: Path) -> None:
    result = orch(domain_db, coordination="rules").run("check the health of web-2")
    assert result.status == "failed" and result.usage.llm_calls == 0
    assert "no playbook handles this request in rules mode" in (result.error or "")


def test_adaptive_mode_lets_the_supervisor_plan_an_event(domain_db: Path) -> None:
    result = orch(domain_db, coordination="adaptive").fire_event("service_down",
                                                                 {"service": "web-3"})
    assert result.mode == "supervisor"
    plan_event = next(e for e in result.events if e.type == "plan_made")
    assert plan_event.usage is not None and plan_event.usage["llm_calls"] == 1


@pytest.mark.parametrize("coordination", ["hybrid", "adaptive", "rules"])
def test_an_unknown_event_is_an_error_listing_the_known_ones(
        domain_db: Path, db: sqlite3.Connection, coordination: str) -> None:
    # A typo ("servce_down") used to go to the supervisor, which planned something else.
    with pytest.raises(RequestError, match=r"unknown event 'servce_down'.*known events: "
                       r"maintenance_failover, service_down;"):
        orch(domain_db, coordination=coordination).fire_event("servce_down",
                                                              {"service": "web-3"})
    assert route(db, "web-3") == "web-primary"


def test_event_data_missing_an_input_is_a_clear_error(domain_db: Path) -> None:
    result = orch(domain_db).fire_event("service_down", {})
    assert result.status == "failed"
    assert "playbook 'service_down' needs service in the event data" in (result.error or "")
    with pytest.raises(RequestError, match="snake_case"):
        orch(domain_db).fire_event("Service Down!", {})


def test_an_approval_step_pauses_and_resumes_after_approval(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints.sqlite"
    paused = orch(domain_db, checkpoints).run("planned failover for web-2")

    assert paused.status == "paused"
    assert [p.subtask_id for p in paused.pending_approvals] == ["reroute"]
    # the person sees the exact call and its effect from the current state
    (pending,) = paused.pending_approvals
    assert pending.tool == "reroute_traffic" and pending.args == {"service": "web-2"}
    assert pending.preview == "web-2 traffic: web-primary -> web-backup-b"
    assert paused.results["health"].status == "done"
    assert "approval_requested" in [e.type for e in paused.events]
    assert route(db, "web-2") == "web-primary"  # nothing moved before the approval

    # a new process: a fresh orchestrator over the same checkpoint file
    with pytest.raises(RequestError, match="waiting for approval"):
        orch(domain_db, checkpoints).run("check web-1", thread_id=paused.thread_id)
    done = orch(domain_db, checkpoints).resume(paused.thread_id, True, reason="change CR-42",
                                               approver="ana")

    assert done.status == "ok", done.answer
    assert done.run_id == paused.run_id
    assert route(db, "web-2") != "web-primary"
    assert done.results["log"].status == "done"
    decided = next(e for e in done.events if e.type == "approval_decided")
    assert decided.data["approved"] is True and decided.data["reason"] == "change CR-42"
    assert decided.data["approver"] == "ana" and decided.data["key"] == pending.key
    assert decided.data["preview"] == pending.preview
    assert "subtask_started" not in [e.type for e in done.events
                                     if e.subtask_id == "health"]  # not redone


def test_a_denied_step_is_not_taken_and_the_answer_says_so(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    o = orch(domain_db, tmp_path / "checkpoints.sqlite")
    paused = o.run("planned failover for web-2")
    done = o.resume(paused.thread_id, {"reroute": {"approved": False,
                                                   "reason": "peak traffic"}})

    assert route(db, "web-2") == "web-primary"
    reroute = done.results["reroute"]
    assert reroute.status == "cancelled" and reroute.failure_kind == "denied"
    assert "peak traffic" in done.answer
    assert done.results["log"].status == "skipped"  # it needed the reroute
    assert done.status == "partial"
    with pytest.raises(RequestError, match="no paused run"):
        o.resume(paused.thread_id, True)


def test_built_in_playbooks_load_and_name_real_agents() -> None:
    names = {a.name for a in it_ops_agents()}
    playbooks = pack_playbooks()
    assert {p.name for p in playbooks} >= {"service_down", "planned_failover"}
    for playbook in playbooks:
        if playbook.pack == "it_ops":
            playbook.check_agents(names)
    assert {p.pack for p in pack_playbooks("it_ops")} == {"it_ops"}


@pytest.mark.parametrize(("text", "message"), [
    ("name: x\ntrigger: {}\nsteps: [{id: a, agent: monitoring, goal: g}]",
     "a trigger needs an event, a pattern, or both"),
    ("name: x\ntrigger: {event: e}\nsteps: [{id: a, agent: monitoring, goal: 'check {svc}'}]",
     "goal uses {svc}, which is not an input"),
    ("name: x\ntrigger: {event: e}\nsteps:\n - {id: a, agent: m, goal: g, depends_on: [b]}\n"
     " - {id: b, agent: m, goal: g, depends_on: [a]}", "dependency cycle"),
    ("name: x\ntrigger: {event: e}\nsteps:\n - {id: a, agent: m, goal: g}\n"
     " - {id: b, agent: m, goal: g, when: {path: steps.a.output}}", "exactly one of"),
    ("name: x\ntrigger: {event: e}\nsteps:\n - {id: a, agent: m, goal: g}\n"
     " - {id: b, agent: m, goal: g, when: {path: steps.a.status, equals: done}}",
     "condition reads step 'a', which it does not depend on"),
    ("name: x\ntrigger: {pattern: '(unclosed'}\nsteps: [{id: a, agent: m, goal: g}]",
     "not a valid regular expression"),
    ("name: x\ntrigger: {event: e}\nsteps: []", "at least 1 item"),
    ("name: x\ntrigger: {event: e}\nsteps: [{id: a, agent: m, goal: g, retries: 3}]",
     "Extra inputs are not permitted"),
    ("- just a list", "a playbook is a YAML mapping"),
    ("name: x\ntrigger: {event: a\nsteps: [\n",
     r"cannot read the playbook \(line 3, column 6\): expected ',' or '\}'"),
])
def test_invalid_playbooks_are_clear_errors_naming_the_file(tmp_path: Path, text: str,
                                                            message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_playbook(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)  # one line


def test_a_playbook_naming_a_missing_agent_fails_at_start(tmp_path: Path,
                                                          domain_db: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: p\ntrigger: {event: e}\nsteps: [{id: a, agent: nobody, goal: g}]")
    assert [p.name for p in load_playbooks(tmp_path)] == ["p"]
    with pytest.raises(ConfigError, match="step 'a' names unknown agent 'nobody'"):
        orch(domain_db, playbooks_dir=tmp_path)


def test_waiting_for_an_approval_does_not_use_up_the_wall_time_budget(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    import time

    o = orch(domain_db, tmp_path / "checkpoints.sqlite", max_wall_s=1.5)
    paused = o.run("planned failover for web-2")
    time.sleep(2.0)  # a person takes longer than the run's whole wall-time budget
    done = o.resume(paused.thread_id, True)
    assert done.status == "ok" and done.budget_hit is None
    assert route(db, "web-2") != "web-primary"


def approval_agents() -> list[Any]:
    from orchestrator.agents.policy import audited, requires_approval
    from orchestrator.agents.spec import AgentSpec

    specs = []
    for spec in it_ops_agents():
        if spec.name == "traffic":
            tools = [requires_approval(t.model_copy(), when=lambda a: (
                f"moving {a['service']} needs the service owner" if a.get("service") in
                ("web-3", "api-1") else None)) if t.name == "reroute_traffic" else t
                for t in spec.tools]
            spec = AgentSpec(name=spec.name, description=spec.description, skills=spec.skills,
                             tools=tools, collections=spec.collections, domain=spec.domain)
        if spec.name == "monitoring":
            spec = AgentSpec(name=spec.name, description=spec.description, skills=spec.skills,
                             tools=[audited(t.model_copy()) for t in spec.tools],
                             domain=spec.domain)
        specs.append(spec)
    return specs


def test_a_tool_call_that_needs_approval_pauses_and_runs_once_approved(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    def fresh() -> Orchestrator:  # each call: a new process, the same checkpoint file
        return Orchestrator("fake", agents=approval_agents(), domain_db=domain_db,
                            checkpointer=tmp_path / "c.sqlite", settings=Settings())

    paused = fresh().run("check the health of web-2 and reroute web-3 traffic to a backup pool")
    assert paused.status == "paused"
    (pending,) = paused.pending_approvals
    assert pending.tool == "reroute_traffic" and pending.args["service"] == "web-3"
    assert pending.why == "moving web-3 needs the service owner"
    assert route(db, "web-3") == "web-primary"  # the call did not run
    health = next(r for r in paused.results.values() if r.agent == "monitoring")
    assert health.status == "done"
    checked = next(e for e in paused.events if e.type == "tool_called"
                   and e.data["tool"] == "check_service_health")
    assert checked.data["audit"] is True  # audited reads are flagged in the events

    done = fresh().resume(paused.thread_id, {pending.subtask_id: True})
    assert done.status == "ok", done.answer
    assert route(db, "web-3") != "web-primary"
    assert [e.type for e in done.events].count("subtask_started") == 1  # only the reroute


def test_a_denied_tool_call_is_not_made(domain_db: Path, db: sqlite3.Connection,
                                        tmp_path: Path) -> None:
    o = Orchestrator("fake", agents=approval_agents(), domain_db=domain_db,
                     checkpointer=tmp_path / "c.sqlite")
    paused = o.run("reroute web-3 traffic to a backup pool")
    done = o.resume(paused.thread_id, False, reason="owner unreachable")
    assert route(db, "web-3") == "web-primary"
    (result,) = done.results.values()
    assert result.status == "cancelled" and result.failure_kind == "denied"
    assert "approval for reroute_traffic denied (owner unreachable)" in done.answer
    # a call the rule lets through needs no approval
    assert o.run("reroute web-4 traffic to a backup pool").status == "ok"


def test_two_processes_approving_one_run_do_the_work_once(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    import asyncio

    from orchestrator.runs import RunStore

    def process() -> Orchestrator:  # its own objects, the same files
        return Orchestrator("fake:latency=0.05", agents=it_ops_agents(), domain_db=domain_db,
                            checkpointer=tmp_path / "c.sqlite",
                            runs=RunStore(tmp_path / "runs.sqlite"))

    paused = process().run("planned failover for web-2")

    async def both() -> list[Any]:
        return await asyncio.gather(process().aresume(paused.thread_id, True),
                                    process().aresume(paused.thread_id, True),
                                    return_exceptions=True)

    outcomes = asyncio.run(both())
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], RequestError)
    # The second either finds the run being resumed, or (on a loaded machine, reaching the
    # thread only once the first has finished) nothing left to approve.
    assert ("already being resumed" in str(errors[0])
            or "has no paused run to resume" in str(errors[0])), errors[0]
    assert db.execute("SELECT count(*) FROM incidents WHERE service = 'web-2'").fetchone()[0] == 1


def test_after_an_approval_the_agent_goes_on_where_it_stopped(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    from orchestrator.models import FakeChatModel, tool_call

    script = FakeChatModel(script=[
        tool_call("show_route", {"service": "web-3"}, call_id="a"),
        tool_call("reroute_traffic", {"service": "web-3"}, call_id="b"),
        "Moved web-3 to its backup pool.",
    ])

    def process() -> Orchestrator:
        return Orchestrator("fake", agents=approval_agents(), domain_db=domain_db,
                            checkpointer=tmp_path / "c.sqlite",
                            agent_models={"traffic": script})

    paused = process().run("reroute web-3 traffic to a backup pool")
    assert paused.status == "paused"
    done = process().resume(paused.thread_id, True)

    assert done.status == "ok" and done.answer == "Moved web-3 to its backup pool."
    script.assert_complete()  # 3 model calls in all: nothing was asked twice
    (result,) = done.results.values()
    assert [c.name for c in result.tool_calls] == ["show_route", "reroute_traffic"]
    assert result.attempts == 1 and result.usage.llm_calls == 3
    assert route(db, "web-3") != "web-primary"
