"""The shipped core suite, end to end with the offline fake model and the real embedder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).parents[2] / "evals" / "datasets" / "core"


def test_core_suite_with_the_fake_model(tmp_path: Path) -> None:
    out = tmp_path / "core"
    env = {**os.environ, "ORCHESTRATOR_EMBEDDER": "minilm", "COLUMNS": "160"}
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "eval", str(CORE),
                           "--out", str(out), "--concurrency", "4"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"] >= 60
    kinds = {tag for tags in summary["by_tag"] for tag in [tags]}
    assert {"single", "multi", "chain", "knowledge", "refusal", "failure",
            "conversation"} <= kinds
    # The rules model passes the large majority; what it fails is listed as known, with a
    # reason, and a known failure that starts passing must lose its mark.
    assert summary["pass_at_1"] >= 0.85, summary["failed_cases"]
    assert summary["unexpected_failures"] == []
    assert summary["known_failures_passing"] == []
    assert all(summary["known_failures"].values())
    assert summary["errors"] == 0
    # A run that says ok while the database shows the asked change did not happen is only
    # allowed where the rules model's plan itself is wrong, and that case is listed as known.
    assert set(summary["false_ok"]) <= set(summary["known_failures"])
    assert summary["scorers"]["state"]["applied"] == summary["runs"]
    assert summary["routing"]["precision"] >= 0.9 and summary["routing"]["recall"] >= 0.9
