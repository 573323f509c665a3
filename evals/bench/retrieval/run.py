"""``python -m orchestrator.evals.bench.retrieval``: every section, the report, the exit code."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from orchestrator.evals.bench.figures import Figure
from orchestrator.evals.bench.retrieval import __doc__ as DESCRIPTION
from orchestrator.evals.bench.retrieval.fusions import bench_fusions
from orchestrator.evals.bench.retrieval.harness import SCIFACT_DIR, Section, log, minilm
from orchestrator.evals.bench.retrieval.it_ops import bench_it_ops
from orchestrator.evals.bench.retrieval.memory import bench_memory, memory_child
from orchestrator.evals.bench.retrieval.report import render
from orchestrator.evals.bench.retrieval.scale import DEFAULT_SIZES, bench_scale
from orchestrator.evals.bench.retrieval.scifact import bench_scifact


def _guard(name: str, measure: Callable[[], Section]) -> Section:
    """The section, or one that reports its error as a missed figure; the rest still runs."""
    try:
        return measure()
    except Exception as exc:
        log(f"{name}: ERROR {type(exc).__name__}: {exc}")
        return Section(name, notes=[f"ERROR {type(exc).__name__}: {exc}"],
                       figures=[Figure(name, float("nan"), "", "runs", False,
                                       f"ERROR {type(exc).__name__}: {exc}")])


def run_all(args: argparse.Namespace) -> list[Section]:
    embedder = minilm()
    sections: list[Section] = []
    scifact = it_ops = Section("")
    if not args.skip_scifact:
        scifact = _guard("SciFact", lambda: bench_scifact(embedder, args.scifact))
        sections.append(scifact)
    it_ops = _guard("IT ops labelled set", lambda: bench_it_ops(embedder))
    sections.append(it_ops)
    sections.append(_guard("fusions", lambda: bench_fusions(scifact.data, it_ops.data)))
    if not args.skip_scale:
        sections.append(_guard("scale", lambda: bench_scale(embedder, args.sizes)))
    if not args.skip_memory:
        sections.append(_guard("memory", bench_memory))
    return sections


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --sizes {text!r}: use e.g. 1000,10000") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("--sizes needs positive chunk counts")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.evals.bench.retrieval",
                                     description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")
    parser.add_argument("--sizes", type=_sizes, default=list(DEFAULT_SIZES),
                        help="chunk counts for the scale section (default 1000,10000,100000)")
    parser.add_argument("--skip-scale", action="store_true", help="skip section 3")
    parser.add_argument("--skip-memory", action="store_true", help="skip section 4")
    parser.add_argument("--skip-scifact", action="store_true", help="skip section 1")
    parser.add_argument("--scifact", type=Path, default=SCIFACT_DIR,
                        help=f"the BEIR SciFact folder (default {SCIFACT_DIR})")
    parser.add_argument("--memory-child", metavar="EMBEDDER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return 0
    sections = run_all(args)
    figures = [f for s in sections for f in s.figures]
    ok = bool(figures) and all(f.ok for f in figures)
    if args.json:
        out = [{**asdict(f), "value": None if math.isnan(f.value) else round(f.value, 4)}
               for f in figures]
        print(json.dumps({"ok": ok, "figures": out,
                          "sections": {s.title: {"data": s.data, "notes": s.notes}
                                       for s in sections}}, indent=2, default=str))
    else:
        print(render(sections, figures))
    return 0 if ok else 1
