"""Side effects exactly once, isolation and limits (issue: trustworthy outcomes, parts 4, 6).

Writes carry an idempotency key (run, subtask, action) recorded with their effect in the
domain database; hung synchronous tools never block a run from returning; tool outputs and
token budgets are capped.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import StructuredTool

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.agents.it_ops import tools as it_tools
from orchestrator.agents.spec import AgentSpec
from orchestrator.config import Settings
from orchestrator.domain_db import use_domain_db
from orchestrator.effects import AlreadyApplied, WriteCall, write_call
from orchestrator.models import FakeChatModel, tool_call
from tests.test_engine import plan_reply

ROOT = Path(__file__).parents[1]


def alerts(db: sqlite3.Connection) -> list[tuple[str, str]]:
    return [tuple(r) for r in db.execute("SELECT service, message FROM alerts")]


def page(message: str, call_id: str) -> AIMessage:
    return tool_call("alert_oncall", {"service": "web-3", "message": message}, call_id=call_id)


def run_notifications(domain_db: Path, tmp_path: Path, pager: FakeChatModel,
                      **settings: Any) -> Any:
    supervisor = FakeChatModel(script=[
        plan_reply(("t1", "Page the on-call engineer for web-3: disk full", "notifications",
                    []))])
    o = Orchestrator(supervisor, agents=it_ops_agents(), domain_db=domain_db,
                     agent_models={"notifications": pager},
                     settings=Settings(home=tmp_path / "home", **settings))
    return o.run("page the web-3 on-call: disk full")


def test_a_model_error_after_a_page_does_not_page_again(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    # Seen: a transient model error after a successful page sent a second page on retry.
    def gateway_down(messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        raise ConnectionError("model gateway returned 502")

    pager = FakeChatModel(script=[page("web-3: disk full", "p1"), gateway_down,
                                  "Paged the web-3 on-call."])
    result = run_notifications(domain_db, tmp_path, pager, max_retries=2)

    assert alerts(db) == [("web-3", "web-3: disk full")]
    (subtask,) = result.results.values()
    assert subtask.status == "done" and subtask.attempts == 2
    # the retry went on from the page (its result in the conversation), not from scratch
    retry_messages = pager.calls[-1].messages
    assert any("Paged" in m.text for m in retry_messages if m.type == "tool")
    pager.assert_complete()


def test_an_agent_that_keeps_paging_pages_once(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    # Seen: an agent that made a new successful call each step paged 18 times.
    pager = FakeChatModel(script=[page(f"web-3 update {i}", f"p{i}") for i in range(18)])
    result = run_notifications(domain_db, tmp_path, pager, max_agent_steps=20, max_retries=0)

    assert len(alerts(db)) == 1
    (subtask,) = result.results.values()
    assert subtask.status == "done"  # the page happened; the repeats were stopped
    replayed = [e for e in result.events if e.type == "tool_called" and e.data.get("replayed")]
    assert replayed and all(e.data["key"] == replayed[0].data["key"] for e in replayed)


def test_two_threads_with_one_write_key_write_once(domain_db: Path,
                                                   db: sqlite3.Connection) -> None:
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def worker() -> None:
        with use_domain_db(domain_db):
            start.wait()
            try:
                with write_call(WriteCall("w-same", "alert_oncall", {"service": "api-1"})):
                    it_tools.alert_oncall.invoke({"service": "api-1", "message": "latency"})
                outcomes.append("wrote")
            except AlreadyApplied:
                outcomes.append("already applied")

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["already applied", "wrote"]
    assert db.execute("SELECT count(*) FROM alerts").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM write_ledger WHERE key = 'w-same'"
                      ).fetchone()[0] == 1


def test_two_processes_with_one_write_key_write_once(domain_db: Path,
                                                     db: sqlite3.Connection) -> None:
    script = textwrap.dedent(f"""
        from orchestrator.agents.it_ops import tools as t
        from orchestrator.domain_db import use_domain_db
        from orchestrator.effects import AlreadyApplied, WriteCall, write_call
        with use_domain_db({str(domain_db)!r}):
            try:
                with write_call(WriteCall("w-proc", "log_incident", {{"service": "db-1"}})):
                    t.log_incident.invoke({{"service": "db-1", "summary": "replica lag"}})
                print("wrote")
            except AlreadyApplied:
                print("already applied")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE) for _ in range(3)]
    said = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert said == ["already applied", "already applied", "wrote"]
    assert db.execute("SELECT count(*) FROM incidents WHERE service = 'db-1'"
                      ).fetchone()[0] == 1


def test_hung_synchronous_tools_never_block_runs_from_returning(tmp_path: Path) -> None:
    # Seen: a hung sync tool timed out its subtask but Orchestrator.run never returned, and
    # after six hung calls every later run in the process stalled.
    script = textwrap.dedent(f"""
        import threading
        from langchain_core.tools import StructuredTool
        from orchestrator.agents.it_ops import it_ops_agents
        from orchestrator.agents.it_ops.tools import AlertArgs
        from orchestrator.agents.spec import AgentSpec
        from orchestrator import Orchestrator
        from orchestrator.config import Settings

        never = threading.Event()

        def stuck_pager(service: str, message: str, severity: str = "high") -> str:
            never.wait()  # a gateway that never answers
            return "paged"

        tool = StructuredTool.from_function(stuck_pager, name="alert_oncall",
                                            description="Page the on-call engineer.",
                                            args_schema=AlertArgs)
        agents = [a for a in it_ops_agents() if a.name != "notifications"]
        agents.append(AgentSpec(name="notifications", description="Pages the on-call team.",
                                skills=["page", "alert", "on-call"], tools=[tool]))
        settings = Settings(home={str(tmp_path / "home")!r}, subtask_timeout_s=1.0,
                            max_retries=0, max_replans=0, knowledge=False)
        o = Orchestrator("fake", agents=agents, domain_db={str(tmp_path / "d.sqlite")!r},
                         settings=settings)
        statuses = [o.run("page the on-call for web-3: disk full").status for _ in range(8)]
        # the same process, its eight hung calls still stuck: a later run is not stalled
        patient = Orchestrator("fake", agents=agents, domain_db={str(tmp_path / "d.sqlite")!r},
                               settings=Settings(home={str(tmp_path / "home")!r},
                                                 knowledge=False))
        healthy = patient.run("check the health of api-2")
        print(len(statuses), set(statuses) <= {{"unknown", "failed"}}, "unknown" in statuses,
              healthy.status)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # eight runs returned (a pager stuck mid-call: outcome unknown), and a later run is fine
    assert proc.stdout.split() == ["8", "True", "True", "ok"], proc.stderr[-3000:]


def test_a_huge_tool_output_is_cut_and_does_not_bloat_the_checkpoint(
        domain_db: Path, tmp_path: Path) -> None:
    def dump_logs(service: str) -> str:
        """Dump every log line of a service."""
        return "x" * (20 * 1024 * 1024)

    from orchestrator.agents.policy import read_only

    dump = read_only(StructuredTool.from_function(dump_logs))
    agents = [*it_ops_agents(), AgentSpec(name="log_dump", description="Dumps service logs.",
                                          skills=["dump logs"], tools=[dump])]
    supervisor = FakeChatModel(script=[
        plan_reply(("t1", "Dump the logs of web-3", "log_dump", [], "answer")),
    ])
    dumper = FakeChatModel(script=[tool_call("dump_logs", {"service": "web-3"}), "Dumped."])
    checkpoints = tmp_path / "checkpoints.sqlite"
    o = Orchestrator(supervisor, agents=agents, domain_db=domain_db, checkpointer=checkpoints,
                     agent_models={"log_dump": dumper},
                     settings=Settings(home=tmp_path / "home", max_tool_output_chars=10_000))
    result = o.run("dump the logs of web-3")
    (subtask,) = result.results.values()
    output = subtask.tool_calls[0].output
    left_out = 20 * 1024 * 1024 - 10_000
    assert len(output) < 10_100 and output.endswith(f"[truncated {left_out} chars]")
    sizes = sum(f.stat().st_size for f in tmp_path.glob("checkpoints.sqlite*"))
    assert sizes < 2 * 1024 * 1024


def test_parallel_agents_cannot_overshoot_the_token_budget(domain_db: Path,
                                                           tmp_path: Path) -> None:
    # Seen: max_tokens=10000 overshot 105x. Six parallel subtasks with long goals: each
    # specialist call is about 1,000 tokens, so without reservation all six would start.
    padding = " ".join(["(context: the service had a long incident history)"] * 60)
    supervisor = FakeChatModel(script=[plan_reply(*[
        (f"t{i}", f"Check the health of api-{i % 2 + 1} {padding}", "monitoring", [])
        for i in range(6)])])
    o = Orchestrator(supervisor, agents=it_ops_agents(), domain_db=domain_db,
                     agent_models={"monitoring": "fake"},
                     settings=Settings(home=tmp_path / "home", max_tokens=8_000,
                                       max_retries=0))
    result = o.run("check the health of api-1 and api-2 six times")
    ran = [r.usage for r in result.results.values() if r.usage.llm_calls]
    largest = max(u.total_tokens // u.llm_calls for u in ran)
    assert result.usage.total_tokens <= 8_000 + largest
    assert result.budget_hit is not None and "max_tokens" in result.budget_hit
    cut = [r for r in result.results.values() if r.failure_kind == "budget"]
    assert cut and all(r.usage.llm_calls == 0 for r in cut)  # refused before the call
    assert json.dumps(result.to_dict())  # the result stays serialisable


def test_a_write_in_flight_at_a_crash_is_unknown_on_resume_not_made_again(
        tmp_path: Path) -> None:
    # Found by review: kill -9 during a write with an external effect (no ledger records it);
    # resume simply ran it again. The write journal noted it before it ran.
    import os
    import signal
    import time

    from orchestrator.domain_db import reset_domain_db

    reset_domain_db(tmp_path / "domain.sqlite")
    program = [sys.executable, "-m", "tests.fixtures.external_pager", str(tmp_path)]
    child = subprocess.Popen([*program, "run"], cwd=ROOT, stderr=subprocess.DEVNULL)
    marker = tmp_path / "reached"
    for _ in range(1200):  # wait on the marker the child writes after the send
        if marker.exists() or child.poll() is not None:
            break
        time.sleep(0.05)
    assert marker.exists(), "the child never reached the send"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    resumed = subprocess.run([*program, "resume"], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.split() == ["unknown", "unknown"]
    assert (tmp_path / "sent.log").read_text().split() == ["web-3"]  # sent once, not twice


def test_a_replan_does_not_repeat_a_write_the_failed_subtask_made(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    # Found by review: the replacement subtask had a new id, so a new write key.
    backup = AgentSpec(name="pager2", description="Backup pager for services.",
                       skills=["page on-call"], tools=[it_tools.alert_oncall])
    supervisor = FakeChatModel(script=[
        plan_reply(("t1", "Page the on-call for web-3", "notifications", [])),
        plan_reply(("p1", "Page the on-call for web-3", "pager2", []))])
    first = FakeChatModel(script=[page("web-3 down", "a1"),
                                  "Error: the pager gateway did not confirm delivery"])
    second = FakeChatModel(script=[page("web-3 down", "b1"), "Paged."])
    o = Orchestrator(supervisor, agents=[*it_ops_agents(), backup], domain_db=domain_db,
                     agent_models={"notifications": first, "pager2": second},
                     settings=Settings(home=tmp_path / "h", max_retries=0, max_reassigns=0))
    result = o.run("page the on-call for web-3")
    assert len(alerts(db)) == 1
    replacement = next(r for r in result.results.values() if r.origin == "t1")
    assert replacement.tool_calls[0].replayed


def test_another_tool_over_the_same_function_does_not_repeat_the_write(
        domain_db: Path, db: sqlite3.Connection, tmp_path: Path) -> None:
    # Found by review: reassigned to an agent whose tool wraps the same function under
    # another name, the page went out again (the key named the tool, not the action).
    def gateway_down(messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        raise ConnectionError("model gateway returned 502")

    renamed = StructuredTool.from_function(it_tools.alert_oncall.func, name="page_oncall",
                                           description="Page the on-call engineer.",
                                           args_schema=it_tools.AlertArgs)
    backup = AgentSpec(name="pager2", description="Backup pager.", skills=["page"],
                       tools=[renamed])
    supervisor = FakeChatModel(script=[tool_call("Plan", {"subtasks": [{
        "id": "t1", "goal": "Page the on-call for web-3", "agent": "notifications",
        "alternatives": ["pager2"], "kind": "act"}]})])
    first = FakeChatModel(script=[page("web-3 down", "a1"), gateway_down])
    second = FakeChatModel(script=[tool_call("page_oncall", {"service": "web-3",
                                                             "message": "web-3 down"}), "Paged."])
    o = Orchestrator(supervisor, agents=[*it_ops_agents(), backup], domain_db=domain_db,
                     agent_models={"notifications": first, "pager2": second},
                     settings=Settings(home=tmp_path / "h", max_retries=0, max_replans=0))
    result = o.run("page the on-call for web-3")
    assert len(alerts(db)) == 1 and result.ok


def test_the_same_outside_write_twice_in_one_step_runs_once(domain_db: Path,
                                                            tmp_path: Path) -> None:
    sent: list[str] = []

    def send_page(service: str, message: str) -> str:
        """Send a page through the external pager gateway."""
        sent.append(service)
        return "sent"

    pager = AgentSpec(name="pager", description="Sends pages.", skills=["page"],
                      tools=[StructuredTool.from_function(send_page)])
    twice = AIMessage(content="", tool_calls=[
        {"name": "send_page", "args": {"service": "web-3", "message": m}, "id": f"c{i}",
         "type": "tool_call"} for i, m in enumerate(["down", "down!"])])
    supervisor = FakeChatModel(script=[tool_call("Plan", {"subtasks": [{
        "id": "t1", "goal": "Page web-3", "agent": "pager", "kind": "act"}]})])
    o = Orchestrator(supervisor, agents=[pager], domain_db=domain_db,
                     agent_models={"pager": FakeChatModel(script=[twice, "Paged."])},
                     settings=Settings(home=tmp_path / "h"))
    result = o.run("page web-3")
    assert sent == ["web-3"] and result.ok


def test_a_tool_that_raises_system_exit_fails_its_subtask_not_the_run(
        domain_db: Path, tmp_path: Path) -> None:
    def quits(service: str) -> str:
        """Restart a service."""
        raise SystemExit("bye")

    doer = AgentSpec(name="doer", description="Restarts services.", skills=["restart"],
                     tools=[StructuredTool.from_function(quits)])
    supervisor = FakeChatModel(script=[tool_call("Plan", {"subtasks": [{
        "id": "t1", "goal": "Restart web-3", "agent": "doer", "kind": "act"}]})])
    o = Orchestrator(supervisor, agents=[doer], domain_db=domain_db,
                     agent_models={"doer": FakeChatModel(script=[
                         tool_call("quits", {"service": "web-3"})])},
                     settings=Settings(home=tmp_path / "h", max_retries=0, max_replans=0))
    result = o.run("restart web-3")
    (subtask,) = result.results.values()
    assert result.status == "failed" and subtask.failure_kind == "tool_error"
    assert "SystemExit" in (subtask.error or "")


def test_oversized_tool_arguments_are_refused(domain_db: Path, tmp_path: Path) -> None:
    huge = "x" * 200_000
    supervisor = FakeChatModel(script=[plan_reply(
        ("t1", "Log an incident for web-3", "incident_log", []))])
    logger = FakeChatModel(script=[tool_call("log_incident", {"service": "web-3",
                                                              "summary": huge}), "Done."])
    o = Orchestrator(supervisor, agents=it_ops_agents(), domain_db=domain_db,
                     agent_models={"incident_log": logger},
                     settings=Settings(home=tmp_path / "h", max_retries=0, max_replans=0))
    result = o.run("log an incident for web-3")
    (subtask,) = result.results.values()
    assert subtask.status == "failed" and subtask.tool_calls[0].status == "refused"
    assert "characters; at most" in subtask.tool_calls[0].output
