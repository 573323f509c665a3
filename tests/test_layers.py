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

CORE = {"errors", "config", "events", "agents.spec", "agents.policy", "agents.external",
        "text_match", "request_mood", "truncation"}
"""Errors, settings, events, the spec of an agent and of a tool, and small text helpers."""
PACKS = {"agents.it_ops", "agents.commerce", "agents.finance", "agents.healthcare",
         "agents.marketing"}
MODEL_INTERNALS = {"models.fake", "models.rules", "models.cassette", "models.openai_chat",
                   "models.local_llama", "models.llama_server", "models.weights"}
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


@cache
def reexports(package: str) -> dict[str, str]:
    """A package's lazy re-exports (its ``_EXPORTS`` name -> module), read from its source."""
    path = modules().get(package)
    if path is None or path.name != "__init__.py":
        return {}
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if (isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict)
                and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in (
                    node.targets if isinstance(node, ast.Assign) else [node.target]))):
            return {k.value: v.value for k, v in zip(node.value.keys, node.value.values,
                                                     strict=True)
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)}
    return {}


def imports_of(name: str) -> set[str]:
    """The package modules ``name`` imports (at any depth of the file, lazy and relative ones
    included; a name taken from a package's lazy re-exports counts as its module)."""
    known = modules()
    is_package = known[name].name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(known[name].read_text("utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from the package this module is in
                base = ["orchestrator", *filter(None, name.split("."))]
                base = base if is_package else base[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = ".".join([*base, *filter(None, [module])])
            targets = [module, *(f"{module}.{a.name}" for a in node.names)]
            for alias in node.names:
                source, seen = module, {module}
                # follow the name through facades that re-export it (root -> models -> fake)
                while alias.name in (exported := reexports(
                        source.removeprefix("orchestrator").lstrip("."))):
                    source = exported[alias.name]
                    if source in seen:
                        break
                    seen.add(source)
                    targets.append(source)
        for target in targets:
            short = target.removeprefix("orchestrator").lstrip(".")
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
    outside = PACKS | MODEL_INTERNALS | {"evals", "cli", "server", "mcp_server", "api",
                                         "records", "knowledge", "demo", "temporal"}
    # the root package and orchestrator.models are facades that re-export (lazily) what
    # their users may name; an import through them counts as one of the module behind
    engine = {m for m in modules() if m not in ("", "models") and not within(m, outside)}
    assert "models.providers" in engine and "nodes.executor" in engine
    assert edges({m for m in engine if not within(m, banned)}, banned) == []


def test_model_providers_name_no_eval_code_cli_or_pack() -> None:
    internals = {m for m in modules() if within(m, MODEL_INTERNALS)}
    assert edges(internals, PACKS | {"evals", "cli", "api"}) == []


def test_nothing_below_the_cli_imports_it() -> None:
    assert edges({m for m in modules() if not within(m, {"cli"})}, {"cli"}) == []


def test_nothing_below_the_front_doors_imports_them() -> None:
    front = {"cli", "server", "mcp_server"}
    assert edges({m for m in modules() if not within(m, front)}, front) == []


def test_the_http_server_uses_the_service_api_not_engine_internals() -> None:
    assert edges({m for m in modules() if within(m, {"server"})}, ENGINE_INTERNALS) == []
    assert "api" in {d for m in modules() if within(m, {"server"}) for d in imports_of(m)}


def test_the_cli_uses_the_service_api_not_engine_internals() -> None:
    assert edges({m for m in modules() if within(m, {"cli"})}, ENGINE_INTERNALS) == []
    assert {d for m in modules() if within(m, {"cli"})
            for d in imports_of(m)} & SERVICE >= {"api", "records", "knowledge"}
