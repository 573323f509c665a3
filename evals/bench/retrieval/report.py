"""The printed report: each section's table and notes, then the targets."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from orchestrator.evals.bench.figures import Figure
from orchestrator.evals.bench.retrieval.harness import Section


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3f}"


def render_table(rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def render(sections: Sequence[Section], figures: Sequence[Figure]) -> str:
    lines: list[str] = []
    for section in sections:
        lines += [section.title, *render_table(section.table)]
        lines += [f"  {note}" for note in section.notes]
        lines.append("")
    rows = [["figure", "measured", "target", "result"]]
    rows += [[f.name, f"{_number(f.value)} {f.unit}".strip(), f"{f.target} {f.unit}".strip(),
              "ok" if f.ok else "MISSED"] for f in figures]
    lines += ["Targets", *render_table(rows), ""]
    lines += [f"{f.name}: {f.detail}" for f in figures if f.detail]
    missed = sum(not f.ok for f in figures)
    load = os.getloadavg()
    lines.append(f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min) on "
                 f"{os.cpu_count()} CPUs; timings include any other load on the machine")
    lines.append(f"\n{len(figures) - missed} of {len(figures)} targets met")
    return "\n".join(lines)
