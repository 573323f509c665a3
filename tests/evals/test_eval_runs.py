"""`orchestrator eval` end to end: isolation, reports, record/replay, the regression gate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from orchestrator.evals.schema import load_cases

SMOKE = Path(__file__).parents[1] / "fixtures" / "evals" / "smoke.yaml"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], text=True,
                          capture_output=True, env={**os.environ, "COLUMNS": "160", **(env or {})},
                          timeout=300)


def test_eval_writes_results_summary_and_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = cli("eval", str(SMOKE), "--out", str(out), "--repeat", "2", "--concurrency", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pass@1" in proc.stdout and "100.0%" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["cases"], summary["runs"], summary["repeat"]) == (5, 10, 2)
    assert summary["pass_at_1"] == 1.0 and summary["pass_hat_k"] == 1.0
    assert summary["per_case"]["smoke-health"] == {"runs": 2, "passes": 2, "pass_at_1": 1.0,
                                                   "pass_hat_k": True}
    assert summary["routing"]["precision"] == 1.0
    assert summary["scorers"]["state"]["applied"] == 8
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 10
    incident = next(x for x in lines if x["case_id"] == "smoke-incident")
    assert incident["trace"][0]["plan"]["subtasks"] and incident["trace"][0]["events"]
    assert incident["llm_calls"] == 11 and incident["input_tokens"] > 0
    html = (out / "report.html").read_text()
    assert "Routing confusion matrix" in html and "<svg" in html and "pass@1" in html
    # every run had its own database: the incident was logged once in each copy
    copies = sorted((out / "work" / "cases").glob("smoke-incident.*.sqlite"))
    assert len(copies) == 2


def test_record_then_replay_offline_and_a_miss_fails_loudly(tmp_path: Path) -> None:
    cassette = tmp_path / "cassette.jsonl"
    first = cli("eval", str(SMOKE), "--out", str(tmp_path / "rec"), "--record", str(cassette))
    assert first.returncode == 0, first.stderr
    recorded = cassette.read_text().splitlines()
    assert len(recorded) >= 18
    replay = cli("eval", str(SMOKE), "--out", str(tmp_path / "replay"),
                 "--model", f"replay:{cassette}")
    assert replay.returncode == 0, replay.stderr
    before = json.loads((tmp_path / "rec" / "summary.json").read_text())
    after = json.loads((tmp_path / "replay" / "summary.json").read_text())
    assert after["pass_at_1"] == before["pass_at_1"] == 1.0
    assert after["tokens"] == before["tokens"]

    changed = tmp_path / "changed.yaml"
    changed.write_text(SMOKE.read_text().replace("check the health of api-2",
                                                 "check the health of api-1"))
    miss = cli("eval", str(changed), "--out", str(tmp_path / "miss"),
               "--model", f"replay:{cassette}")
    results = [json.loads(x) for x in (tmp_path / "miss" / "results.jsonl").read_text()
               .splitlines()]
    health = next(r for r in results if r["case_id"] == "smoke-health")
    # the supervisor's model failed: the run failed with that reason (not a crash)
    assert not health["passed"] and health["status"] == "failed"
    assert "request not in cassette" in health["trace"][-1]["error"]
    assert miss.returncode == 0  # the eval itself ran; the case failed


def test_gate_fails_on_a_planted_routing_regression(tmp_path: Path) -> None:
    base = cli("eval", str(SMOKE), "--out", str(tmp_path / "base"))
    assert base.returncode == 0
    baseline = tmp_path / "base" / "summary.json"
    same = cli("eval", str(SMOKE), "--out", str(tmp_path / "same"), "--baseline", str(baseline))
    assert same.returncode == 0 and "gate passed" in same.stdout

    # The regression: a new agent card whose skills steal the traffic clauses from `traffic`
    # (it can change things, so the planner may give it the failover, which it does wrong).
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "router.yaml").write_text(
        "name: reroute_traffic_backup\ndescription: Reroutes traffic to backup pools.\n"
        "skills: [reroute traffic, reroute, traffic backup]\n"
        "tools: [orchestrator.agents.it_ops.tools:log_incident]\n")
    worse = cli("eval", str(SMOKE), "--out", str(tmp_path / "worse"), "--baseline",
                str(baseline), env={"ORCHESTRATOR_AGENTS_DIR": str(cards)})
    assert worse.returncode == 1, worse.stdout
    assert "gate failed" in worse.stdout and "pass@1 dropped" in worse.stdout
    summary = json.loads((tmp_path / "worse" / "summary.json").read_text())
    assert summary["baseline"]["ok"] is False
    newly = summary["baseline"]["newly_failing"]
    assert newly and f"newly failing: {', '.join(newly)}" in worse.stdout
    results = [json.loads(x) for x in (tmp_path / "worse" / "results.jsonl").read_text()
               .splitlines()]
    assert any("reroute_traffic_backup" in r["agents_used"] for r in results)  # the decoy


def test_bad_dataset_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    proc = cli("eval", str(bad), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "bad.jsonl:1 (case 'x')" in proc.stderr
    assert "a case needs an input (a request or a list of requests), an event, or both" \
        in proc.stderr
    assert "Traceback" not in proc.stderr
    assert load_cases([SMOKE])  # the fixture itself is valid
