"""Stores from a URL or a path: the one place that picks a backend.

A path or ``sqlite:///path`` is SQLite (the embedded default, files in the data folder);
``:memory:`` or ``memory://`` keeps everything in this process; ``postgres://`` or
``postgresql://`` is a PostgreSQL server shared by every process that names it (tables set up
on first use). A new backend is one module plus a branch here.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

from langgraph.checkpoint.base import BaseCheckpointSaver

from orchestrator.config import DatabaseServer
from orchestrator.runs import BaseRunStore
from orchestrator.storage.urls import StoreURL, store_url
from orchestrator.write_journal import WriteJournal

Location = str | Path | StoreURL | DatabaseServer
"""A path, a URL such as ``sqlite:///runs.sqlite`` or ``memory://``, a parsed one, or the
settings' database server."""


def _parse(location: Location, what: str) -> StoreURL:
    return store_url(location, what=what)


class CheckpointerScope(Protocol):
    """A checkpointer, open for a ``with`` or ``async with`` block."""

    def __enter__(self) -> BaseCheckpointSaver: ...
    def __exit__(self, *exc: Any) -> None: ...
    async def __aenter__(self) -> BaseCheckpointSaver: ...
    async def __aexit__(self, *exc: Any) -> None: ...


def open_checkpointer(location: Location) -> CheckpointerScope:
    """A LangGraph checkpointer for ``location``, open for a ``with`` or ``async with`` block
    (its async methods work from any event loop).

    Example:
        ```python
        async with open_checkpointer("sqlite:///checkpoints.sqlite") as saver:
            graph = build_graph("fake", agents).compile(checkpointer=saver)
        ```
    """
    url = _parse(location, "checkpointer")
    if url.backend == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        return nullcontext(InMemorySaver())
    if url.backend == "postgres":
        from orchestrator.storage.postgres_checkpoints import PostgresCheckpointer

        return PostgresCheckpointer(url)
    from orchestrator.storage.sqlite import SqliteCheckpointer

    assert url.path is not None
    return SqliteCheckpointer(url.path)


def open_run_store(location: Location, *, max_text: int = 20_000) -> BaseRunStore:
    """The run store at ``location`` (``max_text``: longest text one field keeps)."""
    from orchestrator.storage.sqlite import MEMORY
    from orchestrator.storage.sqlite_runs import SqliteRunStore

    url = _parse(location, "run store")
    if url.backend == "postgres":
        from orchestrator.storage.postgres_runs import PostgresRunStore

        return PostgresRunStore(url, max_text=max_text)
    return SqliteRunStore(url.path or MEMORY, max_text=max_text)


def open_write_journal(location: Location) -> WriteJournal:
    """The write journal at ``location``."""
    from orchestrator.storage.sqlite import MEMORY, SqliteWriteJournal

    url = _parse(location, "write journal")
    if url.backend == "postgres":
        from orchestrator.storage.postgres_journal import PostgresWriteJournal

        return PostgresWriteJournal(url)
    return SqliteWriteJournal(url.path or MEMORY)
