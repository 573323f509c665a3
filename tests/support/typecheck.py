"""Run mypy over the package as it is installed: ``python -m tests.support.typecheck``.

The folders agents/, evals/, prompts/ and retrieval/ are subpackages of ``orchestrator``
(``[tool.setuptools.package-dir]`` in pyproject.toml), a mapping mypy cannot follow from the
repository's layout. This builds the installed layout as a tree of symlinks in a temporary
folder, runs ``mypy -p orchestrator`` there with the project's settings, and prints the
findings with repository paths.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def installed_layout(into: Path) -> Path:
    """Symlink the repository into ``into`` as the installed package tree; its root."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    mapped: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    package = into / "orchestrator"
    package.mkdir()
    for entry in (ROOT / "orchestrator").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name, folder in mapped.items():
        parent, _, leaf = name.rpartition(".")
        assert parent == "orchestrator", f"only direct subpackages are mapped, not {name}"
        (package / leaf).symlink_to(ROOT / folder)
    return into


def run_mypy() -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as tmp:
        tree = installed_layout(Path(tmp))
        proc = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
             "--cache-dir", str(ROOT / ".mypy_cache"), "-p", "orchestrator"],
            cwd=tree, capture_output=True, text=True, timeout=600)
    mapped = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    out = proc.stdout
    for name, folder in mapped["tool"]["setuptools"]["package-dir"].items():
        out = out.replace(name.replace(".", "/") + "/", folder + "/")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, proc.stderr)


if __name__ == "__main__":
    result = run_mypy()
    print(result.stdout + result.stderr, end="")
    sys.exit(result.returncode)
