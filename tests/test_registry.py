"""Agents from built-ins, YAML cards and an installed plugin package."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator.agents import AgentRegistry, AgentSpec, load_agent_card, load_agent_cards
from orchestrator.errors import ConfigError, RequestError
from tests.support.plugins import install_fixture

FIXTURES = Path(__file__).parent / "fixtures"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_builtins_are_the_domain_packs_and_switch_on_and_off() -> None:
    it_ops = ["monitoring", "diagnostics", "traffic", "notifications", "incident_log"]
    commerce = ["recommendations", "pricing", "promotions", "inventory", "support",
                "logistics"]
    finance = ["transaction_monitoring", "fraud_analysis", "compliance",
               "customer_verification", "onboarding_documents"]
    healthcare = ["appointments", "patient_history", "diagnostics_prep", "billing",
                  "visit_documentation"]
    marketing = ["content_writer", "campaign_manager", "email_scheduler", "analytics"]
    registry = AgentRegistry.default(plugins=False)
    # Packs come from the orchestrator.packs entry points, the built-in ones by name.
    assert registry.names == commerce + finance + healthcare + it_ops + marketing
    assert all(spec.source == "built-in" and spec.tools for spec in registry)
    assert AgentRegistry.default(plugins=False, domains="it_ops").names == it_ops
    assert AgentRegistry.default(plugins=False, domains=" commerce ").names == commerce
    with pytest.raises(ConfigError, match="unknown domain"):
        AgentRegistry.default(plugins=False, domains="it_ops,billing")


def test_a_disabled_domain_is_invisible_to_the_planner_and_its_playbooks(
        domain_db: Path) -> None:
    from orchestrator.config import Settings
    from orchestrator.models import FakeChatModel

    model = FakeChatModel()
    orch = Orchestrator(model, domain_db=domain_db, settings=Settings(domains="it_ops"))
    assert "inventory" not in {a.name for a in orch.agents}
    assert {p.name for p in orch.playbooks} == {"service_down", "planned_failover"}
    result = orch.run("check the stock of sku-1")
    planner_prompt = model.calls[0].messages[0].text
    assert "- monitoring:" in planner_prompt and "inventory" not in planner_prompt
    assert all(r.agent != "inventory" for r in result.results.values())
    with pytest.raises(RequestError, match=r"unknown event 'stock_out'.*known events: "
                       r"maintenance_failover, service_down;"):
        orch.fire_event("stock_out", {"sku": "sku-1"})  # its pack is off


def test_card_folder_adds_agents_that_get_planned_and_used(domain_db: Path) -> None:
    registry = AgentRegistry.default(FIXTURES / "cards", plugins=False)
    card = registry.get("capacity")
    assert card.source.endswith("capacity.yaml") and list(card.tool_map) == ["pool_capacity"]
    result = Orchestrator("fake", agents=registry, domain_db=domain_db).run(
        "how much spare capacity do the pools have?")
    assert result.plan is not None and result.plan.subtasks[0].agent == "capacity"
    assert "web-backup-b: 1700 rps spare" in result.answer


@pytest.mark.parametrize(("text", "message"), [
    ("name: [unclosed", "invalid YAML"),
    ("- just a list", "must be a YAML mapping"),
    ("name: x\n", "needs a description"),
    ("name: x\ndescription: d\ncolour: red\n", "colour: Extra inputs are not permitted"),
    ("name: x\ndescription: d\ntools: [no_such_module_xyz:fn]\n", "cannot import module"),
    ("name: x\ndescription: d\ntools: ['os:no_such_fn']\n", "has no 'no_such_fn'"),
    ("name: Bad Name\ndescription: d\n", "must be snake_case"),
])
def test_bad_cards_are_clear_errors_naming_the_file(tmp_path: Path, text: str,
                                                     message: str) -> None:
    card = write(tmp_path / "broken.yaml", text)
    with pytest.raises(ConfigError, match=message) as info:
        load_agent_card(card)
    assert str(card) in str(info.value)


def test_duplicate_agent_name_names_both_sources(tmp_path: Path) -> None:
    write(tmp_path / "traffic.yaml", "name: traffic\ndescription: another traffic agent\n")
    message = r"duplicate agent name 'traffic'.*built-in.*traffic.yaml"
    with pytest.raises(ConfigError, match=message):
        AgentRegistry.default(tmp_path, plugins=False)


def test_missing_cards_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist or is not a folder"):
        load_agent_cards(tmp_path / "nope")


def test_spec_rejects_duplicate_tools() -> None:
    def ping() -> str:
        """Ping."""
        return "pong"

    with pytest.raises(ConfigError, match="lists tool"):
        AgentSpec(name="pinger", description="pings", tools=[ping, ping])


def test_installed_plugin_package_is_discovered_planned_and_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, domain_db: Path
) -> None:
    target = install_fixture("weather_plugin", tmp_path)
    monkeypatch.syspath_prepend(str(target))
    importlib.invalidate_caches()

    registry = AgentRegistry.default()
    weather = registry.get("weather")
    assert "entry point 'weather'" in weather.source

    result = Orchestrator("fake", agents=registry, domain_db=domain_db).run(
        "what is the weather forecast for Oslo?")
    assert result.plan is not None and [s.agent for s in result.plan.subtasks] == ["weather"]
    assert result.answer == "Forecast for Oslo: snow, -4 C."
    plugin = importlib.import_module("weather_plugin")
    assert plugin.CALLS == ["Oslo"]
    monkeypatch.delitem(sys.modules, "weather_plugin")
