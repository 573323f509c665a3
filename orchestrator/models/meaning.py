"""What the offline rules model knows besides the prompt: meaning, and the agents' tools.

A real model brings two things to a plan that the rules model lacks: a sense of what words
mean ("is api-1 ok?" is about service health), and knowledge of what the ids in a request
are (web-4 is a service, tx-1004 a transaction). The engine offers the rules model the
embedding model the knowledge base already loads (for the first) and each agent's tools as
data (for the second: their JSON schemas say which ids and values they take).

Without an embedding model (the knowledge base is off, the hashing test embedder, or a
model that fails to load) :class:`AgentRouter` falls back to word overlap, as the rules
model routed before it knew meaning.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from orchestrator.agents.policy import non_null
from orchestrator.text_match import find_pattern, overlap_score

logger = logging.getLogger(__name__)

CatalogEntry = tuple[str, str, str, str, str]
"""(name, description, skills, read tools, change tools) of one agent."""
Catalog = list[CatalogEntry]
"""(name, description, skills, read tools, change tools) per agent (the planner's catalog)."""
AgentTools = Mapping[str, Sequence[dict[str, Any]]]
"""Agent name -> its tools in OpenAI format (name, description, JSON-schema parameters)."""

CONFIDENT = 0.42
"""The fit (cosine similarity, all-MiniLM-L6-v2, plus a little for words in common) a clause
needs with an agent to be given to it."""
CONFIDENT_WITH_ID = 0.25
"""The same when the agent's tools take an id the clause names (web-4 is a service): the id
already says which part of the business it is about."""
QUESTION_EASING = 0.07
"""How much less a question needs: it is answered with tools that only read, so a wrong
agent costs a useless answer, not a wrong change."""
OVERLAP_WEIGHT = 0.03
OVERLAP_CAP = 0.15
"""Words in common with the card (name x3, skills x2, description x1) add this much each,
up to the cap: a skill named outright is strong evidence that meaning alone can miss."""
ENUM_CONFIDENT = 0.4
ENUM_MARGIN = 0.1
"""An enum value chosen by meaning ("a heart doctor" -> cardiology) must fit this well, and
this much better than the next value; else it is not chosen (no orthopedics -> cardiology)."""
IDENTIFIER = re.compile(r"(?<![\w-])[A-Za-z][A-Za-z0-9]*(?:[-_][A-Za-z0-9]+)*[-_][0-9]"
                        r"[A-Za-z0-9]*(?![\w-])")
"""An id as requests write them: a word, '-' or '_', a part that starts with a digit (web-3,
sku-12, INC-2041, o_1010), the shape the planner checks plans against. Tool schemas say
which ids a tool takes; this only finds candidates in free text."""
_EXAMPLE = re.compile(r"\be\.?g\.?,?\s+([A-Za-z][\w-]*)", re.IGNORECASE)


class Meaning:
    """Cosine similarity of texts by an embedding model (``embed_documents``), with the
    vectors of texts seen before kept (agent cards are embedded once per process)."""

    def __init__(self, embedder: Any, *, cache_size: int = 4096) -> None:
        self.embedder = embedder
        self.cache_size = cache_size
        self._vectors: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()  # one embedding batch at a time: no double work
        self.broken = False
        """Set when the model failed (to load or to embed): callers fall back to overlap."""

    def similarities(self, query: str, texts: Sequence[str]) -> list[float] | None:
        """Cosine similarity of ``query`` with each of ``texts``; None if the model failed."""
        vectors = self._embed([query, *texts])
        if vectors is None:
            return None
        import numpy as np  # with torch wherever an embedding model runs

        return [float(x) for x in np.stack(vectors[1:]) @ vectors[0]] if texts else []

    def _embed(self, texts: list[str]) -> list[Any] | None:
        """Unit vectors (numpy) of ``texts``, embedding only those not seen before."""
        if self.broken:
            return None
        with self._model_lock:
            with self._lock:
                missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
            if missing:
                try:
                    fresh = self.embedder.embed_documents(missing)
                except Exception as exc:  # a model that cannot load must not fail the run
                    logger.warning("the offline model routes by word overlap: its embedding "
                                   "model failed (%s: %s)", type(exc).__name__, exc)
                    self.broken = True
                    return None
                import numpy as np

                unit = []
                for vector in fresh:
                    array = np.asarray(vector, dtype=np.float32)
                    norm = float(np.linalg.norm(array))
                    unit.append(array / norm if norm else array)
                with self._lock:
                    if len(self._vectors) + len(missing) > self.cache_size:
                        self._vectors.clear()
                    self._vectors.update(zip(missing, unit, strict=True))
            with self._lock:
                return [self._vectors[t] for t in texts]


def meaning_for(embedder: Any) -> Meaning | None:
    """A :class:`Meaning` over ``embedder``, or None when it has no sense of meaning: none
    at all, or the hashing embedder of unit tests (it hashes words; overlap does that
    better, with stems)."""
    if embedder is None or not callable(getattr(embedder, "embed_documents", None)):
        return None
    if str(getattr(embedder, "name", "")).startswith("hash"):
        return None
    with _shared_lock:  # one vector cache per embedding model, for every orchestrator
        found = _shared.get(id(embedder))
        if found is None or found.embedder is not embedder:
            found = _shared[id(embedder)] = Meaning(embedder)
        return found


_shared: dict[int, Meaning] = {}
_shared_lock = threading.Lock()


def humanize(name: str) -> str:
    return name.replace("_", " ").strip()


def identifiers(text: str) -> list[str]:
    """The distinct ids ``text`` names, lowercased, in order."""
    return list(dict.fromkeys(m.lower() for m in IDENTIFIER.findall(text)))


def id_fit(clause: str, tools: Sequence[dict[str, Any]]) -> int:
    """How well the tools' schemas take the ids and values the clause names: 2 when a
    parameter's pattern takes one and starts with its prefix (``^sku-``) or its description's
    example shares it ("e.g. web-3" for web-4), 1 when only a general pattern takes it, 0
    when no parameter takes any."""
    best = 0
    for tool in tools:
        for prop in tool.get("function", tool).get("parameters", {}).get("properties",
                                                                          {}).values():
            schema = non_null(prop)
            pattern = schema.get("pattern")
            if not pattern or schema.get("type") not in (None, "string"):
                continue
            literal = re.match(r"[A-Za-z0-9]+[-_]", pattern.removeprefix("^"))
            examples = [_prefix(e) for e in _EXAMPLE.findall(str(prop.get("description", "")))]
            for found in find_pattern(pattern, clause):
                if not re.search(r"[\d_-]", found):
                    continue  # a plain word is not an id, whatever a loose pattern takes
                found = found.lower()
                prefix = _prefix(found)
                specific = bool(prefix) and (
                    (literal is not None and literal.group(0).lower() == prefix)
                    or prefix in examples)
                best = max(best, 2 if specific else 1)
    return best


def _prefix(identifier: str) -> str:
    """'sku-' for sku-12, 'inc_' for INC_7: the word an id starts with."""
    found = re.match(r"[A-Za-z][A-Za-z0-9]*[-_]", identifier)
    return found.group(0).lower() if found else ""


def lookup_tool(tools: Sequence[dict[str, Any]], target: str) -> dict[str, Any] | None:
    """A tool that finds records by a name or free-text query: its required parameters are
    all free strings (no pattern, no enum) and one is named or described as a name, query
    or search term. Read from the schemas; ``target`` (the tool that needs an id) is not one."""
    for tool in tools:
        fn = tool["function"]
        if fn["name"] == target:
            continue
        params = fn.get("parameters", {})
        props = params.get("properties", {})
        required = params.get("required", [])
        if not required or any(
                non_null(props.get(r, {})).get("type") != "string" or "pattern" in
                non_null(props.get(r, {})) or "enum" in non_null(props.get(r, {}))
                for r in required):
            continue
        if any(re.search(r"\b(?:name|query|search|term|keyword|text)s?\b", f"{humanize(r)} "
                         f"{props[r].get('description', '')}", re.IGNORECASE)
               for r in required):
            return tool
    return None


@dataclass
class Routed:
    """The agent a clause went to (None: no agent with confidence) and how well it fit."""

    agent: str | None
    score: float
    closest: str | None = None
    """The best-fitting agent, even when it did not fit well enough."""


@dataclass
class AgentRouter:
    """Gives a clause to the agent that fits it: by meaning (the clause against each agent's
    description, skills and tools) among the agents whose tools take the ids the clause
    names, when an embedding model is at hand; by word overlap otherwise."""

    catalog: Catalog
    meaning: Meaning | None = None
    tools: AgentTools = field(default_factory=dict)
    last: Routed | None = None
    """The most recent routing that found no agent: what the refusal names."""
    _warm: bool = True
    _pending: list[str] = field(default_factory=list)

    @property
    def by_meaning(self) -> bool:
        return self.meaning is not None and not self.meaning.broken

    def prefetch(self, texts: Sequence[str]) -> None:
        """The clauses a plan will route: the first look-up by meaning embeds them all in
        one batch (one model pass, not one each)."""
        self._pending = [t for t in texts if t]

    def best(self, clause: str, min_score: int = 1, *, needs_reads: bool = False,
             needs_changes: bool = False) -> str | None:
        """The best-fitting agent; for a question, one that has a tool that reads, if any
        fits; with ``needs_changes``, only agents with a tool that changes things."""
        entries = [e for e in self.catalog
                   if not (needs_reads and e[4] and not e[3])
                   and not (needs_changes and not e[4])]
        if self.by_meaning and not _plain(clause, entries):
            routed = self._by_meaning(clause, entries, strict=min_score > 1,
                                      question=needs_reads)
            if routed is not None:
                if routed.agent is None:
                    self.last = routed
                return routed.agent
        return _by_overlap(clause, entries, min_score)

    def _by_meaning(self, clause: str, entries: Catalog, strict: bool, question: bool = False
                    ) -> Routed | None:
        found = self.scores(clause, entries)
        if found is None:
            return None
        scores, top = found
        best = max(scores, key=lambda n: scores[n])
        needed = (CONFIDENT_WITH_ID if top else CONFIDENT) + (0.1 if strict else 0.0) - (
            QUESTION_EASING if question else 0.0)
        if scores[best] < needed:
            return Routed(None, scores[best], best)
        return Routed(best, scores[best], best)

    def scores(self, clause: str, entries: Catalog) -> tuple[dict[str, float], int] | None:
        """How well the clause fits each of ``entries`` whose tools take the ids it names
        best (the others are left out), and that id fit (:func:`id_fit`); None without a
        working embedding model."""
        if not entries or self.meaning is None:
            return None
        fits = {e[0]: id_fit(clause, self.tools.get(e[0], ())) for e in entries}
        top = max(fits.values(), default=0)
        if top:
            entries = [e for e in entries if fits[e[0]] == top]
        pieces = {e[0]: self._pieces(e) for e in (self.catalog if self._warm else entries)}
        self._warm = False  # the first call embeds every card at once, in one batch
        texts = [p for ps in pieces.values() for p in ps]
        pending, self._pending = self._pending, []
        found = self.meaning.similarities(clause, [*texts, *pending])
        if found is None:
            return None
        by_text = dict(zip(texts, found[:len(texts)], strict=True))
        scores: dict[str, float] = {}
        for entry in entries:
            near = [by_text[p] for p in pieces[entry[0]]]
            # The closest piece says most; the whole card breaks near ties; words in common
            # with the card add a little.
            words = overlap_score(clause, [(entry[0], 3), (entry[2], 2), (entry[1], 1)])
            scores[entry[0]] = 0.8 * max(near[1:], default=near[0]) + 0.2 * near[0] + \
                min(OVERLAP_CAP, OVERLAP_WEIGHT * words)
        return scores, top

    def _pieces(self, entry: tuple[str, str, str, str, str]) -> list[str]:
        """The agent's whole card first, then each thing it says it does."""
        name, description, skills, reads, changes = entry
        tools = [t for t in self.tools.get(name, ())
                 if t.get("function", t).get("name") != "retrieve"]
        tool_texts = [tool_text(t) for t in tools] or [
            humanize(t) for t in f"{reads},{changes}".split(",")
            if t.strip() and t.strip() != "retrieve"]
        card = f"{humanize(name)}: {description} Skills: {skills}."
        return [card, description, *[s.strip() for s in skills.split(",") if s.strip()],
                *tool_texts]


def tool_text(tool: dict[str, Any]) -> str:
    """A tool's name in words and the first sentence of its description."""
    fn = tool.get("function", tool)
    first = re.split(r"(?<=[.!?])\s", str(fn.get("description", "")).strip(), maxsplit=1)[0]
    return f"{humanize(fn['name'])}: {first}" if first else humanize(fn["name"])


PLAIN_OVERLAP = 5
PLAIN_MARGIN = 3
"""A clause that names one agent's name or skills outright (overlap at least this, and this
much more than any other agent's) is routed by overlap alone: no model is needed for "log
the incident", and the first plan of a process does not wait for one to load."""


def _plain(clause: str, entries: Catalog) -> bool:
    return _plain_fit(clause, tuple(entries))


def _by_overlap(clause: str, entries: Catalog, min_score: int) -> str | None:
    return _best_overlap(clause, tuple(entries), min_score)


# Cached on the clause and the cards (both immutable): a plan routes each clause two or
# three times (to split it, then to pick an agent for it), and a conversation's plans route
# the same clauses over the same catalog again.
@lru_cache(maxsize=4096)
def _plain_fit(clause: str, entries: tuple[CatalogEntry, ...]) -> bool:
    scores = sorted((overlap_score(clause, [(e[0], 3), (e[2], 2), (e[1], 1)]) for e in entries),
                    reverse=True)
    if not scores:
        return False
    second = scores[1] if len(scores) > 1 else 0
    return scores[0] >= PLAIN_OVERLAP and scores[0] - second >= PLAIN_MARGIN


@lru_cache(maxsize=4096)
def _best_overlap(clause: str, entries: tuple[CatalogEntry, ...], min_score: int
                  ) -> str | None:
    best, best_score = None, min_score - 1
    for name, description, skills, _reads, _changes in entries:
        score = overlap_score(clause, [(name, 3), (skills, 2), (description, 1)])
        if score > best_score:
            best, best_score = name, score
    return best


def best_by_meaning(meaning: Meaning | None, text: str, options: Sequence[str],
                    describe: Callable[[str], str] = humanize) -> tuple[int, float] | None:
    """The index of the option whose text fits ``text`` best and how well, or None."""
    if meaning is None or meaning.broken or not options:
        return None
    found = meaning.similarities(text, [describe(o) for o in options])
    if not found:
        return None
    index = max(range(len(found)), key=lambda i: found[i])
    return index, found[index]


def enum_by_meaning(meaning: Meaning | None, text: str, options: Sequence[Any]) -> Any:
    """The enum value ``text`` means ("a heart doctor" -> cardiology) when one fits clearly
    (:data:`ENUM_CONFIDENT`, :data:`ENUM_MARGIN` over the next); else None."""
    if meaning is None or meaning.broken or len(options) < 1:
        return None
    found = meaning.similarities(text, [humanize(str(o)) for o in options])
    if not found:
        return None
    ranked = sorted(range(len(found)), key=lambda i: -found[i])
    first = found[ranked[0]]
    second = found[ranked[1]] if len(ranked) > 1 else -1.0
    if first >= ENUM_CONFIDENT and first - second >= ENUM_MARGIN:
        return options[ranked[0]]
    return None


@dataclass
class OfflineKnowledge:
    """What the engine offered the rules model: where its embedding model comes from and
    the agents' tools, both as functions called once, when the first plan needs them (an
    embedder that needs a network or a key is not made before then)."""

    embedder: Callable[[], Any] | None = None
    agent_tools: Callable[[], AgentTools] | None = None
    _meaning: Meaning | None = field(default=None, repr=False)
    _tools: AgentTools | None = field(default=None, repr=False)
    _resolved: bool = field(default=False, repr=False)

    @property
    def meaning(self) -> Meaning | None:
        if not self._resolved:
            self._resolved = True
            try:
                self._meaning = meaning_for(self.embedder()) if self.embedder else None
            except Exception as exc:  # e.g. a remote embedder without its key
                logger.warning("the offline model routes by word overlap: no embedding "
                               "model (%s: %s)", type(exc).__name__, exc)
        return self._meaning

    @property
    def tools(self) -> AgentTools:
        if self._tools is None:
            self._tools = dict(self.agent_tools()) if self.agent_tools is not None else {}
        return self._tools
