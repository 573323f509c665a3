from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, Field

from orchestrator.agents.it_ops.tools import alert_oncall, reroute_traffic, show_route
from orchestrator.errors import ConfigError, ScriptExhaustedError
from orchestrator.models import FakeChatModel, get_model, tool_call
from orchestrator.plan import Plan


class Weather(BaseModel):
    """Weather in a city."""

    city: str = Field(description="City name")
    celsius: int


def test_scripted_replies_in_order_then_exhausted_error() -> None:
    model = FakeChatModel(script=["first", tool_call("lookup", {"id": 7})])
    assert model.invoke("a").content == "first"
    reply = model.invoke("b")
    assert reply.tool_calls[0]["name"] == "lookup"
    assert reply.tool_calls[0]["args"] == {"id": 7}
    with pytest.raises(ScriptExhaustedError, match="exhausted after 2"):
        model.invoke("c")
    assert [c.messages[-1].content for c in model.calls] == ["a", "b"]


def test_assert_complete_reports_unused_replies() -> None:
    model = FakeChatModel(script=["one", "two"])
    model.invoke("x")
    with pytest.raises(AssertionError, match="1 scripted"):
        model.assert_complete()
    model.invoke("y")
    model.assert_complete()


def test_with_structured_output_works_unchanged_in_scripted_mode() -> None:
    model = FakeChatModel(script=[tool_call("Weather", {"city": "Oslo", "celsius": -3})])
    result = model.with_structured_output(Weather).invoke("weather in Oslo?")
    assert result == Weather(city="Oslo", celsius=-3)
    # the schema went through bind_tools with a forced tool choice
    assert model.calls[0].tool_names == ["Weather"]


def test_with_structured_output_reports_invalid_output_with_include_raw() -> None:
    model = FakeChatModel(script=[tool_call("Weather", {"city": "Oslo"})])
    out = model.with_structured_output(Weather, include_raw=True).invoke("?")
    assert out["parsed"] is None
    assert "celsius" in str(out["parsing_error"])


def test_usage_metadata_is_estimated_and_grows_with_input() -> None:
    model = FakeChatModel(script=["ok", "ok"])
    short = model.invoke("hi").usage_metadata
    long = model.invoke("hi " * 400).usage_metadata
    assert short is not None and long is not None
    assert long["input_tokens"] > short["input_tokens"] * 50
    assert short["total_tokens"] == short["input_tokens"] + short["output_tokens"]


def test_async_and_latency() -> None:
    model = FakeChatModel(script=["a", "b"], latency=0.01)

    async def both() -> list[str]:
        replies = await asyncio.gather(model.ainvoke("1"), model.ainvoke("2"))
        return sorted(str(r.content) for r in replies)

    assert asyncio.run(both()) == ["a", "b"]
    assert all(c.finished_at - c.started_at >= 0.01 for c in model.calls)


def test_rules_specialist_picks_best_tool_and_fills_arguments_from_schema() -> None:
    model = FakeChatModel().bind_tools([show_route, reroute_traffic])
    goal = "Reroute its traffic to a backup (context: web-3 is down)"
    human = HumanMessage(f"<goal>\n{goal}\n</goal>")
    reply = model.invoke([SystemMessage("You are traffic"), human])
    assert isinstance(reply, AIMessage)
    (call,) = reply.tool_calls
    assert call["name"] == "reroute_traffic"
    assert call["args"] == {"service": "web-3"}  # optional pool omitted: not in the text
    again = model.invoke([SystemMessage("You are traffic"), human])
    assert again.tool_calls[0]["id"] == call["id"]  # deterministic ids


def test_rules_fills_enum_and_free_text_and_fans_out_over_ids() -> None:
    model = FakeChatModel().bind_tools([alert_oncall])
    goal = "<goal>\nPage on-call for web-1 and web-2 with a critical alert\n</goal>"
    reply = model.invoke([HumanMessage(goal)])
    assert [c["args"]["service"] for c in reply.tool_calls] == ["web-1", "web-2"]
    assert all(c["args"]["severity"] == "critical" for c in reply.tool_calls)
    assert "critical alert" in reply.tool_calls[0]["args"]["message"]


def test_rules_reports_tool_results_after_tool_messages() -> None:
    model = FakeChatModel().bind_tools([show_route])
    first = model.invoke([HumanMessage("<goal>\nshow route of web-1\n</goal>")])
    tool_id = first.tool_calls[0]["id"]
    reply = model.invoke([HumanMessage("<goal>\nshow route of web-1\n</goal>"), first,
                          ToolMessage("web-1 routes to web-primary.", tool_call_id=tool_id)])
    assert reply.content == "web-1 routes to web-primary."


def test_rules_planner_through_structured_output() -> None:
    system = SystemMessage("<agents>\n- traffic: Reroutes traffic | skills: reroute, failover\n"
                           "- notifications: Pages people | skills: alert, page\n</agents>")
    plan = FakeChatModel().with_structured_output(Plan).invoke(
        [system, HumanMessage("<request>\napi-1 failed: fail over api-1 and page the team"
                              "\n</request>")]
    )
    assert isinstance(plan, Plan)
    assert [(s.agent, s.depends_on) for s in plan.subtasks] == [
        ("traffic", []), ("notifications", [])]


def test_get_model_specs() -> None:
    fake = get_model("fake:latency=0.2")
    assert isinstance(fake, FakeChatModel) and fake.latency == 0.2
    assert isinstance(get_model(None), FakeChatModel)
    assert get_model(fake) is fake
    for bad in ("gpt-4", "fake:speed=1", "fake:latency=abc", "openai:", "fake:latency=-1"):
        with pytest.raises(ConfigError):
            get_model(bad)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        get_model("openai:gpt-4o-mini")
