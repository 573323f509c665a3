"""Real processes for crash tests: start the CLI, wait for a marker it writes, stop it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CRASH_CARDS = FIXTURES / "crash" / "cards"
CRASH_PLAYBOOKS = FIXTURES / "crash" / "playbooks"


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): an owner that is gone."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def crash_env(gate: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a CLI process with the crash-drill agent and playbook; with
    ``gate``, the drill's tool holds after its write (see tests/fixtures/crash_tools.py)."""
    env = {**os.environ, "COLUMNS": "200", "ORCHESTRATOR_KNOWLEDGE": "0",
           "ORCHESTRATOR_AGENTS_DIR": str(CRASH_CARDS),
           "ORCHESTRATOR_PLAYBOOKS_DIR": str(CRASH_PLAYBOOKS), **extra}
    env.pop("ORCH_TEST_GATE", None)
    if gate is not None:
        env["ORCH_TEST_GATE"] = str(gate)
    return env


def make_gate(folder: Path) -> Path:
    """A folder where the holding tool writes ``reached`` and waits on the ``release`` FIFO."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "release")
    return folder


def start_cli(*args: str, env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env))


def run_cli(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], text=True,
                          capture_output=True, env=dict(env), timeout=120)


def wait_for_marker(path: Path, proc: subprocess.Popen[str], timeout: float = 90.0) -> None:
    """Wait until ``proc`` writes ``path``; fail at once if it exits first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"exited with {proc.returncode} before {path.name}:\n"
                                 f"{out[-2000:]}\n{err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {path.name} after {timeout}s")
        time.sleep(0.02)  # polling the marker file, not timing the child


def run_on_terminal(args: list[str], answers: list[tuple[bytes, bytes]],
                    env: Mapping[str, str], timeout: float = 90.0) -> tuple[int, bytes]:
    """Run the CLI on a pseudo-terminal, typing each answer once its prompt shows after the
    last ``Approve``; the exit code and everything the terminal showed."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a terminal
        os.execvpe(sys.executable, [sys.executable, "-m", "orchestrator.cli", *args],
                   dict(env))
    out, pending = b"", list(answers)
    deadline = time.monotonic() + timeout
    poller = select.poll()  # not select(): it fails on a descriptor numbered past 1023
    poller.register(fd, select.POLLIN)
    while time.monotonic() < deadline:
        if not poller.poll(500):
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if pending and pending[0][0] in out.split(b"Approve")[-1]:
            os.write(fd, pending.pop(0)[1])
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out
