"""Sizes: event data is limited before planning, stored text is capped, and a thread's
checkpoints do not pile up."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.config import Settings
from orchestrator.errors import RequestError
from orchestrator.models import FakeChatModel
from orchestrator.runs import RunStore
from tests.test_cli import cli


def test_big_event_data_is_refused_before_any_planning(domain_db: Path,
                                                        tmp_path: Path) -> None:
    model = FakeChatModel(script=[])  # any model call would fail the test
    store = RunStore(tmp_path / "runs.sqlite")
    orch = Orchestrator(model, agents=it_ops_agents(), domain_db=domain_db, runs=store)
    with pytest.raises(RequestError, match=r"the event data is 5000032 bytes; the limit is "
                                           r"8000 \(raise ORCHESTRATOR_MAX_EVENT_BYTES"):
        orch.fire_event("service_down", {"service": "web-3", "note": "x" * 5_000_000})
    with pytest.raises(RequestError, match="event data must be plain JSON"):
        orch.fire_event("service_down", {"when": object()})
    with pytest.raises(RequestError, match="must be a JSON object"):
        orch.fire_event("service_down", ["web-3"])  # type: ignore[arg-type]
    assert model.calls == [] and store.list_runs() == []


def test_the_cli_refuses_a_big_event_in_one_line(orchestrator_home: Path, tmp_path: Path
                                                 ) -> None:
    proc = cli("event", "service_down", "--data", json.dumps({"note": "x" * 20_000}),
               env={"ORCHESTRATOR_KNOWLEDGE": "0"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "the event data is 20012 bytes; the limit is 8000" in proc.stderr
    assert not (orchestrator_home / "runs.sqlite").exists() or \
        sqlite3.connect(orchestrator_home / "runs.sqlite").execute(
            "SELECT count(*) FROM runs").fetchone()[0] == 0


def test_text_written_to_the_run_store_is_capped_with_a_marker(domain_db: Path,
                                                               tmp_path: Path) -> None:
    settings = Settings(max_stored_chars=300, max_event_bytes=100_000)
    store = RunStore(tmp_path / "runs.sqlite", max_text=settings.max_stored_chars)
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, runs=store,
                        settings=settings)
    result = orch.fire_event("service_down", {"service": "web-3", "note": "n" * 50_000})
    assert result.status == "ok"

    started = store.events(result.run_id)[0]
    assert started.type == "run_started"
    assert "...[truncated" in json.dumps(started.data)  # cut, and still valid JSON
    record = store.run(result.run_id)
    assert len(record["request"]) < 400 and "...[truncated" in record["request"]
    raw = sqlite3.connect(tmp_path / "runs.sqlite").execute(
        "SELECT max(length(data)) FROM events").fetchone()[0]
    assert raw <= 400


def checkpoint_rows(path: Path, thread: str) -> tuple[int, int]:
    db = sqlite3.connect(path)
    return (db.execute("SELECT count(*) FROM checkpoints WHERE thread_id = ?", (thread,)
                       ).fetchone()[0],
            db.execute("SELECT count(*) FROM writes WHERE thread_id = ?", (thread,)
                       ).fetchone()[0])


def test_a_finished_run_keeps_only_its_latest_checkpoint(domain_db: Path,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite"
    orch = Orchestrator("fake", agents=it_ops_agents(), domain_db=domain_db, checkpointer=path)
    for n in range(1, 4):
        assert orch.run(f"check the health of web-{n}", thread_id="chat").ok
        assert checkpoint_rows(path, "chat") == (1, 0)
    turns = asyncio.run(orch.history("chat"))
    assert [role for role, _ in turns] == ["user", "assistant"] * 3  # the history is intact
    assert orch.run("and web-1 again?", thread_id="chat").ok

    # A paused run keeps what its resume needs; once it has finished, it is pruned too.
    paused = orch.run("planned failover for web-2", thread_id="chat")
    assert paused.status == "paused" and checkpoint_rows(path, "chat")[0] > 1
    done = orch.resume("chat", True)
    assert done.status == "ok", done.answer
    assert checkpoint_rows(path, "chat") == (1, 0)
