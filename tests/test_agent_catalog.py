"""The agent catalog: listings read it while nothing they are built from changed, and see
every change (a card added or edited, the domains setting) at once."""

from __future__ import annotations

import json
import os
import shutil
import sys
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
    for damaged in ("{not json", "[]", '{"format": 2, "key": 1}'):
        (home / CATALOG_FILE).write_text(damaged)
        assert agent_catalog(home, None, "it_ops") == it_ops


def test_a_change_to_a_tool_module_anywhere_is_seen(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in review: a card's tools in a single-module file (or a namespace package, or
    a dotted reference) were not tracked, so a tool that became a write still listed as
    read-only."""
    lib, cards, home = tmp_path / "lib", tmp_path / "cards", tmp_path / "home"
    lib.mkdir()
    cards.mkdir()
    tools = lib / "widget_tools.py"
    tools.write_text('from orchestrator import read_only\n\n\n@read_only\n'
                     'def check_widget(widget: str) -> str:\n'
                     '    """Check a widget."""\n'
                     '    return widget\n')
    (cards / "widgets.yaml").write_text(
        "name: widgets\ndescription: Looks after widgets.\nskills: [widgets]\n"
        "model: openai:gpt-4o-mini\ntools: [widget_tools.check_widget]\n")
    monkeypatch.syspath_prepend(str(lib))

    def marks() -> list[str]:
        entry = next(e for e in agent_catalog(home, cards, "it_ops") if e.name == "widgets")
        return entry.tools[0].marks

    assert marks() == ["reads"]
    tools.write_text(tools.read_text().replace("read_only", "writes"))
    os.utime(tools, ns=(tools.stat().st_atime_ns, tools.stat().st_mtime_ns + 10**9))
    monkeypatch.delitem(sys.modules, "widget_tools")  # a new process would load it afresh
    assert marks() == ["writes"]


def test_the_catalog_is_read_only_while_the_files_it_was_built_from_stay(tmp_path: Path
                                                                         ) -> None:
    from orchestrator.agents.domains import find_pack

    home = tmp_path / "home"
    assert agent_catalog(home, None, None)
    stored = json.loads((home / CATALOG_FILE).read_text())
    paths = {path for path, _, _ in stored["sources"]}
    # the packs' declared assets (a seed that goes missing must be an error again) and the
    # modules building it imported, wherever they live
    assert {str(p) for p in find_pack("it_ops").assets()} <= paths
    assert any(p.endswith("agents/it_ops/tools.py") for p in paths)
    assert catalog._unchanged(stored["sources"])
    seed = str(find_pack("it_ops").assets()[0])
    assert not catalog._unchanged([[seed, 1, 1]])
