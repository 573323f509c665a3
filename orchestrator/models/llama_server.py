"""llama.cpp's OpenAI-compatible server for a GGUF file, in a child process.

The server comes from the ``xllamacpp`` wheel (llama.cpp's own ``llama-server`` as a Python
extension). It runs in a child process because it has no stop method and holds the
model's memory: the child ends when the parent asks (SIGTERM), when the parent's end of
its stdin pipe closes (the parent died), or at the parent's exit. One server is started
per set of launch options and shared by every model built in the process.

Run directly (``python -m orchestrator.models.llama_server MODEL.gguf --ctx 8192``) it
serves in the foreground and prints ``READY <url>`` once the model is loaded.
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError

READY = "READY "
ALIAS = "local"
"""The model id the server answers to (``/v1/models``)."""


@dataclass(frozen=True)
class LaunchOptions:
    """How the server is started; equal options share one server."""

    model: Path
    ctx: int = 8192
    """Context tokens, split between the slots (the model's own 32k costs memory)."""
    threads: int = 2
    parallel: int = 1
    """Requests decoded at once (slots); more queue at the server."""
    cache_mib: int = 256
    """llama.cpp's in-memory prompt cache (its default, 8 GiB, is too much for a small
    machine)."""


@dataclass
class _Running:
    process: subprocess.Popen[str]
    url: str
    log: Path


_servers: dict[LaunchOptions, _Running] = {}
_lock = threading.Lock()


def server_url(options: LaunchOptions, log_dir: Path, *, wait_s: float = 300.0) -> str:
    """The base URL (``http://127.0.0.1:PORT``) of a server for ``options``, started once.

    Raises:
        ConfigError: ``xllamacpp`` is missing, or the server did not start (the message
            names its log file and the last line it wrote).
    """
    with _lock:
        running = _servers.get(options)
        if running is not None and running.process.poll() is None:
            return running.url
        running = _start(options, log_dir, wait_s)
        _servers[options] = running
        return running.url


def stop_servers() -> None:
    """Stop every server this process started (also run at exit)."""
    with _lock:
        servers = list(_servers.values())
        _servers.clear()
    for running in servers:
        _stop(running.process)


atexit.register(stop_servers)


def _start(options: LaunchOptions, log_dir: Path, wait_s: float) -> _Running:
    import importlib.util

    if importlib.util.find_spec("xllamacpp") is None:
        raise ConfigError("local models need llama.cpp's server from the xllamacpp package: "
                          "pip install 'agent-orchestrator[local]'")
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"llama-server-{options.model.stem}.log"
    command = [sys.executable, "-m", "orchestrator.models.llama_server", str(options.model),
               "--ctx", str(options.ctx), "--threads", str(options.threads),
               "--parallel", str(options.parallel), "--cache-mib", str(options.cache_mib)]
    # PASSIVE: OpenMP threads sleep instead of spinning, or generation on a busy machine
    # drops about tenfold.
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    with log.open("w") as err:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=err, text=True, env=env, start_new_session=True)
    url = _wait_ready(process, wait_s)
    if url is None:
        _stop(process)
        last = _last_line(log)
        raise ConfigError(f"llama.cpp's server did not start for {options.model.name}"
                          f"{': ' + last if last else ''} (log: {log})")
    return _Running(process, url, log)


def _wait_ready(process: subprocess.Popen[str], wait_s: float) -> str | None:
    found: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(READY):
                found.append(line[len(READY):].split()[0])
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(wait_s)
    return found[0] if found else None


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


def _last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    meaningful = [line for line in lines if line and not line.startswith(("llama_", "load"))]
    return (meaningful or lines or [""])[-1][:300]


# --- the child -------------------------------------------------------------------------


def serve(options: LaunchOptions) -> None:
    """Load the model, print ``READY <url>``, serve until SIGTERM or stdin closes."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(options.model)
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # a free port, read back from listening_address
    params.n_ctx = options.ctx
    params.n_parallel = options.parallel
    params.cpuparams.n_threads = options.threads
    params.cpuparams_batch.n_threads = options.threads
    params.use_jinja = True
    params.cache_ram_mib = options.cache_mib
    params.n_gpu_layers = 0
    params.model_alias = {ALIAS}
    started = time.monotonic()
    server = xllamacpp.Server(params)
    print(f"{READY}{server.listening_address} load_s={time.monotonic() - started:.1f}",
          flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    sys.stdin.read()  # returns when the parent closes the pipe or dies
    os._exit(0)  # the server has no stop method; the process ends with it


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.models.llama_server",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("model", type=Path)
    parser.add_argument("--ctx", type=int, default=LaunchOptions.ctx)
    parser.add_argument("--threads", type=int, default=LaunchOptions.threads)
    parser.add_argument("--parallel", type=int, default=LaunchOptions.parallel)
    parser.add_argument("--cache-mib", type=int, default=LaunchOptions.cache_mib)
    args = parser.parse_args(argv)
    serve(LaunchOptions(args.model, args.ctx, args.threads, args.parallel, args.cache_mib))


if __name__ == "__main__":
    main()
