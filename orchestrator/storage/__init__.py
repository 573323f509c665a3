"""Storage backends behind protocols, picked from a URL.

- checkpoints (LangGraph threads): :func:`open_checkpointer`, and :class:`SharedCheckpointer`
  for one long-lived checkpointer per owner;
- runs, events and agent statistics: :func:`open_run_store` (the contract is
  :class:`orchestrator.runs.BaseRunStore`);
- the write journal: :func:`open_write_journal` (:class:`orchestrator.write_journal.WriteJournal`).

A path or ``sqlite:///path`` is the embedded SQLite default; ``:memory:`` or ``memory://``
keeps a store in the process; ``postgresql://user@host/db`` (or ``postgres://``) keeps it in
a PostgreSQL server that several processes and machines share (``ORCHESTRATOR_DATABASE_URL``).
"""

from __future__ import annotations

from orchestrator.storage.checkpointer import SharedCheckpointer
from orchestrator.storage.factory import (
    CheckpointerScope,
    Location,
    open_checkpointer,
    open_run_store,
    open_write_journal,
)
from orchestrator.storage.urls import StoreURL, parse_store_url

__all__ = [
    "CheckpointerScope",
    "Location",
    "SharedCheckpointer",
    "StoreURL",
    "open_checkpointer",
    "open_run_store",
    "open_write_journal",
    "parse_store_url",
]
