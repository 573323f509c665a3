"""Claims are leases: one request per thread across processes; a dead owner never blocks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from agents.it_ops import it_ops_agents
from orchestrator import Orchestrator
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
