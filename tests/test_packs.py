"""Domain packs: found through the ``orchestrator.packs`` entry points, switched on and off by
ORCHESTRATOR_DOMAINS, and owning their seed tables, knowledge, playbooks and eval cases."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator.agents import AgentRegistry
from orchestrator.agents.domains import enabled_packs, pack_entry_points
from orchestrator.config import Settings
from orchestrator.domain_db import connect, open_domain_db, reset_domain_db, use_domain_db
from orchestrator.errors import ConfigError, RequestError
from tests.support.plugins import install_fixture

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def fleet_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The fleet pack (tests/fixtures/fleet_pack) built and installed with pip into a folder
    of its own, on sys.path for this module's tests: other tests never see it."""
    target = install_fixture("fleet_pack", tmp_path_factory.mktemp("fleet"))
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(target))
        importlib.invalidate_caches()
        yield target
        for name in [m for m in sys.modules if m == "fleet_pack" or m.startswith("fleet_pack.")]:
            del sys.modules[name]
    importlib.invalidate_caches()


def cli(*args: str, site: Path, **env: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args], text=True, capture_output=True,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": path, **env}, timeout=300,
    )


def test_the_built_in_packs_register_through_the_entry_point_group() -> None:
    builtin = ["commerce", "finance", "healthcare", "it_ops", "marketing"]
    assert [n for n in pack_entry_points() if n in builtin] == builtin
    packs = enabled_packs("all")
    assert all(p.builtin and p.seed_sql() and p.knowledge_folder() and p.playbooks_folder()
               for p in packs if p.name in builtin)


def test_an_installed_pack_brings_its_table_knowledge_playbook_and_cases(
        fleet_site: Path, orchestrator_home: Path) -> None:
    reset = cli("demo", "reset", site=fleet_site)
    assert reset.returncode == 0, reset.stderr
    assert "Knowledge base 'fleet_ops': " in reset.stdout
    db = sqlite3.connect(orchestrator_home / "domain.sqlite")
    assert db.execute("SELECT id, status FROM fleet_vans ORDER BY id").fetchall() == [
        ("van-7", "on the road"), ("van-8", "on the road")]
    assert db.execute("SELECT count(*) FROM routes").fetchone()[0] > 0  # built-ins too

    found = cli("kb", "search", "brake wear workshop", "-c", "fleet_ops", "--json",
                site=fleet_site)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits and "brake-policy.md" in json.dumps(hits[0]) and "Kestrel Lane" in found.stdout

    listed = cli("playbooks", "--json", site=fleet_site)
    assert listed.returncode == 0, listed.stderr
    books = {p["name"]: p for p in json.loads(listed.stdout)}
    assert books["brake_fault"]["pack"] == "fleet_ops"
    assert books["brake_fault"]["event"] == "brake_fault"
    assert books["brake_fault"]["agents"] == ["fleet"]
    assert books["service_down"]["pack"] == "it_ops"
    table = cli("playbooks", site=fleet_site)
    assert "brake_fault" in table.stdout and "fleet_ops" in table.stdout

    fired = cli("event", "brake_fault", "--data", '{"van": "van-7"}', "--json",
                site=fleet_site)
    assert fired.returncode == 0, fired.stderr
    out = json.loads(fired.stdout)
    assert out["mode"] == "playbook:brake_fault"
    assert [r["agent"] for r in out["results"].values()] == ["fleet", "fleet"]
    assert "brake wear 91 %" in out["results"]["check"]["output"]
    assert db.execute("SELECT id, status FROM fleet_vans ORDER BY id").fetchall() == [
        ("van-7", "grounded"), ("van-8", "on the road")]

    agents = json.loads(cli("agents", "--json", site=fleet_site).stdout)
    fleet = next(a for a in agents if a["name"] == "fleet")
    assert fleet["domain"] == "fleet_ops" and "domain pack 'fleet_ops'" in fleet["source"]

    evals = cli("eval", "--pack", "fleet_ops", "--out", str(orchestrator_home / "ev"),
                site=fleet_site, ORCHESTRATOR_KNOWLEDGE="0")
    assert evals.returncode == 0, evals.stderr
    summary = json.loads((orchestrator_home / "ev" / "summary.json").read_text())
    assert summary["cases"] == 1 and summary["pass_at_1"] == 1.0
    unknown = cli("eval", "--pack", "fleet_opps", site=fleet_site)
    assert unknown.returncode == 2 and "fleet_opps" in unknown.stderr


def test_orchestrator_domains_switches_a_plugin_pack_on_and_off(
        fleet_site: Path, tmp_path: Path) -> None:
    db_path = reset_domain_db(tmp_path / "domain.sqlite")
    off = Orchestrator("fake", domain_db=db_path, settings=Settings(domains="it_ops"))
    assert "fleet" not in {a.name for a in off.agents}
    assert "brake_fault" not in {p.name for p in off.playbooks}
    with pytest.raises(RequestError, match=r"unknown event 'brake_fault'.*known events: "
                       r"maintenance_failover, service_down;"):
        off.fire_event("brake_fault", {"van": "van-7"})
    assert "fleet" in AgentRegistry.default().names  # on by default ('all')

    on = Orchestrator("fake", domain_db=db_path, settings=Settings(domains="fleet_ops"))
    assert [a.name for a in on.agents] == ["fleet"]
    result = on.run("brake fault on van-8: deal with it")  # the playbook's request pattern
    assert result.mode == "playbook:brake_fault" and result.status == "ok"
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT status FROM fleet_vans WHERE id = 'van-8'"
                            ).fetchone()[0] == "grounded"

    with pytest.raises(ConfigError, match=r"unknown domain\(s\) in ORCHESTRATOR_DOMAINS: "
                       r"fleet \(known: .*it_ops, marketing, fleet_ops, or 'all'\)"):
        AgentRegistry.default(domains="it_ops,fleet")


def fake_dist(site: Path, name: str, entry_point: str, files: dict[str, str]) -> None:
    """Install a pack by hand: an entry point in a dist-info folder, and its files."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[orchestrator.packs]\n{entry_point}\n")
    for relative, text in files.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_text(text)


PACK_INIT = """from orchestrator.agents.domains import DomainPack
PACK = DomainPack(name="{name}", description="d", package="{name}",
                  agents="{name}.agents:make", knowledge=None, {extra})
"""
AGENTS = """from orchestrator.agents.spec import AgentSpec
def make():
    return [AgentSpec(name="{name}_agent", description="does {name} things")]
"""
PLAYBOOK = ("name: {name}_pb\ntrigger: {{event: {name}_ev}}\n"
            "steps: [{{id: a, agent: {agent}, goal: g}}]\n")


def broken(name: str, *, extra: str = "", agent: str = "", seed: str = "SELECT 1;"
           ) -> dict[str, str]:
    files = {f"{name}/__init__.py": PACK_INIT.format(name=name, extra=extra),
             f"{name}/agents.py": AGENTS.format(name=name), f"{name}/seed.sql": seed,
             f"{name}/playbooks/p.yaml": PLAYBOOK.format(name=name, agent=agent or
                                                         f"{name}_agent")}
    return files


@pytest.mark.parametrize(("name", "entry", "files", "message"), [
    ("gone", "gone = gone_xyz:PACK", {},
     r"domain pack 'gone' \(gone_xyz:PACK\) failed to load: ModuleNotFoundError"),
    ("notpack", "notpack = notpack:PACK", {"notpack/__init__.py": "PACK = {'name': 1}\n"},
     r"domain pack 'notpack' \(notpack:PACK\) gave dict, not a DomainPack"),
    ("renamed", "renamed = other:PACK", broken("other"),
     r"registered as 'renamed' but calls itself 'other'"),
    ("noevals", "noevals = noevals:PACK", broken("noevals", extra="evals='cases'"),
     r"domain pack 'noevals'.*its evals 'cases' is not in package noevals"),
    ("badbook", "badbook = badbook:PACK", broken("badbook", agent="nobody"),
     r"domain pack 'badbook': playbook 'badbook_pb' .* names unknown agent 'nobody'"),
    ("badagents", "badagents = badagents:PACK",
     {**broken("badagents"), "badagents/agents.py": "def make():\n    raise OSError('no')\n"},
     r"domain pack 'badagents': its agents \('badagents.agents:make'\) failed to load: "
     "OSError: no"),
])
def test_a_broken_pack_fails_at_start_with_one_line_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, entry: str,
        files: dict[str, str], message: str) -> None:
    site = tmp_path / "site"
    fake_dist(site, name, entry, files)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    try:
        with pytest.raises(ConfigError, match=message):
            Orchestrator("fake", domain_db=tmp_path / "d.sqlite")
        proc = cli("playbooks", site=site)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
        assert f"domain pack '{name}'" in proc.stderr or "calls itself" in proc.stderr
        # switched off, it is not loaded at all
        Orchestrator("fake", domain_db=tmp_path / "d.sqlite", settings=Settings(domains="it_ops"))
    finally:
        for module in [m for m in sys.modules if m.split(".")[0] in {name, "other"}]:
            monkeypatch.delitem(sys.modules, module)


def test_a_broken_built_in_playbook_fails_at_start(tmp_path: Path, domain_db: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # It used to be left out without a word, and its event went to the supervisor.
    import orchestrator.agents.it_ops as it_ops

    books = tmp_path / "books"
    shutil.copytree(it_ops.PACK.playbooks_folder() or "", books)
    book = books / "service_down.yaml"
    book.write_text(book.read_text().replace("agent: traffic", "agent: trafic"))
    monkeypatch.setattr(it_ops, "PACK", dataclasses.replace(it_ops.PACK, playbooks=str(books)))
    for agents in (None, it_ops.it_ops_agents()):
        with pytest.raises(ConfigError, match=r"domain pack 'it_ops': playbook 'service_down' "
                           r".*step 'reroute' names unknown agent 'trafic'"):
            Orchestrator("fake", agents=agents, domain_db=domain_db)


def test_a_pack_whose_seed_fails_leaves_the_old_database(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = reset_domain_db(tmp_path / "domain.sqlite")
    site = tmp_path / "site"
    fake_dist(site, "badseed", "badseed = badseed:PACK", broken("badseed", seed="CREATE x;"))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    try:
        with pytest.raises(ConfigError, match="domain pack 'badseed': its seed SQL failed"):
            reset_domain_db(path)
    finally:
        monkeypatch.delitem(sys.modules, "badseed", raising=False)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM routes").fetchone()[0] > 0
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]  # no half-seeded file


def test_the_business_database_opens_from_a_path_or_url(domain_db: Path) -> None:
    with use_domain_db(f"sqlite:///{domain_db}"), connect() as conn:  # 4 slashes: absolute
        assert conn.execute("SELECT pool FROM routes WHERE service = 'web-3'"
                            ).fetchone()["pool"] == "web-primary"
    # A PostgreSQL URL opens a server (tests/test_domain_postgres.py); one that does not
    # answer is a ConnectionError naming it, without its password.
    with pytest.raises(ConnectionError, match=r"business database 'postgresql://shop:\*\*\*@"
                       r"127.0.0.1:1/shop'") as caught:
        open_domain_db("postgresql://shop:secret@127.0.0.1:1/shop")
    assert "secret" not in str(caught.value)
    with pytest.raises(ConfigError, match="unknown business database URL scheme 'mysql'"):
        open_domain_db("mysql://db.example/shop")
