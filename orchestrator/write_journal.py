"""The write journal: each write call's key is noted before the call runs and settled after.

A write whose process died mid-call leaves a ``started`` note. When the run is resumed and
the agent makes the same call again, the engine reads the note: if the call went through a
store that records its key with its effect (the demo business database's ledger, which
marks the note), the ledger says whether it happened; otherwise nobody can know, and the
subtask is reported ``unknown`` instead of running the write a second time.

This module is the contract; the backends live in :mod:`orchestrator.storage`
(``writes.sqlite`` in the data folder by default, see ``open_write_journal``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

JournalState = Literal["started", "ledger", "done", "failed"]


@dataclass(frozen=True)
class JournalEntry:
    state: JournalState
    output: str | None


@runtime_checkable
class WriteJournal(Protocol):
    """What the engine needs from a write journal. Each note must be durable once the
    method returns: the journal is read after a crash."""

    def begin(self, key: str, tool: str, args: dict[str, Any]) -> None:
        """Note a write about to run (a retry of a settled-as-failed one starts it again)."""

    def mark_ledger(self, key: str) -> None:
        """The call writes through a store that records its key with its effect."""

    def finish(self, key: str, output: str) -> None:
        """The call returned ``output``."""

    def fail(self, key: str, error: str) -> None:
        """The call raised: it did not take effect (a tool that raises changed nothing)."""

    def lookup(self, key: str) -> JournalEntry | None:
        """The note for ``key``, or None when the call never started."""

    def close(self) -> None:
        """Release the journal's connection."""
