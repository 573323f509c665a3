"""Server load benchmark: concurrent chat sessions against one ``orchestrator serve``.

Starts one real server process (``python -m orchestrator.cli serve`` on 127.0.0.1, a free
port) over a temporary data folder, with the offline model ``fake:latency=0.2`` (every
model call takes 0.2 s) and the knowledge base off (the figures are the server and the
engine, not the embedder); creates an API key with ``orchestrator keys create`` in that
folder and waits for ``/health``. Then, with httpx's async client:

1. one session alone: ``--baseline`` sequential turns (after one warm-up turn, not
   counted); its median latency is the single-session latency;
2. ``--sessions`` levels (default 50 and 200): that many sessions at once, each on its own
   thread (``X-Thread-Id``) sending ``--turns`` turns one after the other; ``--rounds``
   times (default 3), each round with new sessions, all sent at once again.

Every turn is the demo IT ops request ``web-3 is down: find the root cause and alert the
on-call team``, a plan of two subtasks (diagnostics and notifications, in parallel), so a
turn is at least three model calls on its critical path (plan, agent, answer: 0.6 s of
model time) and the thread's history grows with each turn. Turns alternate between
streamed (SSE) and plain completions, half of each, so both paths are loaded. A turn's
latency is from sending the request to the whole answer (``data: [DONE]`` when streamed).

A turn counts as an error unless it got a 200, a complete stream (no error object, ending
with ``[DONE]``), the thread it asked for, a run that ended ``ok`` and an answer with both
subtasks' findings (the root cause and who was paged). Reported per level: requests per
second (turns / wall time of the level), p50/p95/p99 latency of the answered turns, errors,
the server's CPU time per request, and its memory (``VmRSS`` after the level and ``VmHWM``,
the peak so far, from ``/proc/<pid>/status``), over all the level's rounds; the latency
ratio is printed for each round too.

Why rounds: a round's p95 rests on its slowest few turns, all from the first turns of its 50
sessions, sent in the same millisecond. The machine is shared, and a neighbour's burst in
those two seconds moves that round's figure by a tenth or more; the p95 of three rounds'
turns together is the same load measured on three times the turns.

Targets (issue 13): no error at any level; at 50 sessions, p95 under 1.5 x the
single-session latency. The client runs in this process and the server in its own, so on a
2-core machine each has about a core; the machine is shared, so compare the ratio within
one run.

Run ``python -m orchestrator.evals.bench.server [--json] [--sessions 50,200] [--turns 3]
[--baseline 8] [--rounds 3]``; the exit code is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from orchestrator.evals.bench.figures import Figure
from orchestrator.evals.bench.metrics import percentile
from orchestrator.evals.bench.services import free_port, stop_process

MODEL = "fake:latency=0.2"
REQUEST = "web-3 is down: find the root cause and alert the on-call team"
FINDINGS = ("root cause", "Paged")
"""What a real answer to ``REQUEST`` says: the diagnosis and the page sent."""
LEVELS = (50, 200)
TURNS, BASELINE_TURNS, ROUNDS = 3, 8, 3
P95_RATIO, RATIO_LEVEL = 1.5, 50
START_TIMEOUT_S, REQUEST_TIMEOUT_S = 120.0, 120.0
THREAD_HEADER = "X-Thread-Id"


class BenchError(RuntimeError):
    """The server did not start, or could not be measured."""


# --- the server process ------------------------------------------------------------------------

@dataclass
class Server:
    """A running ``orchestrator serve`` process and a key to call it with."""

    process: subprocess.Popen[bytes]
    url: str
    key: str
    home: Path
    """The server's data folder (removed when the server stops)."""

    def memory_mb(self) -> tuple[float, float]:
        """The process's resident memory now and its peak so far (``VmRSS``, ``VmHWM``)."""
        found = {"VmRSS": float("nan"), "VmHWM": float("nan")}
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                name, _, value = line.partition(":")
                if name in found:
                    found[name] = int(value.split()[0]) / 1024  # kB
        except OSError:
            pass  # not Linux: reported as nan
        return found["VmRSS"], found["VmHWM"]

    def cpu_s(self) -> float:
        """User + system CPU time the process has used (every thread)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_env(home: Path, model: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(ORCHESTRATOR_HOME=str(home), ORCHESTRATOR_MODEL=model,
               ORCHESTRATOR_KNOWLEDGE="0", NO_PROXY="127.0.0.1,localhost")
    return env


def create_key(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "keys", "create", "bench",
                           "--scopes", "chat", "--json"], env=env, capture_output=True,
                          text=True, timeout=120)
    if done.returncode:
        raise BenchError(f"`orchestrator keys create` failed: {done.stderr.strip()[-800:]}")
    key: str = json.loads(done.stdout)["key"]
    return key


@contextmanager
def running_server(model: str = MODEL) -> Iterator[Server]:
    """``orchestrator serve`` on a free port over a fresh data folder, up and answering
    ``/health``; stopped (and its folder removed) on exit."""
    with tempfile.TemporaryDirectory(prefix="orch-server-bench-") as tmp:
        home = Path(tmp)
        env = server_env(home, model)
        key = create_key(env)
        port = free_port()
        log = (home / "server.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        server = Server(process, f"http://127.0.0.1:{port}", key, home)
        try:
            _wait_healthy(server, home / "server.log")
            yield server
        finally:
            stop_process(process, 60)
            log.close()


def _wait_healthy(server: Server, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"the server exited ({server.process.returncode}): "
                             f"{log.read_text(errors='replace')[-1500:]}")
        try:
            if httpx.get(f"{server.url}/health", timeout=5, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise BenchError(f"the server did not answer /health within {START_TIMEOUT_S:.0f} s")


# --- the client -------------------------------------------------------------------------------

@dataclass
class Turn:
    """One chat request as the client saw it."""

    latency_s: float
    streamed: bool
    error: str | None = None
    """Why the turn does not count as answered (None: a real answer)."""
    answer: str = ""


def answer_problem(answer: str, status: str | None) -> str | None:
    """Why ``answer`` (of a run that ended ``status``) is not a real answer to ``REQUEST``."""
    if status != "ok":
        return f"run {status}"
    missing = [word for word in FINDINGS if word not in answer]
    return f"answer lacks {', '.join(map(repr, missing))}" if missing else None


async def read_stream(lines: AsyncIterator[str]) -> tuple[str, str | None, str | None]:
    """The answer text, the run's status and what broke, from a chat completion's SSE
    lines. The status is ``ok`` when the stream ended with a ``stop`` chunk and ``[DONE]``
    after the plan was made and every subtask finished done."""
    text: list[str] = []
    progress: Counter[str] = Counter()
    finished = done = False
    async for line in lines:
        if line.startswith(": orchestrator "):
            event = json.loads(line.removeprefix(": orchestrator "))
            progress[event.get("type", "")] += 1
            if event.get("type") == "subtask_finished" and event.get("status") != "done":
                progress["not done"] += 1
        elif line == "data: [DONE]":
            done = True
        elif line.startswith("data: "):
            payload = json.loads(line.removeprefix("data: "))
            if "error" in payload:
                return "".join(text), None, f"error in stream: {payload['error'].get('message')}"
            for choice in payload.get("choices", []):
                text.append(choice.get("delta", {}).get("content") or "")
                finished |= choice.get("finish_reason") == "stop"
    if not done or not finished:
        return "".join(text), None, "stream ended without a stop chunk and [DONE]"
    ran = progress["plan_made"] == 1 and progress["subtask_finished"] >= 2 \
        and not progress["not done"]
    return "".join(text), "ok" if ran else f"not run whole ({dict(progress)})", None


async def chat(client: httpx.AsyncClient, thread: str, *, stream: bool) -> Turn:
    """One turn of ``REQUEST`` on ``thread``, timed to the whole answer and checked."""
    body = {"model": "orchestrator", "stream": stream,
            "messages": [{"role": "user", "content": REQUEST}]}
    headers = {THREAD_HEADER: thread}
    started = time.perf_counter()
    try:
        if stream:
            async with client.stream("POST", "/v1/chat/completions", json=body,
                                     headers=headers) as response:
                if response.status_code != 200:
                    await response.aread()
                    return _failed(started, stream, response)
                answer, status, broken = await read_stream(response.aiter_lines())
        else:
            response = await client.post("/v1/chat/completions", json=body, headers=headers)
            if response.status_code != 200:
                return _failed(started, stream, response)
            reply = response.json()
            answer = reply["choices"][0]["message"]["content"]
            status, broken = reply.get("orchestrator", {}).get("status"), None
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return Turn(time.perf_counter() - started, stream, f"{type(exc).__name__}: {exc}"[:120])
    latency = time.perf_counter() - started
    if response.headers.get(THREAD_HEADER) != thread:
        broken = f"thread {response.headers.get(THREAD_HEADER)!r}, not {thread!r}"
    return Turn(latency, stream, broken or answer_problem(answer, status), answer)


def _failed(started: float, stream: bool, response: httpx.Response) -> Turn:
    return Turn(time.perf_counter() - started, stream,
                f"HTTP {response.status_code}: {response.text[:100]}")


async def session(client: httpx.AsyncClient, thread: str, turns: int, first_streamed: bool
                  ) -> list[Turn]:
    """``turns`` sequential turns on ``thread``, streamed and plain by turns."""
    return [await chat(client, thread, stream=(i % 2 == 0) == first_streamed)
            for i in range(turns)]


@dataclass
class Level:
    """What one load level measured."""

    sessions: int
    turns: list[Turn]
    wall_s: float
    cpu_ms: float
    """Server CPU time per request."""
    client_cpu_ms: float
    """This process's CPU time per request (the client's work, on the same machine)."""
    rss_mb: float
    peak_rss_mb: float
    errors: Counter[str] = field(default_factory=Counter)
    rounds: list[Level] = field(default_factory=list)
    """The rounds this level pools (empty: one round, this one)."""

    @classmethod
    def pooled(cls, rounds: list[Level]) -> Level:
        """The rounds of one level as one: their turns, wall time and errors together; CPU
        per request over all their turns; memory as the last round left it."""
        if len(rounds) == 1:
            return rounds[0]
        turns = [turn for level in rounds for turn in level.turns]
        errors: Counter[str] = Counter()
        for level in rounds:
            errors.update(level.errors)
        last = rounds[-1]
        return cls(last.sessions, turns, sum(level.wall_s for level in rounds),
                   _per_turn(rounds, "cpu_ms"), _per_turn(rounds, "client_cpu_ms"),
                   last.rss_mb, last.peak_rss_mb, errors, rounds)

    @property
    def latencies(self) -> list[float]:
        return [t.latency_s for t in self.turns if t.error is None]

    @property
    def requests_per_s(self) -> float:
        return len(self.turns) / self.wall_s

    def latency(self, q: float) -> float:
        return percentile(self.latencies, q) if self.latencies else float("nan")


def _per_turn(rounds: list[Level], name: str) -> float:
    """A per-request figure of several rounds, weighted by their turns."""
    return sum(getattr(level, name) * len(level.turns) for level in rounds) / sum(
        len(level.turns) for level in rounds)


CLIENT_KEEPALIVE_S = 2.0
"""How long the client keeps an idle connection: under uvicorn's 5 s keep-alive, so it never
sends a request on a connection the server is closing (with equal timeouts that race lost
one turn of 600 as a ReadError at 200 sessions)."""


def client_for(server: Server, sessions: int) -> httpx.AsyncClient:
    """One connection per session (httpx allows 100 by default), no proxy."""
    return httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {server.key}"},
        timeout=REQUEST_TIMEOUT_S, trust_env=False,
        limits=httpx.Limits(max_connections=sessions, max_keepalive_connections=sessions,
                            keepalive_expiry=CLIENT_KEEPALIVE_S))


async def run_level(server: Server, sessions: int, turns: int, *, label: str = "load"
                    ) -> Level:
    """``sessions`` sessions at once, each ``turns`` turns on a thread of its own."""
    async with client_for(server, sessions) as client:
        cpu, started, own = server.cpu_s(), time.perf_counter(), time.process_time()
        done = await asyncio.gather(*(session(client, f"{label}-{sessions}-{i}", turns,
                                              i % 2 == 0) for i in range(sessions)))
        wall, cpu = time.perf_counter() - started, server.cpu_s() - cpu
        own = time.process_time() - own
    flat = [turn for turns_of_session in done for turn in turns_of_session]
    rss, peak = server.memory_mb()
    errors = Counter(turn.error for turn in flat if turn.error is not None)
    return Level(sessions, flat, wall, cpu / len(flat) * 1000, own / len(flat) * 1000, rss,
                 peak, errors)


async def measure(server: Server, levels: tuple[int, ...] = LEVELS, turns: int = TURNS,
                  baseline_turns: int = BASELINE_TURNS, rounds: int = ROUNDS
                  ) -> tuple[Level, list[Level]]:
    """The single session (after one warm-up turn) and each load level, in order, each
    ``rounds`` times on new sessions (pooled: :meth:`Level.pooled`)."""
    async with client_for(server, 1) as client:
        warm = await chat(client, "warm-up", stream=False)
    if warm.error:
        raise BenchError(f"the warm-up turn failed: {warm.error}")
    single = await run_level(server, 1, baseline_turns, label="single")
    return single, [Level.pooled([await run_level(server, n, turns, label=f"load{r + 1}")
                                  for r in range(rounds)]) for n in levels]


# --- figures ----------------------------------------------------------------------------------

def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def describe(level: Level) -> str:
    errors = "; ".join(f"{e} x{n}" for e, n in level.errors.most_common(3)) or "none"
    streamed = sum(t.streamed for t in level.turns)
    rounds = f" in {len(level.rounds)} rounds" if level.rounds else ""
    return (f"{len(level.turns)} turns{rounds} ({streamed} streamed) in {level.wall_s:.1f} s: "
            f"{level.requests_per_s:.1f} req/s; latency p50/p95/p99 {_ms(level.latency(50))}/"
            f"{_ms(level.latency(95))}/{_ms(level.latency(99))} ms; errors {errors}; server "
            f"CPU {level.cpu_ms:.1f} ms/request (client {level.client_cpu_ms:.1f}), RSS "
            f"{level.rss_mb:.0f} MB (peak {level.peak_rss_mb:.0f} MB)")


def figures(single: Level, levels: list[Level]) -> list[Figure]:
    base = single.latency(50)
    found = [Figure("1 session: latency p50", base * 1000, "ms", "(reported)", True,
                    describe(single))]
    for level in levels:
        n = level.sessions
        errors = sum(level.errors.values())
        found.append(Figure(f"{n} sessions: errors", errors, "requests", "== 0", errors == 0,
                            describe(level)))
        p95 = level.latency(95)
        if n == RATIO_LEVEL:
            ratio = p95 / base
            each = " / ".join(f"{r.latency(95) / base:.2f}" for r in level.rounds)
            found.append(Figure(f"{n} sessions: p95 / single-session p50", ratio, "x",
                                f"< {P95_RATIO:.2f}", ratio < P95_RATIO,
                                f"{_ms(p95)} ms vs {_ms(base)} ms"
                                + (f"; rounds alone {each} x" if each else "")))
        else:
            found.append(Figure(f"{n} sessions: latency p95", p95 * 1000, "ms", "(reported)",
                                True, f"{p95 / base:.2f} x the single-session p50"))
        found.append(Figure(f"{n} sessions: throughput", level.requests_per_s, "req/s",
                            "(reported)", True, ""))
        found.append(Figure(f"{n} sessions: server RSS", level.rss_mb, "MB", "(reported)",
                            True, f"peak {level.peak_rss_mb:.0f} MB (VmHWM)"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.evals.bench.server",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")
    parser.add_argument("--sessions", default=",".join(map(str, LEVELS)),
                        help="concurrent sessions per level, comma-separated")
    parser.add_argument("--turns", type=int, default=TURNS, help="turns per session")
    parser.add_argument("--baseline", type=int, default=BASELINE_TURNS,
                        help="turns of the single session")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help="rounds of each level, each on new sessions (pooled)")
    parser.add_argument("--model", default=MODEL, help="the server's model spec")
    args = parser.parse_args(argv)
    levels = tuple(int(n) for n in args.sessions.split(",") if n.strip())
    with running_server(args.model) as server:
        single, loads = asyncio.run(measure(server, levels, max(args.turns, 1),
                                            max(args.baseline, 1), max(args.rounds, 1)))
    found = figures(single, loads)
    ok = all(f.ok for f in found)
    if args.json:
        out = [{**asdict(f), "value": round(f.value, 4)} for f in found]
        print(json.dumps({"ok": ok, "figures": out, "load_average": os.getloadavg()},
                         indent=2))
    else:
        from orchestrator.evals.bench.engine import render

        print(render(found))
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
