"""Claims are leases: one request per thread across processes; a dead owner never blocks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.agents.policy import read_only
from orchestrator.cli.view import print_answer
from orchestrator.config import Settings
from orchestrator.errors import RequestError
from orchestrator.events import Event
from orchestrator.runs import HOST, Owner, RunStore
from tests.support.processes import (
    crash_env,
    dead_pid,
    make_gate,
    run_cli,
    start_cli,
    wait_for_marker,
)


def test_a_thread_runs_one_request_at_a_time_across_processes(
        orchestrator_home: Path, tmp_path: Path) -> None:
    gate = make_gate(tmp_path / "gate")
    holder = start_cli("run", "crash drill for web-3", "--thread", "ops", "--json",
                       env=crash_env(gate))
    wait_for_marker(gate / "reached", holder)

    busy = run_cli("run", "check the health of web-1", "--thread", "ops", env=crash_env())
    assert busy.returncode == 2
    (line,) = [x for x in busy.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: thread 'ops' is busy with run ")
    assert f"by pid {holder.pid}); wait for it to finish or use another thread" in line
    elsewhere = run_cli("run", "check the health of web-1", "--json", env=crash_env())
    assert elsewhere.returncode == 0, elsewhere.stderr  # other threads are not held up

    holder.send_signal(signal.SIGKILL)
    holder.wait()
    after = run_cli("run", "check the health of web-1", "--thread", "ops", "--json",
                    env=crash_env())
    assert after.returncode == 0, after.stderr  # a dead owner's lease does not block
    assert json.loads(after.stdout)["answer"].startswith("web-1 is up")


def test_a_thread_lease_of_another_host_holds_until_it_expires(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    far = Owner("far-away", 4242, "other-host")
    store.acquire_thread("t", "run-far", far, lease_s=60)
    with pytest.raises(RequestError, match=r"thread 't' is busy with run run-far \(started "
                                           r".* by pid 4242 on other-host\)"):
        store.acquire_thread("t", "run-here", Owner.here(), lease_s=60)

    store.acquire_thread("u", "run-far", far, lease_s=-1)  # its owner stopped renewing
    mine = Owner.here()
    store.acquire_thread("u", "run-here", mine, lease_s=60)  # taken over
    store.release_thread("u", far)  # the old owner coming back releases nothing
    with pytest.raises(RequestError, match="busy with run run-here"):
        store.acquire_thread("u", "another", Owner("x", 1, "other-host"), lease_s=60)


def test_a_claim_on_a_paused_run_expires_with_its_owner(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    approver = Owner("approver", dead_pid(), HOST)
    store.start_run("r1", "t1", "planned failover for web-2", owner=approver, lease_s=60)
    store.set_status("r1", "paused", approver)
    assert store.claim_paused("r1", approver, lease_s=60)  # status resuming, then it died
    assert store.run("r1")["status"] == "interrupted"  # not 'resuming' forever
    assert store.claim_paused("r1", Owner.here(), lease_s=60)  # a new decision may win
    assert not store.claim_paused("r1", Owner.here(), lease_s=60)  # but only one

    live = Owner("live", 99, "other-host")
    store.start_run("r2", "t2", "x", owner=live, lease_s=60)
    assert store.run("r2")["status"] == "running"
    assert not store.claim_interrupted("r2", Owner.here(), lease_s=60)


def test_two_orchestrators_in_one_process_share_the_thread_lease(domain_db: Path,
                                                                 tmp_path: Path) -> None:
    def process() -> Orchestrator:
        return Orchestrator("fake:latency=0.05", agents=it_ops_agents(), domain_db=domain_db,
                            runs=RunStore(tmp_path / "runs.sqlite"))

    async def both() -> list[Any]:
        return await asyncio.gather(process().arun("check web-1 health", thread_id="same"),
                                    process().arun("check web-2 health", thread_id="same"),
                                    return_exceptions=True)

    outcomes = asyncio.run(both())
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1 and "thread 'same' is busy with run" in str(errors[0])


def test_leases_are_renewed_while_the_run_works(domain_db: Path, tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    orch = Orchestrator("fake:latency=0.3", agents=it_ops_agents(), domain_db=domain_db,
                        runs=RunStore(path), settings=Settings(lease_s=0.3))
    seen: list[str] = []

    def on_event(event: Event) -> None:
        if event.type == "tool_called":  # two model calls in: twice the lease has passed
            other = RunStore(path)
            try:
                other.acquire_thread("renewed", "intruder", Owner.here(), lease_s=60)
                seen.append("taken")
            except RequestError:
                seen.append("busy")
            seen.append(other.run(event.run_id)["status"])

    started = time.monotonic()
    result = orch.run("check web-1 health", thread_id="renewed", on_event=on_event)
    assert time.monotonic() - started > 0.6
    assert result.ok and seen == ["busy", "running"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX process semantics")
def test_a_run_whose_owner_died_reads_interrupted(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    store.start_run("gone", "t", "x", owner=Owner("o", dead_pid(), HOST), lease_s=60)
    store.start_run("late", "t2", "x", owner=Owner("o2", 7, "other-host"), lease_s=-1)
    store.start_run("alive", "t3", "x", owner=Owner.here(), lease_s=60)
    statuses = {r.run_id: r.status for r in store.list_runs()}
    assert statuses == {"gone": "interrupted", "late": "interrupted", "alive": "running"}


# --- a process that lost its lease stops (real processes) ---------------------------------
# The pager below is outside the business database, so the write ledger cannot make its
# pages happen once: each page a process sends is a line in a file the test reads. The drill
# first watches (a read, repeated safely by whoever resumes the run) and holds there.

LEASE_DRILL = """\
name: lease_drill
description: Watch the drill channel and hold, then page outside.
trigger:
  event: lease_drill
inputs: [service]
steps:
  - id: hold
    agent: holder
    goal: "Check the drill channel and hold for the {service} lease drill"
    kind: answer
  - id: page
    agent: pager
    goal: "Page the on-call: the {service} lease drill is over"
    depends_on: [hold]
    kind: act
"""


def _send_outside(what: str) -> None:
    with open(os.environ["ORCH_TEST_OUTSIDE"], "a") as pager:
        pager.write(f"{what} {os.getpid()}\n")


def watch_and_hold(message: str) -> str:
    """Check the drill channel, then hold until released."""
    _send_outside("watch")
    gate = os.environ.get("ORCH_TEST_GATE")
    if gate:
        # Opened before ``reached``: the test can release it even while this process is
        # stopped (a reader is there), and it waits until the test writes.
        fifo = os.open(Path(gate, "release"), os.O_RDONLY | os.O_NONBLOCK)
        Path(gate, "reached").write_text(str(os.getpid()))
        select.select([fifo], [], [])
        os.close(fifo)
    return "The drill channel is quiet."


read_only(watch_and_hold)


def page_outside(message: str) -> str:
    """Page the on-call through the outside pager."""
    _send_outside("page")
    return "Paged the on-call."


def outside_env(tmp_path: Path, gate: Path | None = None) -> dict[str, str]:
    cards, playbooks = tmp_path / "cards", tmp_path / "playbooks"
    if not cards.exists():
        cards.mkdir()
        playbooks.mkdir()
        for name, tool in (("holder", "watch_and_hold"), ("pager", "page_outside")):
            (cards / f"{name}.yaml").write_text(
                f"name: {name}\ndescription: Pages through the outside pager.\n"
                f"skills: [{name}]\nprompt: Page once.\n"
                f"tools:\n  - tests.test_thread_leases:{tool}\ndomain: it_ops\n")
        (playbooks / "lease_drill.yaml").write_text(LEASE_DRILL)
    return crash_env(gate, ORCHESTRATOR_AGENTS_DIR=str(cards),
                     ORCHESTRATOR_PLAYBOOKS_DIR=str(playbooks), ORCHESTRATOR_LEASE_S="1",
                     ORCH_TEST_OUTSIDE=str(tmp_path / "pages.log"))


def pages(tmp_path: Path) -> list[tuple[str, int]]:
    lines = (tmp_path / "pages.log").read_text().split("\n")
    return [(what, int(pid)) for what, pid in (line.split() for line in lines if line)]


def wait_for_status(store: RunStore, run_id: str, status: str) -> None:
    deadline = time.monotonic() + 60
    while store.run(run_id)["status"] != status:
        assert time.monotonic() < deadline, store.run(run_id)
        time.sleep(0.05)  # polling the record until the stopped owner's lease runs out


def release(gate: Path) -> None:
    with open(gate / "release", "w") as fifo:  # a reader is there: this does not block
        fifo.write("go")


def test_an_owner_stopped_past_its_lease_stops_when_it_wakes_and_leaves_the_run_alone(
        orchestrator_home: Path, tmp_path: Path) -> None:
    # Seen: the owner frozen (SIGSTOP) past its lease, another process resumed the run, the
    # owner woke and went on too: two processes drove one run, both said `finished: ok`.
    gate, later_gate = make_gate(tmp_path / "gate"), make_gate(tmp_path / "later-gate")
    owner = start_cli("event", "lease_drill", "--data", '{"service": "web-3"}', "--json",
                      env=outside_env(tmp_path, gate))
    started: list[subprocess.Popen[str]] = [owner]
    try:
        wait_for_marker(gate / "reached", owner)
        owner.send_signal(signal.SIGSTOP)
        store = RunStore(orchestrator_home / "runs.sqlite")
        (run,) = store.list_runs()
        wait_for_status(store, run.run_id, "interrupted")
        # Another process takes the run over and holds it where the owner held it.
        taker = start_cli("resume", run.run_id, "--json", env=outside_env(tmp_path, later_gate))
        started.append(taker)
        wait_for_marker(later_gate / "reached", taker)
        release(gate)  # its hold returns as the owner wakes
        owner.send_signal(signal.SIGCONT)
        out, err = owner.communicate(timeout=60)
        release(later_gate)
        taken_out, taken_err = taker.communicate(timeout=60)
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.send_signal(signal.SIGCONT)
                proc.wait()

    assert owner.returncode == 1, err + out
    stopped = json.loads(out)
    assert stopped["status"] == "interrupted", stopped
    assert "was taken over by another process" in stopped["error"], stopped["error"]
    assert taker.returncode == 0, taken_err + taken_out
    taken = json.loads(taken_out)
    assert taken["status"] == "ok"
    # The woken owner did nothing more: the page went out once, from the new owner.
    sent = pages(tmp_path)
    assert [what for what, pid in sent if pid == owner.pid] == ["watch"]
    assert [what for what, pid in sent if pid == taker.pid] == ["watch", "page"]
    # The record is the new owner's: not overwritten, no events added by the old owner.
    record = store.run(run.run_id)
    assert (record["status"], record["pid"], record["answer"]) == (
        "ok", taker.pid, taken["answer"])
    events = store.events(run.run_id)
    assert [e.type for e in events].count("answer") == 1
    assert [(e.subtask_id, e.data.get("replayed", False)) for e in events
            if e.type == "tool_called"] == [("hold", False), ("page", False)]


# --- a lost claim, in one process ----------------------------------------------------------


def steal(runs_db: Path, run_id: str) -> None:
    """What another process's claim does to the run's row once the lease has run out."""
    with sqlite3.connect(runs_db) as conn:
        conn.execute("UPDATE runs SET status = 'resuming', owner = 'intruder', pid = 4242, "
                     "host = 'other-host', lease_until = ? WHERE run_id = ?",
                     (time.time() + 600, run_id))


def test_a_run_taken_over_as_it_finishes_does_not_write_its_outcome(domain_db: Path,
                                                                      tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, runs=store,
                        checkpointer=tmp_path / "c.sqlite")

    def on_event(event: Event) -> None:
        if event.type == "answer":  # the run is done; its record is not written yet
            steal(path, event.run_id)

    result = orch.run("page the on-call engineer for web-3: disk full", on_event=on_event)
    assert result.status == "interrupted" and result.answer == ""
    assert result.error is not None and "taken over by another process (pid 4242 on " \
        "other-host)" in result.error
    record = store.run(result.run_id)
    assert (record["status"], record["owner"], record["answer"]) == (
        "resuming", "intruder", None)
    console = Console(record=True, width=300)
    print_answer(console, result)  # what the CLI shows
    assert "was taken over by another process (pid 4242 on other-host)" in console.export_text()


@pytest.mark.parametrize("lease_s", [0.3, 30.0], ids=["renewal-tells", "refused-events-tell"])
def test_a_run_taken_over_while_it_works_stops_at_once(domain_db: Path, tmp_path: Path,
                                                        lease_s: float) -> None:
    # With a 30 s lease nothing is renewed before the run ends: only the refused write of
    # its next events tells it (events go straight to the writer, not through the graph's
    # stream, so nothing else looks at them until the step, the whole plan, has run).
    path = tmp_path / "runs.sqlite"
    orch = Orchestrator("fake:latency=0.3", agents=it_ops_agents(), domain_db=domain_db,
                        runs=RunStore(path), settings=Settings(lease_s=lease_s, max_retries=0))

    def on_event(event: Event) -> None:
        if event.type == "tool_called" and event.data["tool"] == "find_root_cause":
            steal(path, event.run_id)

    result = orch.fire_event("service_down", {"service": "web-3"}, on_event=on_event)
    assert result.status == "interrupted"
    assert result.error is not None and "was taken over by another process" in result.error
    assert outside_writes(domain_db) == (0, 0)  # alert and log come after the diagnosis
    assert RunStore(path).run(result.run_id)["owner"] == "intruder"


def test_a_thread_taken_over_while_the_run_works_stops_it_at_the_next_renewal(
        domain_db: Path, tmp_path: Path) -> None:
    # Only the renewal sees this one: the run's own row is still this process's.
    path = tmp_path / "runs.sqlite"
    orch = Orchestrator("fake:latency=0.3", agents=it_ops_agents(), domain_db=domain_db,
                        runs=RunStore(path), settings=Settings(lease_s=0.3, max_retries=0))

    def on_event(event: Event) -> None:
        if event.type == "tool_called" and event.data["tool"] == "find_root_cause":
            with sqlite3.connect(path) as conn:
                conn.execute("UPDATE thread_leases SET owner = 'intruder', run_id = 'other', "
                             "lease_until = ?", (time.time() + 600,))

    result = orch.fire_event("service_down", {"service": "web-3"}, thread_id="ops",
                             on_event=on_event)
    assert result.status == "interrupted"
    assert result.error is not None and "its thread 'ops' was taken over by another " \
        "process" in result.error and "orchestrator resume" in result.error
    assert outside_writes(domain_db) == (0, 0)
    record = RunStore(path).run(result.run_id)
    assert (record["status"], record["owner"]) == ("interrupted", None)


def outside_writes(domain_db: Path) -> tuple[int, int]:
    """Alerts and incidents on web-3."""
    db = sqlite3.connect(domain_db)
    return (db.execute("SELECT count(*) FROM alerts WHERE service = 'web-3'").fetchone()[0],
            db.execute("SELECT count(*) FROM incidents WHERE service = 'web-3'").fetchone()[0])


def test_a_lease_that_cannot_be_renewed_before_it_runs_out_stops_the_run(
        domain_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    orch = Orchestrator("fake:latency=0.3", agents=it_ops_agents(), domain_db=domain_db,
                        runs=store, settings=Settings(lease_s=0.3, max_retries=0))

    def locked(*args: Any) -> bool:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store, "renew", locked)
    result = orch.fire_event("service_down", {"service": "web-3"})
    assert result.status == "interrupted"
    assert result.error is not None and "could not renew its lease" in result.error
    assert "database is locked" in result.error and "orchestrator resume" in result.error
    assert outside_writes(domain_db) == (0, 0)
    record = store.run(result.run_id)
    assert (record["status"], record["owner"]) == ("interrupted", None)


def test_a_run_store_lost_across_the_network_stops_the_run_without_a_traceback(
        domain_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL store that becomes unreachable raises ConnectionError (an OSError): the
    run stops as interrupted, even when its stop cannot be recorded either."""
    store = RunStore(tmp_path / "runs.sqlite")
    orch = Orchestrator("fake:latency=0.3", agents=it_ops_agents(), domain_db=domain_db,
                        runs=store, settings=Settings(lease_s=0.3, max_retries=0))

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("the run store at postgresql://db/orch: connection refused")

    monkeypatch.setattr(store, "renew", unreachable)
    monkeypatch.setattr(store, "finish_run", unreachable)
    monkeypatch.setattr(store, "run", unreachable)
    result = orch.fire_event("service_down", {"service": "web-3"})
    assert result.status == "interrupted"
    assert result.error is not None and "connection refused" in result.error
    assert outside_writes(domain_db) == (0, 0)


def test_a_store_gone_mid_run_leaves_it_interrupted_and_resumable(
        domain_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint store across the network that drops (ConnectionError, an OSError) stops
    the run as interrupted, with the reason and no traceback; what was checkpointed stands,
    and once the store is back the run is resumed with each write made once."""
    from orchestrator.storage import open_checkpointer

    store = RunStore(tmp_path / "runs.sqlite")
    with open_checkpointer(tmp_path / "cp.sqlite") as saver:
        orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, runs=store,
                            checkpointer=saver)
        real_put, puts = saver.aput, [0]

        async def flaky_put(*args: Any, **kwargs: Any) -> Any:
            puts[0] += 1
            if puts[0] == 4:  # after the plan and a step: the database went away
                raise ConnectionError("the checkpoint store at postgresql://db/orch: server "
                                      "closed the connection")
            return await real_put(*args, **kwargs)

        monkeypatch.setattr(saver, "aput", flaky_put)
        result = orch.fire_event("service_down", {"service": "web-3"})
        assert result.status == "interrupted", result
        assert result.error is not None and "server closed the connection" in result.error
        assert "orchestrator resume" in result.error
        assert store.run(result.run_id)["status"] == "interrupted"
        monkeypatch.setattr(saver, "aput", real_put)  # the store is back
        resumed = orch.resume_run(result.run_id)
        assert resumed.status == "ok", resumed
        assert outside_writes(domain_db) == (1, 1)  # one alert, one incident



def _recorded(domain_db: Path, tmp_path: Path) -> tuple[Orchestrator, RunStore]:
    store = RunStore(tmp_path / "runs.sqlite")
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, runs=store,
                        checkpointer=tmp_path / "checkpoints.sqlite")
    return orch, store


def _leases(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        return db.execute("SELECT thread_id, run_id FROM thread_leases").fetchall()


def test_a_store_error_while_claiming_a_thread_leaves_it_free(domain_db: Path,
                                                              tmp_path: Path) -> None:
    """The run store failing as a thread is claimed (a database restarting) fails that
    request only: the next one on the thread runs."""
    orch, store = _recorded(domain_db, tmp_path)
    acquire, failures = store.acquire_thread, [ConnectionError("database restarting")]

    def flaky(*args: Any, **kwargs: Any) -> None:
        if failures:
            raise failures.pop()
        acquire(*args, **kwargs)

    store.acquire_thread = flaky  # type: ignore[method-assign]
    with pytest.raises(OSError, match="restarting"):
        orch.run("check the health of web-1", thread_id="t1")
    assert orch.run("check the health of web-1", thread_id="t1").ok
    assert _leases(tmp_path) == []
    orch.close()


def test_a_request_cancelled_while_claiming_its_thread_leaves_no_claim(
        domain_db: Path, tmp_path: Path) -> None:
    orch, store = _recorded(domain_db, tmp_path)
    acquire = store.acquire_thread

    def slow(*args: Any, **kwargs: Any) -> None:
        time.sleep(0.3)  # the claim lands after its caller gave up
        acquire(*args, **kwargs)

    store.acquire_thread = slow  # type: ignore[method-assign]

    async def scenario() -> Any:
        claiming = asyncio.ensure_future(orch.arun("check the health of web-1",
                                                   thread_id="t2"))
        await asyncio.sleep(0.1)
        claiming.cancel()
        with pytest.raises(asyncio.CancelledError):
            await claiming
        store.acquire_thread = acquire  # type: ignore[method-assign]
        return await asyncio.wait_for(orch.arun("check the health of web-1",
                                                thread_id="t2"), 60)

    assert asyncio.run(scenario()).ok
    assert _leases(tmp_path) == []
    orch.close()


def test_a_run_cancelled_while_its_record_is_written_releases_its_thread_after_it(
        domain_db: Path, tmp_path: Path) -> None:
    """The thread's lease goes with the run's record, in that order, even when the run's
    caller gives up while they are written: nobody takes the thread of a run still on
    record as running."""
    orch, store = _recorded(domain_db, tmp_path)
    finish_run, release_thread = store.finish_run, store.release_thread
    order: list[str] = []

    def finish(*args: Any, **kwargs: Any) -> bool:
        order.append("finish")
        time.sleep(0.3)
        written = finish_run(*args, **kwargs)
        order.append("finished")
        return written

    def release(*args: Any, **kwargs: Any) -> None:
        order.append("release")
        release_thread(*args, **kwargs)

    store.finish_run, store.release_thread = finish, release  # type: ignore[method-assign]

    async def scenario() -> None:
        run = asyncio.ensure_future(orch.arun("check the health of web-1", thread_id="t3"))
        while "finish" not in order:
            await asyncio.sleep(0.01)
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        while "release" not in order:
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert order == ["finish", "finished", "release"]
    assert _leases(tmp_path) == []
    orch.close()
