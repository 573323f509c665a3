"""Plans from servers that do structured output differently: function calling, a
JSON-schema response_format, JSON mode, and a server that ignores forced function calling
(``auto`` falls back to the JSON schema)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.config import Settings
from tests.support.openai_server import OpenAICompatServer, use_server

INCIDENT = ("web-3 is down: find the root cause, reroute its traffic to a backup, "
            "alert the on-call team and log the incident")


def serve(monkeypatch: pytest.MonkeyPatch, **options: Any) -> OpenAICompatServer:
    return use_server(OpenAICompatServer(**options).start(), monkeypatch)


@pytest.fixture
def stop() -> Iterator[list[OpenAICompatServer]]:
    servers: list[OpenAICompatServer] = []
    yield servers
    for server in servers:
        server.stop()


def run(model: Any, folder: Path) -> tuple[Any, Path]:
    """The incident request with ``model`` (a spec or a model) in ``folder``."""
    db = folder / "domain.sqlite"
    result = Orchestrator(model, agents=it_ops_agents(), domain_db=db,
                          settings=Settings(home=folder / "home", knowledge=False)
                          ).run(INCIDENT)
    return result, db


def planning(server: OpenAICompatServer) -> list[dict[str, Any]]:
    return [b for b in server.requests if str(b["messages"][0]["content"]).startswith(
        "You are the supervisor of a team")]


def assert_incident_handled(result: Any, db: Path) -> None:
    assert result.ok, result.error
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT pool FROM routes WHERE service = 'web-3'").fetchone()[0] \
            != "web-primary"
        assert conn.execute("SELECT count(*) FROM incidents").fetchone()[0] == 1


@pytest.mark.parametrize("method", ["json_schema", "json"])
def test_a_plan_through_response_format(method: str, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path,
                                        stop: list[OpenAICompatServer]) -> None:
    server = serve(monkeypatch)
    stop.append(server)
    result, db = run(f"openai:fake-rules,structured={method}", tmp_path)
    assert_incident_handled(result, db)
    (body,) = planning(server)
    assert "tools" not in body and "tool_choice" not in body
    kind = body["response_format"]["type"]
    assert kind == ("json_schema" if method == "json_schema" else "json_object")
    if method == "json":  # the schema travels in the prompt
        assert "follows this JSON schema" in body["messages"][-1]["content"]


def test_auto_falls_back_to_the_json_schema_when_forced_calls_are_ignored(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        stop: list[OpenAICompatServer]) -> None:
    """Seen with llama.cpp: a named tool_choice is ignored without an error, and no plan
    came back."""
    server = serve(monkeypatch, ignores_forced_tools=True)
    stop.append(server)
    result, db = run("openai:fake-rules", tmp_path)
    assert_incident_handled(result, db)
    first, second = planning(server)
    assert first["tool_choice"]["function"]["name"] == "Plan"
    assert second["response_format"]["type"] == "json_schema" and "tools" not in second
    invalid = [e for e in result.events if e.type == "plan_invalid"]
    assert len(invalid) == 1 and "no Plan tool call" in invalid[0].data["error"]


def test_tools_stays_with_function_calling(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           stop: list[OpenAICompatServer]) -> None:
    server = serve(monkeypatch, ignores_forced_tools=True)
    stop.append(server)
    result, _ = run("openai:fake-rules,structured=tools", tmp_path)
    assert not result.ok and "did not produce a valid plan" in (result.error or "")
    assert all("response_format" not in b for b in planning(server))


def test_one_reply_without_a_plan_does_not_change_how_later_runs_ask(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        stop: list[OpenAICompatServer]) -> None:
    """Found in review: one prose reply switched the orchestrator to JSON schema for every
    later run and thread."""
    server = serve(monkeypatch, ignores_forced_tools=1)
    stop.append(server)
    orch = Orchestrator("openai:fake-rules", agents=it_ops_agents(),
                        domain_db=tmp_path / "domain.sqlite",
                        settings=Settings(home=tmp_path / "home", knowledge=False))
    assert orch.run("check the health of web-1").ok
    assert orch.run("check the health of web-2").ok
    first, fallback, later = planning(server)
    assert "tool_choice" in first and "response_format" in fallback
    assert "tool_choice" in later and "response_format" not in later


def test_a_run_recorded_against_a_llamacpp_like_server_replays_offline(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        stop: list[OpenAICompatServer]) -> None:
    """Found in review: text-call ids were random (no replay), and the recorder dropped
    response_format and the model's settings."""
    from orchestrator.models import get_model
    from orchestrator.models.cassette import RecordingChatModel

    server = serve(monkeypatch, tool_calls_as_text="fenced")
    stop.append(server)
    cassette = tmp_path / "run.jsonl"
    recorder = RecordingChatModel(
        inner=get_model("openai:fake-rules,structured=json_schema,slots=1"), path=cassette)
    assert recorder.metadata is not None
    assert recorder.metadata["orchestrator_structured"] == "json_schema"
    recorded, db = run(recorder, tmp_path / "first")
    assert_incident_handled(recorded, db)
    assert any(b.get("response_format") for b in planning(server))
    server.stop()  # offline from here

    replayed, db2 = run(f"replay:{cassette}", tmp_path / "second")
    assert_incident_handled(replayed, db2)
    assert sorted(e.data["tool"] for e in replayed.events if e.type == "tool_called") == \
        sorted(e.data["tool"] for e in recorded.events if e.type == "tool_called")



def test_a_json_schema_admits_only_the_agents_shown_each_for_what_it_can_do(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        stop: list[OpenAICompatServer]) -> None:
    """Seen with a 1.5B model under llama.cpp, which enforces the schema as a grammar: an
    agent named 'logs', reads planned as 'act', the same plan again after each repair."""
    import jsonschema

    server = serve(monkeypatch)
    stop.append(server)
    result, db = run("openai:fake-rules,structured=json_schema", tmp_path)
    assert_incident_handled(result, db)
    (body,) = planning(server)
    schema = body["response_format"]["json_schema"]["schema"]

    def plan(*subtasks: dict[str, Any]) -> dict[str, Any]:
        return {"subtasks": [{"id": f"t{i}", "goal": "g", **s} for i, s in enumerate(subtasks)]}

    valid = plan({"agent": "traffic", "kind": "act"}, {"agent": "monitoring", "kind": "answer"},
                 {"agent": "traffic", "kind": "answer", "alternatives": ["monitoring"]})
    jsonschema.validate(valid, schema)
    for wrong in (plan({"agent": "logs", "kind": "answer"}),          # no such agent
                  plan({"agent": "monitoring", "kind": "act"}),       # it only reads
                  plan({"agent": "traffic", "kind": "act", "alternatives": ["pager"]}),
                  plan({"agent": "traffic", "kind": "act", "goal": "x" * 401}),
                  plan(*[{"agent": "traffic", "kind": "act"}] * 21)):  # over max_subtasks
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)


def test_agents_of_a_json_schema_model_act_in_schema_constrained_json(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        stop: list[OpenAICompatServer]) -> None:
    """A server that enforces a schema but parses no tool calls (llama.cpp): each step of an
    agent is one JSON action over its own tools; the first must be a call."""
    server = serve(monkeypatch)
    stop.append(server)
    result, db = run("openai:fake-rules,structured=json_schema", tmp_path)
    assert_incident_handled(result, db)
    steps = [b for b in server.requests if "tools" not in b and not str(
        b["messages"][0]["content"]).startswith(("You are the supervisor", "You write"))]
    assert steps and all(b["response_format"]["json_schema"]["name"] == "Action" for b in steps)

    def offered(body: dict[str, Any]) -> tuple[set[str], bool]:
        schema = body["response_format"]["json_schema"]["schema"]
        variants = schema.get("anyOf", [schema])
        return ({v["properties"]["tool"]["enum"][0] for v in variants if "tool" in
                 v["properties"]}, any("report" in v["properties"] for v in variants))

    pager = next(b for b in steps if "You are notifications" in b["messages"][0]["content"])
    tools, report = offered(pager)
    assert tools == {"alert_oncall"} and not report  # its own tool; a call comes first
    later = [b for b in steps if any(m["role"] == "tool" for m in b["messages"])]
    assert later and all(offered(b)[1] for b in later)  # after a call, it may report


def test_a_json_action_naming_a_tool_the_agent_lacks_is_refused(tmp_path: Path) -> None:
    from langchain_core.messages import AIMessage

    from orchestrator.models import FakeChatModel

    plan = {"subtasks": [{"id": "t1", "goal": "Page the on-call for web-3: disk full",
                          "agent": "notifications", "kind": "act"}]}
    model = FakeChatModel(script=[
        AIMessage(content=__import__("json").dumps(plan)),
        AIMessage(content='{"tool": "reroute_traffic", "arguments": {"service": "web-3"}}'),
        AIMessage(content='{"tool": "alert_oncall", "arguments": {"service": "web-3", '
                          '"message": "disk full"}}'),
        AIMessage(content='{"report": "Paged the web-3 on-call."}'),
        "Paged the web-3 on-call about the full disk.",
    ], metadata={"orchestrator_structured": "json_schema"})
    result, db = Orchestrator(model, agents=it_ops_agents(), domain_db=tmp_path / "d.sqlite",
                              settings=Settings(home=tmp_path / "home", knowledge=False)
                              ).run("page the web-3 on-call: disk full"), tmp_path / "d.sqlite"
    (subtask,) = result.results.values()
    assert [(c.name, c.status) for c in subtask.tool_calls] == [
        ("reroute_traffic", "refused"), ("alert_oncall", "ok")]
    assert subtask.status == "done" and subtask.output == "Paged the web-3 on-call."
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT pool FROM routes WHERE service = 'web-3'").fetchone()[0] \
            == "web-primary"
        assert conn.execute("SELECT count(*) FROM alerts").fetchone()[0] == 1


def test_a_plan_cut_off_at_max_tokens_is_asked_again_and_every_call_counted(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        stop: list[OpenAICompatServer]) -> None:
    """Seen with llama.cpp: a JSON-schema plan cut at max_tokens made the openai client raise
    LengthFinishReasonError, the run failed as a broken model and the call was not counted."""
    server = serve(monkeypatch)
    stop.append(server)
    result, _ = run("openai:fake-rules,structured=json_schema,max_tokens=6", tmp_path)
    assert result.status == "failed"
    assert "cut off at the model's token limit (max_tokens)" in (result.error or "")
    planned = planning(server)
    assert len(planned) == 3  # the first ask and two repairs (max_plan_repairs)
    assert result.usage.llm_calls == 3 and result.usage.output_tokens == 3 * 6


def test_a_dependency_written_as_an_agent_name_means_that_agents_subtask() -> None:
    """Seen with a 1.5B model: ``"depends_on": ["monitoring"]``, repeated after each repair."""
    from orchestrator.errors import PlanError
    from orchestrator.nodes.planner import validate_plan

    plan = validate_plan({"subtasks": [
        {"id": "health", "goal": "Check web-3", "agent": "monitoring", "kind": "answer"},
        {"id": "page", "goal": "Page web-3's on-call with the health", "agent": "notifications",
         "kind": "act", "depends_on": ["monitoring", "page"]}]})
    assert plan.subtasks[1].depends_on == ["health"]  # the name mapped, the self-loop gone
    alone = validate_plan({"subtasks": [  # an agent with no subtask: nothing to wait for
        {"id": "a", "goal": "g", "agent": "monitoring", "kind": "answer",
         "depends_on": ["traffic"]}]}, agents=["monitoring", "traffic"])
    assert alone.subtasks[0].depends_on == []
    with pytest.raises(PlanError, match="depends on unknown subtask 't2'"):  # a wrong id
        validate_plan({"subtasks": [
            {"id": "a", "goal": "g", "agent": "monitoring", "kind": "answer",
             "depends_on": ["t2"]}]}, agents=["monitoring", "traffic"])
