"""Eval outputs: ``results.jsonl``, ``summary.json``, a self-contained ``report.html``."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.evals.runner import CaseRecord

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2330;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #dde}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #dde;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f3f4f8}.pass{color:#17794a}.fail{color:#b3261e}
.num{text-align:right}.grid{display:flex;gap:32px;flex-wrap:wrap}details{margin:6px 0}
pre{background:#f6f7fa;padding:8px;overflow-x:auto;font-size:12px;max-height:420px}
"""


def write_outputs(out: Path, records: Sequence[CaseRecord], summary: dict[str, Any],
                  comparison: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write the three files into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.jsonl", "summary": out / "summary.json",
             "report": out / "report.html"}
    with paths["results"].open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record.to_dict(), default=str) + "\n")
    full = dict(summary, **({"baseline": comparison} if comparison else {}))
    paths["summary"].write_text(json.dumps(full, indent=2, default=str), "utf-8")
    paths["report"].write_text(render_html(records, summary, comparison), "utf-8")
    return paths


def render_html(records: Sequence[CaseRecord], summary: dict[str, Any],
                comparison: dict[str, Any] | None = None) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Eval report</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>Eval report: {e(str(summary['model']))}</h1>", _summary_table(summary)]
    if comparison:
        parts.append(_comparison(comparison))
    parts.append("<h2>Pass rate by domain and tag</h2><div class='grid'>")
    for title, key in (("domain", "by_domain"), ("tag", "by_tag")):
        parts.append(_bars(title, {k: v["pass_rate"] for k, v in summary[key].items()}, 1.0,
                           "{:.0%}"))
    parts.append("</div><h2>Scorers</h2>")
    parts.append(_table(["scorer", "applied", "pass rate", "mean value"],
                        [[k, v["applied"], f"{v['pass_rate']:.0%}", f"{v['mean_value']:.3f}"]
                         for k, v in summary["scorers"].items()]))
    parts.append("<h2>Routing confusion matrix</h2><p>Rows: expected agent; columns: agent "
                 f"used. Precision {summary['routing']['precision']:.3f}, recall "
                 f"{summary['routing']['recall']:.3f}.</p>")
    parts.append(_matrix(summary["routing"]))
    parts.append("<h2>Latency and tokens per run</h2><div class='grid'>")
    parts.append(_histogram("wall time (s)", [r.elapsed_s for r in records]))
    parts.append(_histogram("tokens", [r.input_tokens + r.output_tokens for r in records]))
    parts.append("</div>")
    parts.append(_failures(records))
    parts.append("</body></html>")
    return "\n".join(parts)


def _summary_table(s: dict[str, Any]) -> str:
    rows: list[list[Any]] = [["cases / runs", f"{s['cases']} / {s['runs']}"],
            ["pass@1", f"{s['pass_at_1']:.1%}"],
            [f"pass^{s['repeat']}", f"{s['pass_hat_k']:.1%}"],
            ["unexpected failures", len(s["unexpected_failures"])],
            ["said ok, database disagrees", len(s.get("false_ok", []))],
            ["known failures", len(s["known_failures"])],
            ["LLM calls (mean / total)", f"{s['llm_calls']['mean']} / {s['llm_calls']['total']}"],
            ["tokens (mean / total)", f"{s['tokens']['mean']} / {s['tokens']['total']}"],
            ["estimated cost ($)", f"{s['cost']['total']:.4f}"],
            ["wall time p50 / p95 (s)", f"{s['latency_s']['p50']} / {s['latency_s']['p95']}"]]
    return _table(["metric", "value"], rows)


def _comparison(c: dict[str, Any]) -> str:
    rows = [[k, v["baseline"], v["now"], f"{v['delta']:+g}"] for k, v in c["deltas"].items()]
    verdict = "<p class='pass'>Gate: passed</p>" if c["ok"] else "<p class='fail'>Gate: " + \
        html.escape("; ".join(c["violations"])) + "</p>"
    extra = (f"<p>Newly failing: {html.escape(', '.join(c['newly_failing']) or 'none')}. "
             f"Newly passing: {html.escape(', '.join(c['newly_passing']) or 'none')}.</p>")
    return "<h2>Against the baseline</h2>" + verdict + _table(
        ["metric", "baseline", "now", "delta"], rows) + extra


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _matrix(routing: dict[str, Any]) -> str:
    labels = routing["labels"]
    head = "<tr><th>expected \\ used</th>" + "".join(
        f"<th>{html.escape(x)}</th>" for x in labels) + "</tr>"
    rows = "".join(
        f"<tr><th>{html.escape(label)}</th>" + "".join(
            f"<td class='num' style='background:{_shade(n, i == j)}'>{n or ''}</td>"
            for j, n in enumerate(row)) + "</tr>"
        for i, (label, row) in enumerate(zip(labels, routing["matrix"], strict=True)))
    return f"<table>{head}{rows}</table>"


def _shade(n: int, diagonal: bool) -> str:
    if not n:
        return "#fff"
    alpha = min(0.15 + n / 20, 0.8)
    return f"rgba(23,121,74,{alpha:.2f})" if diagonal else f"rgba(179,38,30,{alpha:.2f})"


def _bars(title: str, values: dict[str, float], top: float, fmt: str) -> str:
    height = 22 * len(values) + 10
    bars = []
    for i, (label, value) in enumerate(values.items()):
        width = 260 * (value / top if top else 0)
        y = 22 * i + 4
        bars.append(f"<text x='0' y='{y + 13}' font-size='12'>{html.escape(label)}</text>"
                    f"<rect x='150' y='{y}' width='{width:.1f}' height='16' fill='#3b6fd4'/>"
                    f"<text x='{155 + width:.1f}' y='{y + 13}' font-size='12'>"
                    f"{fmt.format(value)}</text>")
    return (f"<figure><figcaption>by {html.escape(title)}</figcaption>"
            f"<svg width='470' height='{height}'>{''.join(bars)}</svg></figure>")


def _histogram(title: str, values: Sequence[float], bins: int = 12) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - low) / span * bins))] += 1
    peak = max(counts)
    bars = "".join(
        f"<rect x='{10 + i * 34}' y='{150 - 130 * c / peak:.1f}' width='30' "
        f"height='{130 * c / peak:.1f}' fill='#8a63d2'><title>{c}</title></rect>"
        for i, c in enumerate(counts))
    axis = (f"<text x='10' y='168' font-size='11'>{low:g}</text>"
            f"<text x='{bins * 34 - 30}' y='168' font-size='11'>{high:g}</text>")
    return (f"<figure><figcaption>{html.escape(title)} (n={len(values)})</figcaption>"
            f"<svg width='{bins * 34 + 20}' height='175'>{bars}{axis}</svg></figure>")


def _failures(records: Sequence[CaseRecord]) -> str:
    failed = [r for r in records if not r.passed]
    if not failed:
        return "<h2>Failed cases</h2><p>None.</p>"
    items = []
    for r in failed:
        problems = "; ".join(f"{s.name}: {s.detail or 'failed'}" for s in r.scores if not s.passed)
        known = f" <em>(known: {html.escape(r.known_failure)})</em>" if r.known_failure else ""
        items.append(
            f"<details><summary class='fail'>{html.escape(r.case_id)} #{r.repeat}: "
            f"{html.escape(problems or r.error or 'failed')}{known}</summary>"
            f"<p>Answer: {html.escape(r.answer[:600])}</p>"
            f"<pre>{html.escape(json.dumps(r.trace, indent=1, default=str)[:20000])}</pre>"
            "</details>")
    return f"<h2>Failed cases ({len(failed)})</h2>" + "".join(items)
