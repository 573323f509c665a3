"""The project installs one import name, ``orchestrator``, and lives beside other frameworks."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]


def folder_of(package: str) -> Path:
    """The repository folder that holds ``package`` under the package-dir mapping."""
    mapped: dict[str, str] = CONFIG["package-dir"]
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in mapped:
            return ROOT / mapped[head] / Path(*parts[cut:])
    return ROOT / Path(*parts)


def test_the_package_list_names_every_package_folder() -> None:
    listed = set(CONFIG["packages"])
    roots = {"orchestrator": ROOT / "orchestrator"} | {
        name: ROOT / folder for name, folder in CONFIG["package-dir"].items()}
    found = set()
    for name, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            found.add(".".join((name, *relative)))
    assert found == listed, f"add to or remove from [tool.setuptools] packages: {found ^ listed}"
    assert all(folder_of(name).is_dir() for name in listed)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    return next(out.glob("*.whl"))


def test_the_wheel_installs_one_import_name_with_its_assets(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"orchestrator"}
    for asset in ("orchestrator/prompts/planner.txt", "orchestrator/agents/it_ops/seed.sql",
                  "orchestrator/agents/it_ops/playbooks/service_down.yaml",
                  "orchestrator/agents/it_ops/knowledge/runbook-web-failover.md",
                  "orchestrator/agents/commerce/evals/cases.yaml"):
        assert asset in names


def test_openai_agents_sdk_installs_beside_and_both_import(tmp_path: Path) -> None:
    """The OpenAI Agents SDK's top-level ``agents`` and ours are different packages."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target),
                    "openai-agents"], check=True, capture_output=True, timeout=600)
    probe = (
        "import agents, orchestrator, orchestrator.agents\n"
        "from agents import Agent, Runner\n"
        "from orchestrator import AgentSpec, Orchestrator\n"
        f"assert agents.__file__.startswith({str(target)!r}), agents.__file__\n"
        "assert Agent.__module__.startswith('agents') and Runner\n"
        "print(AgentSpec.__module__, Orchestrator.__module__)\n")
    # Run outside the repository, so its folders are not on the path.
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(target),
                                                       "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["orchestrator.agents.spec", "orchestrator.api"]
