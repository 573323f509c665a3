"""The service API the CLI (and the coming server) stand on: set-up from settings, run
records and traces, knowledge, eval suites, and the public names in one place."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import orchestrator
from orchestrator import Orchestrator, RequestError, RunRecords, Trace
from orchestrator.config import load_settings
from orchestrator.evals import run_suite
from orchestrator.knowledge import KnowledgeBase
from tests.conftest import INCIDENT_REQUEST

SMOKE = Path(__file__).parent / "fixtures" / "evals" / "smoke.yaml"


def test_every_public_name_resolves_from_the_root_package() -> None:
    for name in orchestrator.__all__:
        assert getattr(orchestrator, name) is not None, name
    with pytest.raises(AttributeError):
        orchestrator.compile_graph  # noqa: B018  (a trap: it dropped knowledge and playbooks)


def test_from_settings_runs_in_the_data_folder_and_records_answer_queries(
        orchestrator_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_KNOWLEDGE", "0")
    orch = Orchestrator.from_settings()
    assert not orch.has_thread("t-1")
    result = orch.run(INCIDENT_REQUEST, thread_id="t-1")
    assert result.status == "ok" and orch.has_thread("t-1")
    # the business database, the checkpoints and the run store live in ORCHESTRATOR_HOME
    with sqlite3.connect(orchestrator_home / "domain.sqlite") as db:
        assert db.execute("SELECT pool FROM routes WHERE service = 'web-3'").fetchone()[0] != \
            "web-primary"
    assert (orchestrator_home / "checkpoints.sqlite").exists()

    # another process's view of the same records (no model, no agents needed)
    records = RunRecords.from_settings(load_settings())
    (summary,) = records.runs()
    assert summary.run_id == result.run_id and summary.status == "ok"
    trace = records.trace(result.run_id[:10])  # a unique prefix works
    assert isinstance(trace, Trace) and trace.run["run_id"] == result.run_id
    assert {s.id for s in trace.subtasks} == set(result.results)
    assert all(s.status == "done" and s.finished_at for s in trace.subtasks)
    assert records.events(result.run_id)[0].type == "run_started"
    assert {s.agent for s in records.agent_stats()} == {r.agent for r in result.results.values()}
    assert orch.records.runs()[0].run_id == result.run_id
    with pytest.raises(RequestError):
        records.trace("no-such-run")


def test_knowledge_base_ingests_searches_and_refuses_a_bad_mode(tmp_path: Path) -> None:
    doc = tmp_path / "handbook.md"
    doc.write_text("# Parking\n\nVisitors park in lot C behind the blue building.\n")
    kb = KnowledgeBase.from_settings()
    report = kb.ingest([doc], "handbook")
    assert report.chunks_added >= 1
    (hit, *_) = kb.search("where do visitors park", ["handbook"], k=1)
    assert "lot C" in hit.text and hit.collection == "handbook"
    assert [c.name for c in kb.collections()] == ["handbook"]
    with pytest.raises(RequestError, match="use hybrid, dense, bm25"):
        kb.search("parking", mode="fuzzy")
    assert kb.delete("handbook").chunks == report.chunks_added
    assert kb.collections() == []


def test_run_suite_runs_cases_writes_the_report_and_gates(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_KNOWLEDGE", "0")
    seen: list[str] = []
    result = run_suite([SMOKE], out=tmp_path / "out",
                       on_record=lambda record: seen.append(record.case_id))
    assert result.summary["cases"] == len(result.cases) == len(seen) > 0
    assert result.paths["report"].exists() and result.paths["summary"].exists()
    assert result.ok  # no baseline: nothing to gate on
    with pytest.raises(orchestrator.ConfigError, match="no case has the tag"):
        run_suite([SMOKE], tags=["no-such-tag"], out=tmp_path / "none")


def test_a_thread_that_does_not_exist_says_it_starts_a_new_conversation(
        orchestrator_home: Path) -> None:
    env = {**os.environ, "ORCHESTRATOR_KNOWLEDGE": "0", "COLUMNS": "200"}

    def run(thread: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrator.cli", "run",
                               "check the health of web-2", "--thread", thread],
                              capture_output=True, text=True, env=env, timeout=120)

    first = run("ops-42")
    assert first.returncode == 0, first.stderr
    assert "No conversation 'ops-42' yet: this starts a new one" in first.stderr
    again = run("ops-42")
    assert again.returncode == 0 and "No conversation" not in again.stderr


def test_bad_input_to_the_service_api_is_one_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in review: these gave a raw traceback, an empty report or every run."""
    monkeypatch.setenv("ORCHESTRATOR_KNOWLEDGE", "0")
    with pytest.raises(orchestrator.ConfigError, match="repeat must be a whole number"):
        run_suite([SMOKE], repeat=0, out=tmp_path / "r0")
    with pytest.raises(orchestrator.ConfigError, match="at least one dataset"):
        run_suite([], out=tmp_path / "none")
    assert not (tmp_path / "r0").exists()

    records = RunRecords.from_settings(load_settings())
    with pytest.raises(RequestError, match="at least 1"):
        records.runs(-1)

    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(a_file))
    with pytest.raises(orchestrator.ConfigError, match="cannot use the data folder"):
        KnowledgeBase.from_settings()


def test_an_orchestrator_used_after_close_says_so(orchestrator_home: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_KNOWLEDGE", "0")
    with Orchestrator.from_settings() as orch:
        assert orch.run("check the health of web-2").ok
    with pytest.raises(RequestError, match="this Orchestrator is closed"):
        orch.run("check the health of web-2")
    with pytest.raises(RequestError, match="this Orchestrator is closed"):
        orch.records.runs()
