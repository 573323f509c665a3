"""Section 4: RSS while ingesting 10k generated chunks, in a fresh subprocess.

The baseline is the RSS when the ingest starts its second batch: by then the model is
loaded and has embedded a full batch, and chromadb has written one, so what is left is what
grows with the amount ingested. Flat = the peak after the baseline is < 150 MB above it and
the second half's peak < the first half's + 50 MB. The rise from before the first batch and
the slope (MB per 1,000 chunks, least squares over the batches) are reported too.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

from orchestrator.evals.bench.figures import Figure
from orchestrator.evals.bench.retrieval.harness import (
    REPO,
    SEED,
    BenchEmbedder,
    Section,
    log,
    minilm,
    timed_ingest,
)
from orchestrator.evals.bench.retrieval.scale import TextGenerator
from orchestrator.retrieval.embedders import Embedder, get_embedder
from orchestrator.retrieval.store import KnowledgeStore

CHUNKS = 10_000
INTERVAL = 0.2
RISE_MB, GROWTH_MB = 150.0, 50.0
REFERENCE = "hash:384"  # no model: what the store itself adds
Samples = Sequence[tuple[float, float]]  # (seconds since start, MB)


def rss_mb() -> float:
    """This process's resident set size in MB, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class RssSampler:
    """Samples RSS every ``interval`` seconds in a thread while the block runs."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[float, float]:
        point = (time.perf_counter() - self.started, rss_mb())
        self.samples.append(point)
        return point

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.started = time.perf_counter()
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        self.samples.sort()  # batch marks are taken from the ingest's thread


class MarkingEmbedder(BenchEmbedder):
    """Takes an RSS sample as each batch starts: (seconds, MB, chunks embedded before)."""

    def __init__(self, inner: Embedder, sampler: RssSampler) -> None:
        super().__init__(inner)
        self.sampler = sampler
        self.marks: list[tuple[float, float, int]] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        seconds, mb = self.sampler.sample()
        self.marks.append((seconds, mb, sum(self.document_calls)))
        return super().embed_documents(texts)


def memory_child(embedder: str) -> dict[str, Any]:
    """Ingest ``CHUNKS`` generated chunks while sampling RSS (run in a subprocess)."""
    sampler = RssSampler()
    marking = MarkingEmbedder(minilm().inner if embedder == "minilm" else get_embedder(embedder),
                              sampler)
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as folder:
        corpus = Path(folder) / "generated.jsonl"
        TextGenerator(SEED).write_jsonl(corpus, CHUNKS)
        store = KnowledgeStore(Path(folder) / "chroma", embedder=marking)
        store.collection_names()  # chromadb loaded before the start
        gc.collect()
        with sampler:
            run = timed_ingest(store, marking, [corpus], "memory")
    return {"embedder": embedder, "ingest": asdict(run), "samples": sampler.samples,
            "marks": marking.marks, "batches": len(marking.document_calls),
            "largest_batch": max(marking.document_calls, default=0)}


def slope_mb_per_1k(marks: Sequence[tuple[float, float, int]]) -> float:
    """Least-squares slope of RSS over chunks ingested, in MB per 1,000 chunks."""
    if len(marks) < 2:
        return float("nan")
    xs, ys = [m[2] / 1000 for m in marks], [m[1] for m in marks]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def verdict(samples: Samples, marks: Sequence[tuple[float, float, int]]) -> dict[str, Any]:
    """The figures of the module docstring."""
    start = samples[0][1]
    base_t, base_mb = (marks[1][0], marks[1][1]) if len(marks) > 1 else samples[0]
    after = [(t, mb) for t, mb in samples if t >= base_t]
    half = (base_t + after[-1][0]) / 2
    first = max(mb for t, mb in after if t <= half)
    second = max((mb for t, mb in after if t > half), default=first)
    peak = max(mb for _, mb in after)
    rise, growth = peak - base_mb, second - first
    return {"start_mb": round(start, 1), "baseline_mb": round(base_mb, 1),
            "peak_mb": round(peak, 1), "end_mb": round(samples[-1][1], 1),
            "rise_mb": round(rise, 1), "rise_from_start_mb": round(peak - start, 1),
            "second_half_growth_mb": round(growth, 1),
            "slope_mb_per_1k": round(slope_mb_per_1k(marks[1:]), 2),
            "flat": rise < RISE_MB and growth < GROWTH_MB}


def run_child(embedder: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "orchestrator.evals.bench.retrieval", "--memory-child", embedder]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=REPO)
    if out.returncode:
        raise RuntimeError(f"memory subprocess failed: {out.stderr.strip()[-800:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result | verdict(result["samples"], result["marks"])


def _thin(samples: Samples, count: int) -> list[tuple[float, float]]:
    if len(samples) <= count:
        return list(samples)
    step = (len(samples) - 1) / (count - 1)
    return [samples[round(i * step)] for i in range(count)]


def bench_memory() -> Section:
    section = Section(f"4. RSS while ingesting {CHUNKS:,} chunks (fresh subprocess each)")
    runs = {}
    for label, embedder in (("MiniLM (the figure)", "minilm"),
                            ("store only: hash embedder, no model", REFERENCE)):
        log(f"memory: ingesting {CHUNKS} chunks with {embedder} in a subprocess, sampling RSS")
        runs[label] = run_child(embedder)
    section.table = [["ingest", "start MB", "baseline MB", "peak MB", "end MB", "rise MB",
                      "2nd-half growth MB", "MB / 1k chunks", "seconds", "flat"]]
    section.table += [[
        label, f"{run['start_mb']:.0f}", f"{run['baseline_mb']:.0f}", f"{run['peak_mb']:.0f}",
        f"{run['end_mb']:.0f}", f"{run['rise_mb']:.0f}", f"{run['second_half_growth_mb']:.0f}",
        f"{run['slope_mb_per_1k']:.1f}", f"{run['ingest']['seconds']:.1f}",
        "yes" if run["flat"] else "NO"] for label, run in runs.items()]
    run = runs["MiniLM (the figure)"]
    section.notes += [
        "start = before the ingest (model loaded); baseline = when the second batch starts "
        "(model warm, one batch embedded and written); rise = peak after the baseline - "
        f"baseline; flat = rise < {RISE_MB:.0f} MB and the second half's peak < the first "
        f"half's + {GROWTH_MB:.0f} MB; sampled every {INTERVAL} s",
        f"MiniLM: {run['batches']} batches of <= {run['largest_batch']} chunks; rise from the "
        f"start, first batch included: {run['rise_from_start_mb']:.0f} MB",
        "MB / 1k chunks = least-squares slope of RSS at each batch start after the baseline; "
        "the store-only row is chromadb's own share (its in-memory HNSW index holds every "
        "vector and its links)",
        "MiniLM RSS over the ingest (s: MB): " + ", ".join(
            f"{t:.0f}: {mb:.0f}" for t, mb in _thin(run["samples"], 12)),
    ]
    section.figures.append(Figure(
        f"RSS rise while ingesting {CHUNKS:,} chunks", run["rise_mb"], "MB",
        f"< {RISE_MB:.0f} (and 2nd-half growth < {GROWTH_MB:.0f})", bool(run["flat"]),
        f"baseline {run['baseline_mb']:.0f}, peak {run['peak_mb']:.0f}, end "
        f"{run['end_mb']:.0f} MB, second-half growth {run['second_half_growth_mb']:.0f} MB, "
        f"{run['slope_mb_per_1k']:.1f} MB per 1,000 chunks"))
    section.data = {label: {k: v for k, v in r.items() if k not in ("samples", "marks")} | {
        "samples": [(round(t, 2), round(mb, 1)) for t, mb in r["samples"]]}
        for label, r in runs.items()}
    return section
