"""The planner's shortlist: in a large catalog, the agents likely to matter for a request.

Every agent's catalog line goes into every planning prompt, so a catalog of many agents
makes each plan slow on a small local model and buries the few agents that fit. When the
catalog has more agents than ``planner_shortlist``, the planner sees only that many: the
agents whose cards (description, skills, tool descriptions) are closest in meaning to the
request, by the knowledge base's own embedding model, with each part of the request given
its closest agent first. Agents the request names and agents of a playbook that matches it
are always kept. A smaller catalog is shown whole and nothing is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from orchestrator.agents.spec import AgentSpec
from orchestrator.playbooks import find_for_event, find_for_request
from orchestrator.state import EngineContext

__all__ = ["named_agents", "playbook_agents", "shortlist"]

_CLAUSE = re.compile(r"[.;:!?\n]+|,|\b(?:and|then|also)\b", re.IGNORECASE)
_MAX_QUERIES = 12


def shortlist(ctx: EngineContext, queries: Sequence[str], *, keep: Iterable[str] = (),
              among: Sequence[AgentSpec] | None = None) -> list[AgentSpec]:
    """At most ``ctx.shortlist_size`` of ``among`` (default: every agent), in catalog
    order: ``keep`` (those among them) first, then for each part of each query the closest
    agent, then the closest overall (only those within ``ctx.shortlist_spread`` of the
    closest, when the model sets one). All of ``among`` when it is not larger than the
    setting (no embedding then). Blocks while it embeds: call it off the event loop."""
    candidates = list(ctx.agents.values()) if among is None else list(among)
    limit = ctx.shortlist_size
    if len(candidates) <= limit:
        return candidates
    names = {spec.name for spec in candidates}
    picked = [name for name in dict.fromkeys(keep) if name in names]
    parts = query_parts(queries)
    if parts and len(picked) < limit:
        embedder = ctx.embedder()
        cards = ctx.card_vectors(embedder)
        queries_m = _unit(embedder.embed_documents(parts))
        scores = [dict.fromkeys(names, 0.0) for _ in parts]
        for spec in candidates:
            best = (queries_m @ _unit(cards[spec.name]).T).max(axis=1)
            for row, value in zip(scores, best.tolist(), strict=True):
                row[spec.name] = value
        for row in scores:  # each part of the request gets its closest agent first
            best = max((n for n in row if n not in picked), key=row.__getitem__, default=None)
            if best is not None and len(picked) < limit:
                picked.append(best)
        overall = {name: max(row[name] for row in scores) for name in names}
        spread = ctx.shortlist_spread
        floor = max(overall.values()) - spread if spread is not None else float("-inf")
        for name in sorted(overall, key=lambda n: -overall[n]):
            if len(picked) >= limit or overall[name] < floor:
                break
            if name not in picked:
                picked.append(name)
    chosen = set(picked)
    # Catalog order, not rank: the prompt's catalog then shares its start across requests.
    return [spec for spec in candidates if spec.name in chosen]


def query_parts(queries: Sequence[str]) -> list[str]:
    """What to compare with the cards: each query whole, then its clauses (a request that
    asks for four things needs the agent for each, not four of the agent for the first)."""
    parts: list[str] = []
    for query in queries:
        text = query.strip()
        if not text:
            continue
        parts.append(text)
        clauses = [c.strip() for c in _CLAUSE.split(text) if len(c.strip().split()) >= 2]
        if len(clauses) > 1:
            parts.extend(clauses)
    return list(dict.fromkeys(parts))[:_MAX_QUERIES]


def named_agents(text: str, agents: Iterable[str]) -> list[str]:
    """The agents ``text`` names ("incident_log", or "incident log"), in catalog order."""
    lowered = text.lower()
    return [name for name in agents if any(
        re.search(rf"(?<![\w-]){re.escape(form)}(?![\w-])", lowered)
        for form in {name, name.replace("_", " ")})]


def playbook_agents(ctx: EngineContext, request: str, event: str | None = None) -> list[str]:
    """The agents of the playbook that matches the event or request, if one does."""
    if event:
        playbook = find_for_event(ctx.playbooks, event)
        return playbook.agents if playbook is not None else []
    found = find_for_request(ctx.playbooks, request)
    return found[0].agents if found is not None else []


def _unit(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)
