"""The layers point one way (README, "Layout"): the core imports nothing else, retrieval only
the core, the engine no domain pack, eval code, CLI or fake-model internals, and the CLI only
the service API. Read from the source's import statements, so a new edge fails here."""

from __future__ import annotations

import ast
import tomllib
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CORE = {"errors", "config", "events", "agents.spec", "agents.policy", "text_match",
        "request_mood", "truncation"}
"""Errors, settings, events, the spec of an agent and of a tool, and small text helpers."""
PACKS = {"agents.it_ops", "agents.commerce", "agents.finance", "agents.healthcare",
         "agents.marketing"}
MODEL_INTERNALS = {"models.fake", "models.rules", "models.cassette", "models.openai_chat"}
ENGINE_INTERNALS = {"nodes", "graph", "state", "storage", "domain_db", "checkpoints", "leases",
                    "write_journal", "effects", "budget", "routing", *MODEL_INTERNALS,
                    "retrieval.store", "retrieval.search", "retrieval.bm25"}
SERVICE = {"api", "records", "knowledge", "traces", "demo", "evals"}


@cache
def modules() -> dict[str, Path]:
    """Every module of the package, named without the ``orchestrator.`` prefix."""
    mapped = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"][
        "package-dir"]
    roots = {"": ROOT / "orchestrator"} | {
        name.removeprefix("orchestrator."): ROOT / folder for name, folder in mapped.items()}
    found: dict[str, Path] = {}
    for prefix, folder in roots.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts
                     if p != "__init__"]
            if not prefix and parts and parts[0] in {n.split(".")[0] for n in roots if n}:
                continue
            found[".".join(filter(None, [prefix, *parts]))] = path
    return found


def imports_of(name: str) -> set[str]:
    """The package modules ``name`` imports (at any depth of the file, lazy ones included)."""
    known = modules()
    out: set[str] = set()
    for node in ast.walk(ast.parse(known[name].read_text("utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        for target in targets:
            short = target.removeprefix("orchestrator.") if target != "orchestrator" else ""
            if target.startswith("orchestrator") and short in known:
                out.add(short)
    return out - {name}


def within(name: str, group: set[str]) -> bool:
    return any(name == g or name.startswith(f"{g}.") for g in group)


def edges(source: set[str], banned: set[str]) -> list[str]:
    """Imports from the modules ``source`` names into the groups ``banned`` names."""
    return sorted(f"{m} -> {d}" for m in source for d in imports_of(m) if within(d, banned))


def test_the_module_scan_sees_the_mapped_subpackages() -> None:
    names = set(modules())
    assert {"api", "agents.spec", "retrieval.store", "evals.runner", "prompts",
            "nodes.executor", "cli.app"} <= names


def test_the_core_imports_only_the_core() -> None:
    wrong = sorted(f"{m} -> {d}" for m in CORE for d in imports_of(m) if d not in CORE)
    assert wrong == []


def test_retrieval_depends_only_on_the_core() -> None:
    wrong = sorted(f"{m} -> {d}" for m in modules() if within(m, {"retrieval"})
                   for d in imports_of(m) if not within(d, CORE | {"retrieval"}))
    assert wrong == []


@pytest.mark.parametrize("banned", [PACKS, {"evals"}, {"cli"}, MODEL_INTERNALS, {"api"}],
                         ids=["domain packs", "evals", "cli", "fake-model internals",
                              "service api"])
def test_the_engine_names_no_pack_eval_cli_or_model_internals(banned: set[str]) -> None:
    outside = PACKS | {"evals", "cli", "models", "api", "records", "knowledge", "demo"}
    # "" is the root package: the public facade re-exports everything (lazily)
    engine = {m for m in modules() if m and not within(m, outside)} | {"models.specs"}
    assert edges({m for m in engine if not within(m, banned)}, banned) == []


def test_nothing_below_the_cli_imports_it() -> None:
    assert edges({m for m in modules() if not within(m, {"cli"})}, {"cli"}) == []


def test_the_cli_uses_the_service_api_not_engine_internals() -> None:
    assert edges({m for m in modules() if within(m, {"cli"})}, ENGINE_INTERNALS) == []
    assert {d for m in modules() if within(m, {"cli"})
            for d in imports_of(m)} & SERVICE >= {"api", "records", "knowledge"}
