"""The planner's agent shortlist: a large catalog is cut to the agents likely to matter,
by the knowledge base's embedding model; a small one is shown whole without loading it."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import StructuredTool

from orchestrator import Orchestrator
from orchestrator.agents.catalog import CARD_VECTORS_FILE, card_vectors
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.agents.it_ops import tools as it_tools
from orchestrator.agents.spec import AgentSpec
from orchestrator.config import Settings
from orchestrator.graph import engine_context
from orchestrator.models import FakeChatModel, tool_call
from orchestrator.nodes.planner import planner_agents
from orchestrator.playbooks import pack_playbooks
from orchestrator.retrieval.embedders import HashEmbedder
from orchestrator.state import EngineContext

# Thirty-five agents far from IT operations, each with one tool: with the five it_ops agents,
# a catalog of forty.
TOPICS = [
    ("weather", "Forecasts the weather for a city", "forecast rain and temperature"),
    ("translator", "Translates text between human languages", "translate a sentence"),
    ("poet", "Writes short poems on a theme", "compose a poem"),
    ("chef", "Suggests recipes from the ingredients at hand", "find a recipe"),
    ("travel", "Books flights and hotels for trips", "book a flight"),
    ("fitness", "Plans workouts and training schedules", "plan a workout"),
    ("tax", "Prepares personal income tax returns", "file a tax return"),
    ("legal", "Drafts simple contracts and NDAs", "draft a contract"),
    ("music", "Recommends songs and builds playlists", "make a playlist"),
    ("movies", "Recommends films to watch tonight", "suggest a film"),
    ("garden", "Advises on plants, watering and soil", "care for a plant"),
    ("pets", "Answers questions about dog and cat care", "feed a puppy"),
    ("astronomy", "Tells which planets and stars are visible tonight", "spot a planet"),
    ("chess", "Analyses chess positions and suggests moves", "find the best move"),
    ("math_tutor", "Explains algebra and calculus homework", "solve an equation"),
    ("history", "Answers questions about historical events", "explain a battle"),
    ("real_estate", "Estimates house prices and rents", "value a house"),
    ("cars", "Compares car models and fuel economy", "compare two cars"),
    ("wine", "Pairs wines with dishes", "pair a wine"),
    ("fashion", "Suggests outfits for an occasion", "pick an outfit"),
    ("language_coach", "Teaches Spanish vocabulary with flashcards", "learn Spanish words"),
    ("photography", "Gives tips on camera settings and composition", "set the aperture"),
    ("parenting", "Advises parents on toddler sleep routines", "settle a toddler"),
    ("event_planner", "Plans weddings and birthday parties", "plan a party"),
    ("crossword", "Solves crossword clues", "solve a clue"),
    ("bird_watcher", "Identifies birds from a description", "identify a bird"),
    ("sleep_coach", "Improves sleep habits", "sleep better"),
    ("diy", "Guides home repairs such as fixing a tap", "fix a leaking tap"),
    ("knitting", "Explains knitting patterns and stitches", "knit a scarf"),
    ("stargazing_events", "Lists meteor showers and eclipses", "see an eclipse"),
    ("sports_scores", "Reports football and tennis results", "get the match score"),
    ("quotes", "Finds famous quotations on a subject", "find a quote"),
    ("jokes", "Tells jokes for children", "tell a joke"),
    ("trivia", "Runs pub quiz trivia rounds", "ask a trivia question"),
    ("meditation", "Guides breathing and meditation sessions", "meditate for five minutes"),
]
INCIDENT = ("check the health of web-2, then page the on-call engineer for web-3 about the "
            "full disk")


def topic_agent(name: str, description: str, skill: str) -> AgentSpec:
    def answer(question: str) -> str:
        return f"{name}: {question}"

    tool = StructuredTool.from_function(answer, name=f"ask_{name}",
                                        description=f"{description}.",
                                        metadata={"readOnlyHint": True})
    return AgentSpec(name=name, description=f"{description}.", skills=[skill], tools=[tool],
                     domain="general")


def large_catalog(*extra: AgentSpec) -> list[AgentSpec]:
    return [*it_ops_agents(), *(topic_agent(*t) for t in TOPICS), *extra]


def catalog_names(system: str) -> list[str]:
    return re.findall(r"^- ([a-z][a-z0-9_]*):", system, re.MULTILINE)


def planner_systems(model: FakeChatModel) -> list[str]:
    return [c.messages[0].text for c in model.calls if "Plan" in c.tool_names]


def context(agents: list[AgentSpec], **settings: Any) -> EngineContext:
    return engine_context("fake", agents, settings=Settings(**settings),
                          playbooks=pack_playbooks("it_ops"))


def test_a_large_catalog_is_cut_to_the_agents_the_request_needs_and_the_run_completes(
        domain_db: Path, db: sqlite3.Connection, orchestrator_home: Path) -> None:
    """Forty agents, a shortlist of six, the real embedding model (MiniLM) and the offline
    model: the planner is shown the agents for a health check and a page among them, and
    the run does both."""
    assert len(large_catalog()) == 40
    model = FakeChatModel()
    settings = Settings(planner_shortlist=6, embedder="minilm", knowledge=False,
                        coordination="adaptive")
    result = Orchestrator(model, agents=large_catalog(), settings=settings,
                          domain_db=domain_db).run(INCIDENT)

    (system,) = planner_systems(model)
    shown = catalog_names(system)
    assert len(shown) == 6
    assert {"monitoring", "notifications"} <= set(shown)
    assert not set(shown) & {"poet", "chef", "jokes", "knitting"}
    assert shown == [a.name for a in large_catalog() if a.name in shown]  # catalog order
    assert result.ok, result.answer
    assert {r.agent for r in result.results.values()} == {"monitoring", "notifications"}
    assert [tuple(r) for r in db.execute("SELECT service FROM alerts")] == [("web-3",)]
    # The card vectors are kept in the data folder for the next process.
    stored = json.loads((orchestrator_home / CARD_VECTORS_FILE).read_text())
    assert len(stored["vectors"]) >= 40


def test_a_catalog_within_the_setting_is_shown_whole_and_loads_no_embedder(
        domain_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_embedder(self: EngineContext) -> Any:
        raise AssertionError("a small catalog must not load the embedding model")

    monkeypatch.setattr(EngineContext, "embedder", no_embedder)
    model = FakeChatModel()
    agents = large_catalog()
    result = Orchestrator(model, agents=agents, domain_db=domain_db,
                          settings=Settings(planner_shortlist=40, knowledge=False,
                                            coordination="adaptive")).run(INCIDENT)
    assert result.ok, result.answer
    (system,) = planner_systems(model)
    assert catalog_names(system) == [a.name for a in agents]


def test_agents_the_request_names_and_a_matching_playbook_uses_are_kept() -> None:
    ctx = context(large_catalog(), planner_shortlist=3, embedder="hash")
    named = planner_agents(ctx, {"request": "ask the poet for a limerick about web-3"})
    assert "poet" in [a.name for a in named] and len(named) == 3

    # The service_down playbook (diagnostics, traffic, notifications, incident_log) matches:
    # its four agents stay though the shortlist is three.
    request = "run the outage playbook for web-3"
    kept = [a.name for a in planner_agents(ctx, {"request": request})]
    assert {"diagnostics", "traffic", "notifications", "incident_log"} <= set(kept)
    by_event = planner_agents(ctx, {"request": "event service_down",
                                    "event": {"name": "service_down", "data": {}}})
    assert {"diagnostics", "traffic"} <= {a.name for a in by_event}


def test_the_previous_turn_counts_for_a_follow_up() -> None:
    ctx = context(large_catalog(), planner_shortlist=2, embedder="hash")
    state: Any = {"request": "and for tomorrow?",
                  "messages": [HumanMessage("forecast rain and temperature for Lisbon"),
                               HumanMessage("and for tomorrow?")]}
    assert "weather" in [a.name for a in planner_agents(ctx, state)]


class CountingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__(64)
        self.embedded: list[str] = []
        self.calls: list[list[str]] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.embedded.extend(texts)
        self.calls.append(list(texts))
        return super().embed_documents(texts)


def test_card_vectors_are_embedded_once_until_a_card_changes(tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    texts = ["monitoring: checks health", "notifications: pages the on-call"]
    first = card_vectors(tmp_path, embedder, texts)
    again = card_vectors(tmp_path, CountingEmbedder(), texts)
    assert again == first and len(embedder.embedded) == 2

    changed = CountingEmbedder()
    card_vectors(tmp_path, changed, [texts[0], "notifications: pages and texts the on-call"])
    assert changed.embedded == ["notifications: pages and texts the on-call"]

    # In a process, the context embeds the catalog's cards once.
    ctx = context(large_catalog(), planner_shortlist=4, home=tmp_path / "home")
    counting = CountingEmbedder()
    ctx.embedder = lambda: counting  # type: ignore[method-assign]
    for request in ("check the health of web-2", "book a flight to Oslo"):
        planner_agents(ctx, {"request": request})
    pieces = [p for s in ctx.agents.values() for p in ctx.agent_card(s)]
    assert counting.calls[0] == pieces  # the cards, once
    assert not any(set(call) & set(pieces) for call in counting.calls[1:])  # then requests
    assert len(counting.calls) == 3


def test_a_replan_offers_the_failed_subtasks_alternatives_outside_the_shortlist(
        domain_db: Path, db: sqlite3.Connection) -> None:
    """The planner named a relay as the alternative; reassignment is off, so the replan
    must be able to give the paging to it though its card is like no request's."""
    def broken(service: str, message: str, severity: str = "high") -> str:
        raise ConnectionError("pager gateway returned 503")

    def relay(service: str, message: str, severity: str = "high") -> str:
        return "relayed: " + str(it_tools.alert_oncall.invoke(
            {"service": service, "message": message, "severity": severity}))

    agents = [s for s in large_catalog() if s.name != "notifications"]
    agents.append(AgentSpec(
        name="notifications", description="Alerts the on-call team.", skills=["page"],
        tools=[StructuredTool.from_function(broken, name="alert_oncall",
                                            description="Page the on-call engineer.",
                                            args_schema=it_tools.AlertArgs)]))
    agents.append(AgentSpec(
        name="relay_b", description="Legacy gateway box seven.", skills=["box"],
        tools=[StructuredTool.from_function(relay, name="relay_message",
                                            description="Forward a message through box 7.",
                                            args_schema=it_tools.AlertArgs)]))
    plan = {"subtasks": [{"id": "t1", "goal": "Page the on-call engineer for web-3: disk "
                          "full", "agent": "notifications", "alternatives": ["relay_b"],
                          "kind": "act"}]}
    replan = {"subtasks": [{"id": "p1", "goal": "Page the on-call engineer for web-3: disk "
                            "full", "agent": "relay_b", "kind": "act"}]}
    supervisor = FakeChatModel(script=[tool_call("Plan", plan), tool_call("Plan", replan),
                                       "paged through the relay"])
    result = Orchestrator(
        supervisor, agents=agents, domain_db=domain_db,
        agent_models={a.name: "fake" for a in agents},
        settings=Settings(planner_shortlist=4, max_retries=0, max_reassigns=0,
                          knowledge=False, coordination="adaptive"),
    ).run("page the on-call engineer for web-3: disk full")

    planning, replanning = planner_systems(supervisor)
    assert "relay_b" not in catalog_names(planning)
    offered = catalog_names(replanning)
    assert "relay_b" in offered and "notifications" not in offered
    assert len(offered) <= 4
    assert result.status == "ok", result.answer
    assert result.results["r1_p1"].agent == "relay_b"
    assert [tuple(r) for r in db.execute("SELECT service FROM alerts")] == [("web-3",)]
    supervisor.assert_complete()


def test_a_plan_for_an_agent_outside_the_shortlist_is_accepted_but_unknown_ones_are_not(
        domain_db: Path) -> None:
    plan_bad = {"subtasks": [{"id": "t1", "goal": "check the health of web-2",
                              "agent": "nobody", "kind": "answer"}]}
    plan_ok = {"subtasks": [{"id": "t1", "goal": "check the health of web-2",
                             "agent": "monitoring", "kind": "answer"}]}
    supervisor = FakeChatModel(script=[tool_call("Plan", plan_bad), tool_call("Plan", plan_ok)])
    result = Orchestrator(
        supervisor, agents=large_catalog(), domain_db=domain_db,
        agent_models={a.name: "fake" for a in large_catalog()},
        settings=Settings(planner_shortlist=2, knowledge=False, coordination="adaptive"),
    ).run("book a flight to Oslo and check the health of web-2")
    first, second = planner_systems(supervisor)
    assert first == second and len(catalog_names(first)) == 2  # repairs keep the prompt
    assert "unknown agent 'nobody'" in supervisor.calls[1].messages[-1].text
    assert result.ok, result.answer
    assert result.results["t1"].agent == "monitoring"
    assert isinstance(supervisor.calls[0].messages[0], SystemMessage)


def test_a_model_that_plans_better_from_fewer_agents_is_shown_fewer(
        domain_db: Path, db: sqlite3.Connection) -> None:
    """A provider may say its model routes better among few agents (the local provider:
    ``shortlist=8`` by default); the setting still caps it."""
    from orchestrator.models import parse_model_spec

    spec = parse_model_spec("local:http://127.0.0.1:9,shortlist=3")
    assert spec.options["shortlist"] == "3"
    model = FakeChatModel(metadata={"orchestrator_shortlist": 6})
    settings = Settings(planner_shortlist=30, embedder="minilm", knowledge=False,
                        coordination="adaptive")
    result = Orchestrator(model, agents=large_catalog(), settings=settings,
                          domain_db=domain_db).run(INCIDENT)
    (system,) = planner_systems(model)
    assert len(catalog_names(system)) == 6
    assert result.ok, result.answer
    assert [tuple(r) for r in db.execute("SELECT service FROM alerts")] == [("web-3",)]
    capped = engine_context(FakeChatModel(metadata={"orchestrator_shortlist": 6}),
                            large_catalog(), settings=Settings(planner_shortlist=4))
    assert capped.shortlist_size == 4


def test_a_small_model_is_shown_only_agents_close_to_the_request(
        domain_db: Path, db: sqlite3.Connection) -> None:
    """A model that says it plans a subtask for every agent it sees (a provider's
    ``orchestrator_shortlist_spread``: the local one) is shown the closest agent for each
    part of the request, and others only as close as the closest, not six to fill up."""
    settings = Settings(planner_shortlist=6, embedder="minilm", knowledge=False,
                        coordination="adaptive")
    wide, narrow = FakeChatModel(), FakeChatModel(
        metadata={"orchestrator_shortlist_spread": 0.1})
    results = [Orchestrator(model, agents=large_catalog(), settings=settings,
                            domain_db=domain_db).run(INCIDENT) for model in (wide, narrow)]

    (wide_system,), (narrow_system,) = planner_systems(wide), planner_systems(narrow)
    assert len(catalog_names(wide_system)) == 6
    shown = catalog_names(narrow_system)
    assert {"monitoring", "notifications"} <= set(shown) and len(shown) < 6
    assert all(r.ok for r in results), [r.answer for r in results]
    assert [tuple(r) for r in db.execute("SELECT service FROM alerts")] == [("web-3",)] * 2
