"""The agent catalog: listings read it while nothing they are built from changed, and see
every change (a card added or edited, the domains setting) at once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from orchestrator.agents import catalog
from orchestrator.agents.catalog import CATALOG_FILE, agent_catalog
from orchestrator.agents.registry import AgentRegistry

FIXTURES = Path(__file__).parent / "fixtures"


def names(entries: list[catalog.AgentEntry]) -> list[str]:
    return [e.name for e in entries]


def test_a_listing_reads_the_catalog_until_a_card_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cards = shutil.copytree(FIXTURES / "cards", tmp_path / "cards")
    home = tmp_path / "home"
    first = agent_catalog(home, cards, None)
    assert (home / CATALOG_FILE).exists()
    expected = AgentRegistry.default(cards)
    assert names(first) == [s.name for s in expected]
    traffic = next(e for e in first if e.name == "traffic")
    assert {t.name: t.marks for t in traffic.tools}["reroute_traffic"][0] == "writes"

    built = 0
    real_default = AgentRegistry.default

    def counting(*args: object, **kwargs: object) -> AgentRegistry:
        nonlocal built
        built += 1
        return real_default(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(AgentRegistry, "default", counting)
    assert agent_catalog(home, cards, None) == first and built == 0  # read, not built

    card = cards / "capacity.yaml"
    card.write_text(card.read_text().replace(
        "Reports how much spare capacity", "Tells how much free capacity"))
    os.utime(card, ns=(card.stat().st_atime_ns, card.stat().st_mtime_ns + 10**9))
    edited = agent_catalog(home, cards, None)
    assert built == 1
    assert next(e for e in edited if e.name == "capacity").description.startswith("Tells")

    (cards / "capacity.yaml").rename(cards / "capacity.yml.off")
    assert "capacity" not in names(agent_catalog(home, cards, None)) and built == 2


def test_the_domains_setting_and_a_damaged_catalog_rebuild_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    everything = agent_catalog(home, None, None)
    it_ops = agent_catalog(home, None, "it_ops")
    assert set(names(it_ops)) < set(names(everything))
    assert {e.domain for e in it_ops} == {"it_ops"}
    (home / CATALOG_FILE).write_text("{not json")
    assert agent_catalog(home, None, "it_ops") == it_ops
