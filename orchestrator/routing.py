"""Adaptive agent choice: which capable agent gets a subtask, by measured performance.

Capable agents for a subtask are the planner's choice, the alternatives it named, and
agents that share a skill with the chosen one that the goal asks for. Among them the
choice weighs the planner's preference against each agent's recent success rate and
latency; an agent passed over ``probe_every`` times in a row gets one trial, so an agent
that recovers wins its work back.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from orchestrator.agents.spec import AgentSpec
from orchestrator.text_match import tokens

PREFERENCE_BONUS = 0.15
"""Score the planner's own choice gets: it loses the work only to a clearly better agent."""
RECENCY_DECAY = 0.5
"""Weight of an outcome relative to the one after it: recent attempts count most."""
PRIOR_WEIGHT = 0.5
"""Weight of one imagined success, so an agent without history starts near 100%."""
PROBE_BURST = 3
"""Successful probes in a row before probing pauses: enough for a recovered agent to win."""
LATENCY_WEIGHT = 0.05
"""Score lost per doubling of an agent's mean latency over the fastest candidate's."""


@dataclass(frozen=True)
class Outcome:
    """One finished attempt by an agent."""

    ok: bool
    latency_s: float


@dataclass(frozen=True)
class Choice:
    """The routing decision for one subtask attempt, with its reason."""

    agent: str
    reason: str
    scores: dict[str, float]


@dataclass
class _AgentRecord:
    recent: deque[Outcome]
    passed_over: int = 0
    probing: bool = False
    probe_streak: int = 0


@dataclass
class AgentStatsBook:
    """Recent outcomes per agent, shared by all runs of one orchestrator (thread-safe)."""

    window: int = 20
    probe_every: int = 10
    _records: dict[str, _AgentRecord] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, agent: str) -> _AgentRecord:
        if agent not in self._records:
            self._records[agent] = _AgentRecord(deque(maxlen=self.window))
        return self._records[agent]

    def seed(self, outcomes: Mapping[str, Iterable[Outcome]]) -> None:
        """Load earlier runs' outcomes (oldest first), e.g. from the run store."""
        with self._lock:
            for agent, items in outcomes.items():
                self._record(agent).recent.extend(items)

    def record(self, agent: str, ok: bool, latency_s: float) -> None:
        with self._lock:
            record = self._record(agent)
            record.recent.append(Outcome(ok, max(latency_s, 0.0)))
            if record.probing:
                # A probe that succeeds is followed by another (up to PROBE_BURST), so a
                # recovered agent wins its work back at once; a failed one waits a round.
                record.probing = False
                record.probe_streak = record.probe_streak + 1 if ok else 0
                if ok and record.probe_streak < PROBE_BURST:
                    record.passed_over = self.probe_every
                else:
                    record.probe_streak = 0

    def success_rate(self, agent: str) -> float:
        """Recency-weighted success rate with a weak prior: unknown agents start at 100%."""
        with self._lock:
            recent = self._record(agent).recent
            total, good = PRIOR_WEIGHT, PRIOR_WEIGHT
            for age, outcome in enumerate(reversed(recent)):
                weight = RECENCY_DECAY ** age
                total += weight
                good += weight * outcome.ok
            return good / total

    def mean_latency(self, agent: str) -> float | None:
        with self._lock:
            recent = self._record(agent).recent
            return sum(o.latency_s for o in recent) / len(recent) if recent else None

    def choose(self, candidates: Sequence[str], preferred: str) -> Choice:
        """Pick one of ``candidates`` (the first tried is ``preferred`` when it is one)."""
        if len(candidates) == 1:
            return Choice(candidates[0], "only capable agent", {candidates[0]: 1.0})
        latencies = {a: self.mean_latency(a) for a in candidates}
        known = [v for v in latencies.values() if v]
        fastest = min(known) if known else None
        scores: dict[str, float] = {}
        for agent in candidates:
            score = self.success_rate(agent) + (PREFERENCE_BONUS if agent == preferred else 0.0)
            latency = latencies[agent]
            if fastest and latency:
                score -= LATENCY_WEIGHT * math.log2(max(latency / fastest, 1.0))
            scores[agent] = round(score, 4)
        best = max(candidates, key=lambda a: (scores[a], a == preferred))
        rates = {a: self.success_rate(a) for a in candidates}
        with self._lock:
            # Probe agents that lose on their record (new evidence may clear them), not
            # ones that lose only to the planner's preference.
            starved = [a for a in candidates if a != best and self.probe_every
                       and rates[a] < rates[best]
                       and self._record(a).passed_over >= self.probe_every]
        if starved:
            chosen = starved[0]
            reason = f"probe: {chosen} was passed over {self.probe_every} times in a row"
        else:
            chosen = best
            rate = self.success_rate(chosen)
            reason = ("planner's choice" if chosen == preferred else
                      f"{chosen} ({rate:.0%} recent success) over {preferred} "
                      f"({self.success_rate(preferred):.0%})")
            if chosen == preferred:
                reason += f", {rate:.0%} recent success"
        with self._lock:
            for agent in candidates:
                record = self._record(agent)
                record.passed_over = 0 if agent == chosen else record.passed_over + 1
            self._record(chosen).probing = bool(starved)
        return Choice(chosen, reason, scores)


def capable_agents(agent: str, goal: str, alternatives: Sequence[str],
                   agents: Mapping[str, AgentSpec]) -> list[str]:
    """The planner's agent first, then its named alternatives, then skill-sharing agents.

    A skill-sharing agent counts only when the goal asks for that shared skill, so a
    reassignment never hands work to an agent that does something else.
    """
    found = [agent] + [a for a in alternatives if a in agents and a != agent]
    primary = agents.get(agent)
    if primary is None:
        return found
    goal_words = _words(goal)
    shared_skills = _skill_names(tuple(primary.skills))
    for name, spec in agents.items():
        if name in found:
            continue
        common = shared_skills & _skill_names(tuple(spec.skills))
        if any(_words(skill) & goal_words for skill in common):
            found.append(name)
    return found


# Cached: every dispatch of every run asks again about the same skills (and its goal).
@lru_cache(maxsize=1024)
def _skill_names(skills: tuple[str, ...]) -> frozenset[str]:
    return frozenset(s.lower().strip() for s in skills)


@lru_cache(maxsize=4096)
def _words(text: str) -> frozenset[str]:
    return frozenset(tokens(text))
