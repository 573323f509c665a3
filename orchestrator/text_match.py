"""Tiny, deterministic text matching: the rules-mode fake model plans with it, and routing
reads the skills a goal asks for with it (neither needs the other)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

STOPWORDS = frozenset("""
a an the of to for and or in on at by with from its it is are was be this that these those
please then also all any some my our your their his her me us them we i you he she they
can could would should will shall may might must do does did done has have had not no yes
now so as if into onto out up down about after before once finally next again what which
who whom whose when where why how e g eg
""".split())  # noqa: SIM905

_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def stem(word: str) -> str:
    """A crude, stable suffix stripper: 'incidents' -> 'incident', 'routes' -> 'route',
    'services' -> 'service', 'patches' -> 'patch', 'routing' -> 'rout'."""
    if len(word) > 5 and word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    for suffix in ("ing", "ed"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """Content words of ``text``, stemmed; also the joined form of hyphenated words and of
    adjacent word pairs, so "on-call" meets "oncall" and "fail over" meets "failover"."""
    return list(_tokens(text))


@lru_cache(maxsize=8192)
def _tokens(text: str) -> tuple[str, ...]:
    # Cached: the offline model scores every agent's name, skills and description (the same
    # few hundred texts) against each clause of every plan; splitting them again each time
    # was a fifth of the server's CPU under load.
    out: list[str] = []
    previous = ""
    for raw in _TOKEN.findall(text.lower().replace("_", " ")):
        parts = raw.split("-")
        if len(parts) > 1:
            out.append(stem("".join(parts)))
        out.extend(stem(p) for p in parts if p not in STOPWORDS and not p.isdigit())
        content = raw.isalpha() and len(raw) > 2 and raw not in STOPWORDS
        if previous and content:
            out.append(stem(previous + raw))
        previous = raw if content else ""
    return tuple(t for t in out if len(t) > 1 and t not in STOPWORDS)


@lru_cache(maxsize=8192)
def _token_set(text: str) -> frozenset[str]:
    return frozenset(_tokens(text))


def mentions(text: str, word: str) -> bool:
    """Whether ``text`` holds ``word`` whole, in any case (web-3 in "page web-3", not in
    "web-30" or "web-3-b")."""
    return _whole_word(word).search(text) is not None


@lru_cache(maxsize=1024)
def _whole_word(word: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(word)}(?![\w-])", re.IGNORECASE)


def overlap_score(query: str, weighted_fields: Iterable[tuple[str, int]]) -> int:
    """Sum, over the distinct words of ``query``, of the best weight of a field containing it."""
    return _overlap_score(query, tuple(weighted_fields))


@lru_cache(maxsize=16384)
def _overlap_score(query: str, weighted_fields: tuple[tuple[str, int], ...]) -> int:
    # Cached: a plan scores each clause against every agent's card and tool names, and the
    # same clauses and cards come back in every plan of a conversation and every replan.
    best = _best_weights(weighted_fields)
    return sum(best.get(token, 0) for token in _token_set(query))


@lru_cache(maxsize=4096)
def _best_weights(weighted_fields: tuple[tuple[str, int], ...]) -> dict[str, int]:
    # Cached (read only by overlap_score): an agent's fields are the same for every clause.
    best: dict[str, int] = {}
    for text, weight in weighted_fields:
        for token in _token_set(text):
            if weight > best.get(token, 0):
                best[token] = weight
    return best


def find_pattern(pattern: str, text: str) -> list[str]:
    """Distinct matches of a JSON-schema ``pattern`` inside free text, in order."""
    core = pattern.removeprefix("^").removesuffix("$")
    try:
        regex = re.compile(rf"(?<![\w-])(?:{core})(?![\w-])", re.IGNORECASE)
    except re.error:
        return []
    found: list[str] = []
    for match in regex.finditer(text):
        if match.group(0) not in found:
            found.append(match.group(0))
    return found
