"""Per-run budgets: LLM calls, tokens, cost and wall time.

Every model call of a run is charged here (planner, specialists, replans, synthesizer).
Hitting a limit stops new work: no new subtask starts, no new model call is made, and the
answer says what was done and what was not.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.config import Settings
from orchestrator.errors import BudgetExceededError
from orchestrator.pricing import PriceTable
from orchestrator.results import Usage


@dataclass
class RunBudget:
    """What one run may still spend, and what it has spent."""

    max_llm_calls: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_wall_s: float | None = None
    prices: PriceTable = field(default_factory=PriceTable)
    started: float = field(default_factory=time.monotonic)
    spent: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    hit: str | None = None
    """The first limit reached, as a sentence; None while within budget."""
    max_failed_in_a_row: int | None = None
    """Run-level stall: this many failed attempts in a row with nothing done between."""
    failed_in_a_row: int = 0
    in_flight: int = 0
    """Model calls started and not yet charged: parallel agents cannot overshoot max_llm_calls."""
    reserved_tokens: int = 0
    """Estimated input tokens of the calls under way: parallel agents cannot overshoot
    max_tokens by more than one call's worth."""
    _reservations: list[int] = field(default_factory=list, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, prices: PriceTable | None = None) -> RunBudget:
        return cls(max_llm_calls=settings.max_llm_calls, max_tokens=settings.max_tokens,
                   max_cost_usd=settings.max_cost_usd, max_wall_s=settings.max_wall_s,
                   max_failed_in_a_row=settings.run_stall_attempts,
                   prices=prices or PriceTable())

    def charge(self, model: str, usage_metadata: Mapping[str, Any] | None) -> None:
        """Count one model call by ``model`` (the price table's key)."""
        call = Usage()
        call.add_message(usage_metadata)
        self.spent = self.spent + call
        self.cost_usd += self.prices.cost(model, call)
        self._check_spend()

    def note_attempt(self, ok: bool) -> None:
        """Count an attempt's outcome; too many failures in a row stop the run (no progress)."""
        self.failed_in_a_row = 0 if ok else self.failed_in_a_row + 1
        limit = self.max_failed_in_a_row
        if self.hit is None and limit is not None and self.failed_in_a_row >= limit:
            self.hit = (f"no progress: {self.failed_in_a_row} failed attempts in a row "
                        "(run_stall_attempts)")

    def begin_call(self, estimated_tokens: int = 0) -> None:
        """Reserve one model call of about ``estimated_tokens`` input tokens;
        BudgetExceededError when it does not fit. Pair with :meth:`end_call`.

        With calls under way, a call fits only if its estimate and theirs fit in what is
        left of ``max_tokens``, so parallel calls cannot together overshoot it; a call that
        starts alone may overshoot it by its own size at most.
        """
        self.check()
        if self.max_llm_calls is not None and \
                self.spent.llm_calls + self.in_flight >= self.max_llm_calls:
            self.hit = f"{self.max_llm_calls} LLM calls used or under way (max_llm_calls)"
            raise BudgetExceededError(self.hit)
        if self.max_tokens is not None and self.in_flight and (
                self.spent.total_tokens + self.reserved_tokens + estimated_tokens
                > self.max_tokens):
            self.hit = (f"{self.spent.total_tokens} tokens used and about "
                        f"{self.reserved_tokens} under way of {self.max_tokens} (max_tokens)")
            raise BudgetExceededError(self.hit)
        self.in_flight += 1
        self.reserved_tokens += estimated_tokens
        self._reservations.append(estimated_tokens)

    def end_call(self) -> None:
        self.in_flight = max(self.in_flight - 1, 0)
        if self._reservations:
            self.reserved_tokens -= self._reservations.pop()

    def remaining_s(self) -> float | None:
        if self.max_wall_s is None:
            return None
        return self.max_wall_s - (time.monotonic() - self.started)

    def check(self) -> None:
        """Raise :class:`BudgetExceededError` if any limit is reached (before new work)."""
        if self.hit is None:
            self._check_spend()
        remaining = self.remaining_s()
        if remaining is not None and remaining <= 0:
            self.expire_wall()
        if self.hit is not None:
            raise BudgetExceededError(self.hit)

    def expire_wall(self) -> None:
        """The run's wall time ran out while work was in flight."""
        if self.hit is None:
            self.hit = f"wall time {self.max_wall_s:g}s reached (max_wall_s)"

    @property
    def exhausted(self) -> bool:
        try:
            self.check()
        except BudgetExceededError:
            return True
        return False

    def _check_spend(self) -> None:
        if self.hit is not None:
            return
        if self.max_llm_calls is not None and self.spent.llm_calls >= self.max_llm_calls:
            self.hit = f"{self.spent.llm_calls} LLM calls used of {self.max_llm_calls} " \
                       "(max_llm_calls)"
        elif self.max_tokens is not None and self.spent.total_tokens >= self.max_tokens:
            self.hit = f"{self.spent.total_tokens} tokens used of {self.max_tokens} (max_tokens)"
        elif self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
            self.hit = f"${self.cost_usd:.4f} spent of ${self.max_cost_usd:g} (max_cost_usd)"
