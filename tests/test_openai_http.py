"""A whole run through the real openai client path, over HTTP to a local compatible server.

``get_model("openai:<model>")`` builds ``langchain_openai.ChatOpenAI``; the server answers
with the rules-mode fake model's decisions, so planning (structured output via a forced
tool call), specialist tool calls and synthesis all cross a real HTTP boundary.
"""

from __future__ import annotations

import json
import re
import sqlite3
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator

import openai
import pytest

from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.api import Orchestrator
from orchestrator.errors import ConfigError
from orchestrator.models import get_model
from orchestrator.plan import Plan

try:  # tests/ on sys.path (pytest's rootdir-less layout: no tests/__init__.py)
    from support.openai_server import OpenAICompatServer
except ImportError:  # tests is a package, or the repo root is on sys.path
    from tests.support.openai_server import OpenAICompatServer

INCIDENT = ("web-3 is down: find the root cause, reroute its traffic to a backup, "
            "alert the on-call team and log the incident")
_SPECIALIST = re.compile(r"^You are ([a-z][a-z0-9_]*), a specialist agent")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer(api_key="sk-local-test") as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", srv.api_key)
        # Hermetic: no user settings, cards or proxies between the client and 127.0.0.1.
        monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "home"))
        monkeypatch.delenv("ORCHESTRATOR_AGENTS_DIR", raising=False)
        monkeypatch.delenv("ORCHESTRATOR_MODEL", raising=False)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                     "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        yield srv


def _tool_names(body: dict) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools") or []]


def _system_text(body: dict) -> str:
    return next((m["content"] for m in body["messages"] if m["role"] == "system"), "")


def test_incident_run_over_http(server: OpenAICompatServer, tmp_path) -> None:
    db = tmp_path / "domain.sqlite"

    result = Orchestrator(model="openai:fake-rules", domain_db=db).run(INCIDENT)

    assert result.ok, result.error
    assert result.plan is not None
    agents_used = [s.agent for s in result.plan.subtasks]
    assert len(agents_used) >= 4
    assert {"diagnostics", "traffic", "notifications", "incident_log"} <= set(agents_used)
    assert all(r.status == "done" for r in result.results.values()), result.results
    assert "disk full" in result.answer

    # The tools wrote to the domain database the run was given.
    with sqlite3.connect(db) as conn:
        route = conn.execute("SELECT pool FROM routes WHERE service = 'web-3'").fetchone()
        alerts = conn.execute("SELECT COUNT(*) FROM alerts WHERE service = 'web-3'").fetchone()
        incidents = conn.execute(
            "SELECT COUNT(*) FROM incidents WHERE service = 'web-3'").fetchone()
    assert route is not None and route[0] != "web-primary"
    assert alerts[0] >= 1
    assert incidents[0] >= 1

    # Usage came back over HTTP: one model call per request the server saw.
    assert result.usage.llm_calls == 11
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert result.usage.total_tokens > 0
    # The conversation survived the trip: the in-process fake model, seeing the same
    # messages and tools, estimates exactly the same tokens.
    local = Orchestrator(model="fake", domain_db=tmp_path / "local.sqlite").run(INCIDENT)
    assert local.usage == result.usage
    bodies = server.requests
    assert len(bodies) == 11
    assert server.rejected == []
    assert all(b["model"] == "fake-rules" for b in bodies)
    # Nobody listens for the answer's pieces, so nothing is streamed (a run with a listener
    # streams the answer: tests/test_answer_streaming.py).
    assert not any(b.get("stream") for b in bodies)

    # The planner forced its Plan tool: structured output by function calling.
    planner = [b for b in bodies if "Plan" in _tool_names(b)]
    assert len(planner) == 1
    assert _tool_names(planner[0]) == ["Plan"]
    choice = planner[0].get("tool_choice")
    assert choice, "the planner request carried no tool_choice"
    assert choice == {"type": "function", "function": {"name": "Plan"}}

    # Each specialist saw only its own agent's tools.
    specs = {spec.name: spec for spec in it_ops_agents()}
    per_agent: Counter[str] = Counter()
    for body in bodies:
        match = _SPECIALIST.match(_system_text(body))
        if not match:
            continue
        agent = match.group(1)
        per_agent[agent] += 1
        names = set(_tool_names(body))
        assert names, f"{agent} request carried no tools"
        assert names <= set(specs[agent].tool_map), (agent, names)
    # One call to pick a tool, one to report its result, per subtask; the traffic agent
    # looks up the runbook first.
    assert per_agent == Counter({"diagnostics": 2, "traffic": 3, "notifications": 2,
                                 "incident_log": 2})

    # Tool results went back as tool messages answering the assistant's tool calls.
    for body in bodies:
        messages = body["messages"]
        if messages[-1]["role"] != "tool":
            continue
        asked = {c["id"] for m in messages if m["role"] == "assistant"
                 for c in m.get("tool_calls") or []}
        answered = {m["tool_call_id"] for m in messages if m["role"] == "tool"}
        assert answered and answered <= asked

    # And the synthesizer: no tools, the results block in the user message.
    synth = [b for b in bodies if not b.get("tools")]
    assert len(synth) == 1
    assert "<results>" in synth[0]["messages"][-1]["content"]


def test_structured_output_over_http(server: OpenAICompatServer) -> None:
    system = ("Plan the request.\n<agents>\n"
              "- traffic: Reroutes traffic to a backup pool. | skills: reroute traffic\n"
              "</agents>")
    model = get_model("openai:x").with_structured_output(Plan, method="function_calling")

    plan = model.invoke([("system", system), ("user", "<request>\nreroute web-3\n</request>")])

    assert isinstance(plan, Plan)
    assert [s.agent for s in plan.subtasks] == ["traffic"]
    [body] = server.requests
    assert body["model"] == "x"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "Plan"}}


def test_wrong_api_key_is_rejected(server: OpenAICompatServer,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    with pytest.raises(openai.AuthenticationError):
        get_model("openai:x").invoke("hello")
    assert server.requests == []
    assert server.rejected and all(status == 401 for status, _ in server.rejected)


def test_missing_api_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        get_model("openai:x")


# --- the server itself --------------------------------------------------------------------


def _post(server: OpenAICompatServer, payload: bytes, key: str | None = None
          ) -> tuple[int, dict]:
    request = urllib.request.Request(
        server.base_url + "/chat/completions", data=payload, method="POST",
        headers={"Authorization": f"Bearer {key or server.api_key}",
                 "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_server_rejects_bad_requests(server: OpenAICompatServer) -> None:
    status, body = _post(server, b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"

    hello = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    status, body = _post(server, json.dumps({**hello, "stream": True,
                                             "stream_options": "usage"}).encode())
    assert status == 400 and body["error"]["param"] == "stream_options"

    status, body = _post(server, json.dumps(hello).encode(), key="sk-wrong")
    assert status == 401 and body["error"]["code"] == "invalid_api_key"

    status, body = _post(server, json.dumps(hello).encode())
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] == (body["usage"]["prompt_tokens"]
                                             + body["usage"]["completion_tokens"])

    models = urllib.request.Request(server.base_url + "/models",
                                    headers={"Authorization": f"Bearer {server.api_key}"})
    with urllib.request.urlopen(models, timeout=10) as response:
        assert json.loads(response.read())["data"][0]["id"] == "fake-rules"
    assert [s for s, _ in server.rejected] == [400, 400, 401]


def test_openai_embedder_over_http_fills_and_searches_a_collection(
    server: OpenAICompatServer, tmp_path
) -> None:
    from orchestrator.retrieval.ingest import ingest_paths
    from orchestrator.retrieval.search import Retriever
    from orchestrator.retrieval.store import KnowledgeStore

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "pools.md").write_text("# Pools\n\nweb-3 fails over to web-backup-a.\n")
    (kb / "people.md").write_text("# People\n\nDana Okafor is on call for web-platform.\n")
    store = KnowledgeStore(tmp_path / "chroma", embedder="openai:test-embedding")
    assert store.embedder.dimension == 64  # probed from the server
    report = ingest_paths(store, [kb], "docs")
    assert report.ok and report.chunks_added == 2
    (stats,) = store.stats()
    assert (stats.embedder, stats.dimension) == ("openai:test-embedding", 64)
    hits = Retriever(store).search("who is on call for web-platform", ["docs"], k=1,
                                   mode="dense")
    assert hits[0].source == "people.md"
    embedding_calls = [b for b in server.requests if "input" in b]
    assert embedding_calls and all(b["model"] == "test-embedding" for b in embedding_calls)
