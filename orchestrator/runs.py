"""Run records: what the engine keeps of every run, and the store contract behind it.

``orchestrator runs``, ``orchestrator trace`` and ``orchestrator agents --stats`` read the run
store; adaptive routing is seeded from it, so what the orchestrator learns about agents
outlives the process.

The record is written as things happen: a run's row is created when it starts (status
``running``) and each event is appended when it arrives, so a process killed mid-run leaves
its plan and every tool call that ran on record. Claims are leases: the process that runs a
run (or resumes, or approves it) owns it until ``lease_until`` and renews the lease while it
works; a run whose owner is gone (its lease expired, or its process died on this host) reads
as ``interrupted`` and may be taken over. One row per busy thread does the same for
threads, so one thread runs one request at a time across processes.

Each record also says who drives the run (``driver``): the process that runs it
(``local``) or its Temporal workflow (``temporal``). Decisions and resumes go through that
driver only: a local approve of a workflow's run is refused, and so is the reverse.

:class:`BaseRunStore` is the contract; backends live in :mod:`orchestrator.storage` and are
picked from a URL by ``orchestrator.storage.open_run_store``. ``RunStore`` is the SQLite one
(``runs.sqlite``), kept under its old name for code that builds it from a path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from orchestrator.errors import DrivenElsewhereError
from orchestrator.events import Event
from orchestrator.leases import HOST, Owner
from orchestrator.results import RunResult
from orchestrator.routing import Outcome

if TYPE_CHECKING:
    from orchestrator.storage.sqlite_runs import SqliteRunStore as RunStore

__all__ = ["FINISHED_RUN_STATUSES", "HOST", "AgentStats", "BaseRunStore", "Owner", "RunDriver",
           "RunStore", "RunSummary", "ThreadSummary", "refuse_workflow_run"]

FINISHED_RUN_STATUSES = frozenset({"ok", "partial", "failed", "unknown"})
RunDriver = Literal["local", "temporal"]
"""Who drives a run: the process that runs it, or its Temporal workflow (runs recorded
before the record said so are ``local``)."""


def refuse_workflow_run(record: Mapping[str, Any], action: Literal["approve", "resume"]
                        ) -> None:
    """DrivenElsewhereError (one line) when a Temporal workflow drives the run: deciding or
    resuming it in this process would split who drives it."""
    if record.get("driver") != "temporal":
        return
    run = str(record["run_id"])[:12]
    if action == "approve":
        raise DrivenElsewhereError(f"run {run} is driven by a Temporal workflow; approve it "
                                   "with --runs temporal (or ORCHESTRATOR_RUNS=temporal)")
    raise DrivenElsewhereError(f"run {run} is driven by a Temporal workflow, which continues "
                               "it on a worker: start `orchestrator worker` instead of "
                               "resuming it here")


@dataclass
class AgentStats:
    """How one agent has done across runs."""

    agent: str
    runs: int = 0
    attempts: int = 0
    successes: int = 0
    mean_latency_s: float = 0.0
    p95_latency_s: float = 0.0
    tokens: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "runs": self.runs, "attempts": self.attempts,
                "success_rate": round(self.success_rate, 4),
                "mean_latency_s": round(self.mean_latency_s, 4),
                "p95_latency_s": round(self.p95_latency_s, 4), "tokens": self.tokens,
                "failures": self.failures}


@dataclass(frozen=True)
class RunSummary:
    """One line of ``orchestrator runs``."""

    run_id: str
    thread_id: str
    request: str
    mode: str
    status: str
    started_at: float
    elapsed_s: float
    llm_calls: int
    tokens: int


@dataclass(frozen=True)
class Burst:
    """Events of one run that arrived together, to be appended in order."""

    run_id: str
    events: Sequence[Event]
    owner: Owner | None = None
    """Append only while this owner holds the run (None: always)."""


def append_each(store: BaseRunStore, bursts: Sequence[Burst]) -> list[bool | Exception]:
    """``bursts`` appended one transaction each: what :meth:`BaseRunStore.append_bursts`
    does when one transaction for them all failed, so only the failing burst fails."""
    done: list[bool | Exception] = []
    for burst in bursts:
        try:
            done.append(store.append_events(burst.run_id, burst.events, burst.owner))
        except Exception as exc:  # handed to that burst's run
            done.append(exc)
    return done


@dataclass(frozen=True)
class ThreadSummary:
    """A conversation as its runs tell it: how it began, how it stands."""

    thread_id: str
    """The stored thread id."""
    title: str
    """The request of its first run."""
    runs: int
    last_run_id: str
    last_status: str
    """The status of its latest run (``interrupted`` when that run's owner is gone)."""
    last_active_at: float
    """When its latest run last did something: its last event, else its start."""


@runtime_checkable
class BaseRunStore(Protocol):
    """What the engine and the service API need from a run store.

    Every method may be called from any thread; a write is durable once it returns. Claims
    (of a run, of a thread) are compare-and-swap: of two owners claiming at once one wins,
    and a claim whose owner is gone (:func:`orchestrator.leases.owner_gone`) may be taken.
    """

    max_text: int
    """Longest text one stored field keeps."""

    def capped(self, text: str | None) -> str | None:
        """``text`` as this store keeps it: cut to ``max_text`` with a marker."""

    # writing as a run goes
    def start_run(self, run_id: str, thread_id: str, request: str, *, owner: Owner,
                  lease_s: float, event: dict[str, Any] | None = None,
                  request_id: str | None = None, driver: RunDriver = "local") -> None:
        """Record a run as it starts (``running``, owned by ``owner``, driven by
        ``driver``); RequestError when ``request_id`` already names another run."""

    def append_events(self, run_id: str, events: Sequence[Event], owner: Owner | None = None
                      ) -> bool:
        """Append events as they arrive (each ``attempt_finished`` counts one attempt); with
        ``owner``, only while it holds the run (False, nothing stored, once it does not)."""

    def append_bursts(self, bursts: Sequence[Burst]) -> list[bool | Exception]:
        """Append the bursts of several runs in one transaction, each as
        :meth:`append_events` would (in order; True, False, or the error that burst met)."""

    def finish_run(self, result: RunResult, *, status: str, owner: Owner, mode: str = "",
                   event: dict[str, Any] | None = None) -> bool:
        """Write a run's outcome and end ``owner``'s claim; False (nothing written) when
        another owner took the run over."""

    # claims (leases)
    def claim_paused(self, run_id: str, owner: Owner | None = None, lease_s: float = 30.0
                     ) -> bool:
        """Claim a paused run to apply a decision (``resuming``); False when held."""

    def claim_interrupted(self, run_id: str, owner: Owner, lease_s: float) -> bool:
        """Take over an interrupted run to resume it; False when someone else has it."""

    def set_status(self, run_id: str, status: str, owner: Owner) -> None:
        """Set the status of a run ``owner`` holds and end the claim."""

    def renew(self, run_id: str, thread_id: str, owner: Owner, lease_s: float) -> bool:
        """Extend ``owner``'s claims on the run and its thread; False once either is lost."""

    def holds(self, run_id: str, owner: Owner) -> bool:
        """Whether ``owner`` still holds the run (a run never seen: True)."""

    def acquire_thread(self, thread_id: str, run_id: str, owner: Owner, lease_s: float
                       ) -> None:
        """Claim a thread for one run; RequestError naming the holder while it is busy."""

    def release_thread(self, thread_id: str, owner: Owner) -> None:
        """Give a thread back (only ``owner``'s claim is removed)."""

    # reading
    def list_runs(self, limit: int = 20) -> list[RunSummary]:
        """Recent runs, newest first (a run whose owner is gone reads ``interrupted``)."""

    def list_threads(self, prefix: str, limit: int) -> list[ThreadSummary]:
        """The threads whose id starts with ``prefix``, at most ``limit``, the one whose
        latest run started last first."""

    def thread_runs(self, thread_id: str) -> list[RunSummary]:
        """The runs of one thread, oldest first."""

    def resolve(self, run_id: str) -> str:
        """The full id of a run from its id or a unique prefix; RequestError otherwise."""

    def run(self, run_id: str) -> dict[str, Any]:
        """A run's record (plan, event and results parsed, ``driver`` set); RequestError if
        unknown."""

    def find_request(self, request_id: str) -> dict[str, Any] | None:
        """The record of the run a caller's request id names, or None."""

    def later_run(self, thread_id: str, after: float) -> str | None:
        """The id of a run started on ``thread_id`` after ``after``, if any."""

    def events(self, run_id: str, start: int = 0) -> list[Event]:
        """A run's events in the order they were stored, from the ``start``-th on (a follower
        that has the first ``start`` asks only for the rest)."""

    def agent_stats(self) -> list[AgentStats]:
        """Per-agent statistics over every stored attempt."""

    def recent_outcomes(self, window: int) -> dict[str, list[Outcome]]:
        """The last ``window`` attempts per agent, oldest first (to seed routing)."""

    def close(self) -> None:
        """Release the store's connection."""


def __getattr__(name: str) -> Any:
    # The SQLite store under its old name, imported on first use (it imports this module).
    if name == "RunStore":
        from orchestrator.storage.sqlite_runs import SqliteRunStore

        return SqliteRunStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
