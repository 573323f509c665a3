"""Dataset validation and the built-in scorers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestrator.domain_db import reset_domain_db
from orchestrator.evals.run_record import CaseRun
from orchestrator.evals.schema import DatasetError, EvalCase, load_cases
from orchestrator.evals.scorers import all_scorers, score_run, scorer
from orchestrator.results import RunResult, SubtaskResult, ToolCallRecord, Usage

SMOKE = Path(__file__).parents[1] / "fixtures" / "evals" / "smoke.yaml"


def test_loads_yaml_and_jsonl(tmp_path: Path) -> None:
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text('{"id": "a1", "input": "check web-1", "expect": {"agents": ["monitoring"]}}\n'
                     "\n// a comment line\n")
    cases = load_cases([SMOKE, jsonl])
    assert [c.id for c in cases][-1] == "a1" and len(cases) == 6
    assert cases[3].turns == ["web-4 is degraded: find the root cause", "now log the incident"]


@pytest.mark.parametrize(("text", "message"), [
    ('{"id": "x", "input": "hi"}\n{"id": "y", "input": ', r"bad.jsonl:2: invalid JSON"),
    ('{"id": "x", "input": ""}', r"bad.jsonl:1 \(case 'x'\): case: Value error, a case needs"),
    ('{"id": "x", "input": "a", "expect": {"agentz": []}}', r"expect.agentz: Extra inputs"),
    ('{"id": "x", "input": "a", "expect": {"state": [{"sql": "DELETE FROM alerts"}]}}',
     "state checks must be SELECT"),
    ('{"id": "x", "input": "a"}\n{"id": "x", "input": "b"}', "duplicate case id 'x'"),
    ('{"id": "x", "input": "a", "expect": {"max_llm_calls": -1}}', "max_llm_calls"),
])
def test_invalid_datasets_name_file_line_and_field(tmp_path: Path, text: str,
                                                   message: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(text)
    with pytest.raises(DatasetError, match=message):
        load_cases([bad])


def test_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such dataset"):
        load_cases([tmp_path / "nope.yaml"])


def fake_run(tmp_path: Path, *, answer: str = "done [runbook.md#2]",
             calls: list[ToolCallRecord] | None = None, agents: list[str] | None = None,
             usage: Usage | None = None) -> CaseRun:
    db = reset_domain_db(tmp_path / "case.sqlite")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE routes SET pool = 'web-backup-a' WHERE service = 'web-3'")
    results = {f"t{i}": SubtaskResult(id=f"t{i}", goal="g", agent=a, status="done",
                                      tool_calls=(calls or []) if i == 1 else [])
               for i, a in enumerate(agents or ["traffic"], start=1)}
    turn = RunResult(run_id="r", thread_id="t", request="q", answer=answer, status="ok",
                     plan=None, results=results,
                     usage=usage or Usage(4, 1000, 100), elapsed_s=0.1)
    return CaseRun(case_id="c", repeat=1, db_path=db, turns=[turn])


def case(**expect: object) -> EvalCase:
    return EvalCase.model_validate({"id": "c", "input": "x", "expect": expect})


def test_scorers_pass_when_expectations_hold(tmp_path: Path) -> None:
    args = {"service": "web-3", "backup_pool": "web-backup-a"}
    run = fake_run(tmp_path, calls=[ToolCallRecord("reroute_traffic", args, "ok")])
    scores = {s.name: s for s in score_run(case(
        agents=["traffic"],
        tool_calls=[{"name": "reroute_traffic", "args": {"service": "web-3"}}],
        state=[{"sql": "SELECT pool FROM routes WHERE service='web-3'", "equals": "web-backup-a"},
               {"sql": "SELECT * FROM alerts", "count": 0}],
        answer_includes=["DONE"], answer_excludes=["error"], citations=["runbook.md"],
        status="ok", max_llm_calls=4, max_tokens=1100,
    ), run, all_scorers())}
    assert set(scores) == {"state", "routing", "tool_calls", "plan", "answer", "citations",
                           "status", "budget"}
    assert all(s.passed for s in scores.values()), scores
    assert scores["tool_calls"].value == 1.0


def test_scorers_fail_with_reasons(tmp_path: Path) -> None:
    run = fake_run(tmp_path, answer="error: nothing", agents=["traffic", "monitoring"],
                   calls=[ToolCallRecord("show_route", {"service": "web-3"}, "ok")],
                   usage=Usage(9, 5000, 500))
    scores = {s.name: s for s in score_run(case(
        agents=["traffic"],
        tool_calls=[{"name": "reroute_traffic", "args": {"service": "web-3"}}],
        state=[{"sql": "SELECT pool FROM routes WHERE service='web-3'", "equals": "web-primary"}],
        answer_includes=["done"], answer_excludes=["error"], citations=["runbook.md"],
        max_llm_calls=4,
    ), run, all_scorers())}
    assert not any(s.passed for n, s in scores.items() if n != "plan")
    assert "got 'web-backup-a', expected 'web-primary'" in scores["state"].detail
    assert scores["routing"].value == pytest.approx(2 / 3)
    assert "missing: reroute_traffic({'service': 'web-3'})" in scores["tool_calls"].detail
    assert scores["tool_calls"].value == 0.0
    assert "llm_calls 9 > 4" in scores["budget"].detail


def test_custom_scorer_registration_and_errors_in_scorers(tmp_path: Path) -> None:
    @scorer("always_fails_loudly")
    def broken(case: EvalCase, run: CaseRun) -> None:
        raise RuntimeError("boom")

    try:
        scores = score_run(case(), fake_run(tmp_path), all_scorers())
        (bad,) = [s for s in scores if s.name == "always_fails_loudly"]
        assert not bad.passed and "RuntimeError: boom" in bad.detail
    finally:
        from orchestrator.evals import scorers as module

        module._REGISTRY.pop("always_fails_loudly")


def test_scorers_from_the_entry_point_group(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    site = tmp_path / "site"
    (site / "polite_scorer-1.0.dist-info").mkdir(parents=True)
    (site / "polite_scorer-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: polite-scorer\nVersion: 1.0\n")
    (site / "polite_scorer-1.0.dist-info" / "entry_points.txt").write_text(
        "[orchestrator.scorers]\npolite = polite_scorer:polite\n")
    (site / "polite_scorer.py").write_text(
        "from orchestrator.evals.scorers import Score\n\n"
        "def polite(case, run):\n"
        "    return Score('polite', 'please' in run.answer.lower(), 1.0)\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    scorers = all_scorers()
    assert "polite" in scorers
    (polite,) = [s for s in score_run(case(), fake_run(tmp_path, answer="Please wait"), scorers)
                 if s.name == "polite"]
    assert polite.passed


def test_a_dataset_can_include_the_cases_domain_packs_ship(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("packs: [commerce, marketing]\n")
    cases = load_cases([suite])
    assert cases and {c.domain for c in cases} == {"commerce", "marketing"}
    suite.write_text("packs: [commerce, no_such_pack]\n")
    with pytest.raises(DatasetError, match=r"suite.yaml: .*no_such_pack"):
        load_cases([suite])
    suite.write_text("packs: commerce\n")
    with pytest.raises(DatasetError, match="'packs' must be a list of domain pack names"):
        load_cases([suite])
