"""The read side of the service API: stored runs, their traces and events, agent statistics.

The CLI's ``runs``, ``trace`` and ``agents --stats`` and the HTTP server read through this,
never through a store directly. It needs no model and no agents, so it opens fast.

Example:
    ```python
    records = RunRecords.from_settings()
    for run in records.runs(limit=5):
        print(run.run_id, run.status, records.trace(run.run_id).subtasks)
    ```
"""

from __future__ import annotations

from typing import Any

from orchestrator.config import Settings, load_settings
from orchestrator.errors import RequestError
from orchestrator.events import Event
from orchestrator.runs import AgentStats, BaseRunStore, RunSummary, ThreadSummary
from orchestrator.traces import Trace


class RunRecords:
    """Queries over a run store (see :func:`orchestrator.storage.open_run_store`)."""

    def __init__(self, store: BaseRunStore) -> None:
        self.store = store

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RunRecords:
        """The records of the settings' run store (``runs.sqlite`` in ``ORCHESTRATOR_HOME``,
        or ``ORCHESTRATOR_DATABASE_URL``)."""
        from orchestrator.storage import open_run_store

        settings = settings or load_settings()
        return cls(open_run_store(settings.stores.runs, max_text=settings.max_stored_chars))

    def runs(self, limit: int = 20) -> list[RunSummary]:
        """Recent runs, newest first (``limit`` of them, at least 1)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise RequestError(f"limit must be a whole number of runs, at least 1, not "
                               f"{limit!r}")
        return self.store.list_runs(limit)

    def threads(self, prefix: str = "", limit: int = 20) -> list[ThreadSummary]:
        """Conversations whose thread id starts with ``prefix`` (a tenant's: ``acme:``), the
        one with the latest run first (``limit`` of them, at least 1)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise RequestError(f"limit must be a whole number of threads, at least 1, not "
                               f"{limit!r}")
        return self.store.list_threads(prefix, limit)

    def thread_runs(self, thread_id: str) -> list[RunSummary]:
        """The runs of one conversation, oldest first."""
        return self.store.thread_runs(thread_id)

    def run(self, run_id: str) -> dict[str, Any]:
        """One run's record, by id or a unique prefix of one (RequestError otherwise)."""
        return self.store.run(run_id)

    def events(self, run_id: str, start: int = 0) -> list[Event]:
        """A run's events in order (id or unique prefix), from the ``start``-th on."""
        return self.store.events(self.run(run_id)["run_id"], start)

    def trace(self, run_id: str) -> Trace:
        """A run's record, a span per subtask and its events (id or unique prefix)."""
        record = self.run(run_id)
        return Trace.build(record, self.store.events(record["run_id"]))

    def agent_stats(self) -> list[AgentStats]:
        """How each agent has done across the stored runs."""
        return self.store.agent_stats()

    def close(self) -> None:
        self.store.close()
