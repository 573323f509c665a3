"""Plugin fixtures built and installed with pip into a folder of their own (never into the
environment every test shares), then put on ``sys.path`` by the test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def install_fixture(name: str, work: Path) -> Path:
    """Copy ``tests/fixtures/<name>`` to ``work``, pip-install it (offline, no deps) into
    ``work/site`` and return that folder."""
    target = work / "site"
    package = shutil.copytree(FIXTURES / name, work / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(package)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    return target
