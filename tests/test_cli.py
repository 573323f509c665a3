"""The ``orchestrator`` command, run as a user would: a real process, real files."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import INCIDENT_REQUEST


def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args], input=stdin, text=True,
        capture_output=True, env={**os.environ, "COLUMNS": "200", **(env or {})}, timeout=120,
    )


def test_run_json_does_the_incident_and_reports_usage(orchestrator_home: Path) -> None:
    proc = cli("run", INCIDENT_REQUEST, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) >= {"answer", "plan", "results", "usage", "elapsed_s", "thread_id"}
    assert set(out["usage"]) >= {"llm_calls", "input_tokens", "output_tokens"}
    assert out["usage"]["llm_calls"] == 11
    assert len(out["plan"]["subtasks"]) == 4
    assert all(r["status"] == "done" for r in out["results"].values())
    db = sqlite3.connect(orchestrator_home / "domain.sqlite")
    assert db.execute("SELECT pool FROM routes WHERE service='web-3'").fetchone()[0] != \
        "web-primary"
    assert (orchestrator_home / "checkpoints.sqlite").exists()


def test_run_shows_plan_progress_and_answer_and_says_which_model() -> None:
    proc = cli("run", INCIDENT_REQUEST)
    assert proc.returncode == 0, proc.stderr
    assert "offline 'fake' model" in proc.stderr
    for text in ("diagnostics", "traffic", "notifications", "incident_log", "done",
                 "Completed 4 of 4", "11 LLM calls"):
        assert text in proc.stdout


def test_follow_up_in_a_thread_sees_the_earlier_turn(orchestrator_home: Path) -> None:
    assert cli("run", "web-3 is down: find the root cause", "--thread", "t1").returncode == 0
    proc = cli("run", "now log the incident", "--thread", "t1", "--json")
    out = json.loads(proc.stdout)
    assert out["results"]["t1"]["agent"] == "incident_log"
    db = sqlite3.connect(orchestrator_home / "domain.sqlite")
    assert db.execute("SELECT service FROM incidents").fetchall() == [("web-3",)]


@pytest.mark.parametrize(("args", "env", "message"), [
    (("run", ""), {}, "the request is empty"),
    (("run", "x" * 50), {"ORCHESTRATOR_MAX_REQUEST_CHARS": "10"}, "the limit is 10"),
    (("run", "hi", "--model", "gpt-9"), {}, "unknown model spec 'gpt-9'"),
    (("run", "hi", "--model", "openai:gpt-4o-mini"), {}, "needs OPENAI_API_KEY"),
    (("run", "hi", "--agents-dir", "/no/such/dir"), {}, "does not exist or is not a folder"),
    (("agents",), {"ORCHESTRATOR_AGENTS_DIR": "/no/such/dir"}, "does not exist"),
    (("run", "hi"), {"ORCHESTRATOR_MAX_REQUEST_CHARS": "lots"},
     "invalid settings: ORCHESTRATOR_MAX_REQUEST_CHARS: Input should be a valid integer"),
    (("run", "hi"), {"ORCHESTRATOR_HOME": "/proc/no-such-dir"}, "cannot use the data folder"),
    # the message is text, not rich markup: brackets show as written
    (("event", "[x]"), {}, "event name '[x]' must be snake_case"),
])
def test_user_errors_are_one_line_with_a_non_zero_exit(
    args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    proc = cli(*args, env=env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0]


def test_bad_agent_card_names_the_file(tmp_path: Path) -> None:
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "oops.yaml").write_text("name: oops\n")
    proc = cli("agents", "--agents-dir", str(cards))
    assert proc.returncode == 2 and "oops.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_agents_table_and_json() -> None:
    proc = cli("agents", "--json")
    names = [a["name"] for a in json.loads(proc.stdout)]
    it_ops = names.index("monitoring")  # packs by name (orchestrator.packs), agents in order
    assert names[it_ops:it_ops + 5] == ["monitoring", "diagnostics", "traffic", "notifications",
                                        "incident_log"]
    assert "reroute_traffic" in cli("agents").stdout


def test_demo_reset_restores_the_seed(orchestrator_home: Path) -> None:
    cli("run", INCIDENT_REQUEST, "--json")
    assert cli("demo", "reset").returncode == 0
    db = sqlite3.connect(orchestrator_home / "domain.sqlite")
    assert db.execute("SELECT pool FROM routes WHERE service='web-3'").fetchone()[0] == \
        "web-primary"
    assert db.execute("SELECT count(*) FROM incidents").fetchone()[0] == 0


def test_chat_repl_commands_and_a_conversation(orchestrator_home: Path) -> None:
    script = "/help\n/agents\nweb-3 is down: find the root cause\nnow log the incident\n" \
             "/bogus\n/new\n/quit\n"
    proc = cli("chat", stdin=script)
    assert proc.returncode == 0, proc.stderr
    assert "/new: start a new conversation" in proc.stdout
    assert "incident_log" in proc.stdout  # the /agents table
    assert "disk full" in proc.stdout
    assert "Logged incident #1" in proc.stdout
    assert "unknown command /bogus" in proc.stdout
    assert "new thread" in proc.stdout
    db = sqlite3.connect(orchestrator_home / "domain.sqlite")
    assert db.execute("SELECT service FROM incidents").fetchall() == [("web-3",)]


def test_ingest_kb_list_and_search(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "backup.md").write_text("# Backups\n\nBackups run nightly at 02:00 UTC.\n")
    (docs / "broken.pdf").write_bytes(b"not a pdf at all")
    proc = cli("ingest", str(docs), str(tmp_path / "nope.md"), "--collection", "handbook")
    assert proc.returncode == 1  # something failed, and the rest went in
    assert "does not exist" in proc.stdout and "broken.pdf" in proc.stdout
    assert "1 chunks added" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr

    again = json.loads(cli("ingest", str(docs / "backup.md"), "-c", "handbook", "--json").stdout)
    assert again["chunks_added"] == 0 and again["skipped"] == 1

    listed = json.loads(cli("kb", "list", "--json").stdout)
    handbook = next(c for c in listed if c["name"] == "handbook")
    assert (handbook["chunks"], handbook["sources"]) == (1, 1)

    hits = json.loads(cli("kb", "search", "when do backups run", "-c", "handbook", "-k", "3",
                          "--json").stdout)
    assert hits[0]["source"] == "backup.md" and hits[0]["chunk"] == 0
    assert "02:00 UTC" in hits[0]["text"] and hits[0]["score"] > 0
    bad = cli("kb", "search", "x", "-c", "nothing-here")
    assert bad.returncode == 2 and "no collection named 'nothing-here'" in bad.stderr


def test_an_answer_that_goes_on_after_a_list_is_printed_on_its_own_line() -> None:
    from rich.console import Console

    from orchestrator.cli.view import print_answer
    from orchestrator.results import RunResult, Usage

    answer = ("Completed 1 of 2 subtasks.\n- monitoring: web-2 is up; p50 latency 91 ms.\n"
              "Not done:\n- traffic (cancelled): approval denied\n  (the route stays)")
    console = Console(record=True, width=100, color_system=None)
    print_answer(console, RunResult(run_id="r", thread_id="t", request="q", answer=answer,
                                    status="partial", plan=None, results={}, usage=Usage(),
                                    elapsed_s=0.1))
    lines = [line.strip(" │╭╮╰╯─") for line in console.export_text().splitlines()]
    assert "Not done:" in lines  # not "... 91 ms. Not done:"
    assert any(line.endswith("91 ms.") for line in lines)
