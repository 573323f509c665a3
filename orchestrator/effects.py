"""Writes happen once: the idempotency key of the write call under way, and the ledgers.

The engine runs every write tool call inside :func:`write_call` with a key derived from the
run, the subtask and the action (``orchestrator.agents.policy.write_key``). A store that tools
write to (the demo business database, see ``orchestrator.domain_db``) records the key in the
same transaction as the call's effect and, when it meets a key it has already recorded, raises
:class:`AlreadyApplied` instead of doing the write again. Retries, reassignments, resumes
and re-runs after a crash therefore see the earlier result.

Stores register a lookup with :func:`register_ledger`, so the engine can find an earlier
result before it asks anyone to approve a call that already happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


class AlreadyApplied(Exception):
    """The write with this key already happened; ``output`` is what it returned then."""

    def __init__(self, key: str, output: str | None) -> None:
        super().__init__(f"write {key} already applied")
        self.key = key
        self.output = output


@dataclass
class WriteCall:
    """The write tool call under way in this context."""

    key: str
    tool: str
    args: dict[str, Any]
    checked: bool = False
    """A ledger has looked the key up for this call (once per call)."""
    save_output: Callable[[str], None] | None = field(default=None, repr=False)
    """Set by the ledger that recorded the effect: stores the call's output with the key."""
    on_ledger: Callable[[], None] | None = field(default=None, repr=False)
    """Called by a ledger when it takes charge of the key (before the effect commits)."""


_current: ContextVar[WriteCall | None] = ContextVar("orchestrator_write_call", default=None)
Lookup = Callable[[str], "tuple[bool, str | None]"]
_ledgers: list[Lookup] = []


def current_write() -> WriteCall | None:
    """The write call this code runs inside, if any (tools and stores read it)."""
    return _current.get()


@contextmanager
def write_call(call: WriteCall) -> Iterator[WriteCall]:
    """Run a write tool inside this block so stores can record its key with its effect."""
    token = _current.set(call)
    try:
        yield call
    finally:
        _current.reset(token)


def register_ledger(lookup: Lookup) -> None:
    """Add a store's lookup: ``key -> (found, output)``."""
    if lookup not in _ledgers:
        _ledgers.append(lookup)


def earlier_result(key: str) -> tuple[bool, str | None]:
    """Whether a write with ``key`` already happened in a registered store, and its output."""
    for lookup in _ledgers:
        found, output = lookup(key)
        if found:
            return True, output
    return False, None
