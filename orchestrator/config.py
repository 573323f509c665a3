"""Settings, read from ``ORCHESTRATOR_*`` environment variables.

This is the one place that documents each setting; CLI flags override them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_SPEC = "fake"
"""The model used when none is configured: the offline fake model (here, not in
``orchestrator.models``, so the CLI can name it without importing the model layer)."""

StructuredMethod = Literal["auto", "tools", "json_schema", "json"]
"""How a model is asked for a structured reply (a plan): ``tools`` a forced function call,
``json_schema`` a JSON-schema ``response_format`` the server constrains the reply to, ``json``
JSON mode with the schema in the prompt, ``auto`` function calling, then JSON schema after a
reply that carries no plan at all."""
STRUCTURED_METHODS: tuple[StructuredMethod, ...] = ("auto", "tools", "json_schema", "json")


def default_home() -> Path:
    """The data folder when ``ORCHESTRATOR_HOME`` is not set (XDG data dir)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "orchestrator"


class Settings(BaseSettings):
    """Orchestrator settings; each field maps to ``ORCHESTRATOR_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")

    model: str | None = Field(
        default=None,
        description="Model spec for the supervisor and agents: 'fake', 'fake:latency=0.2' "
        "or 'openai:<model>'. Unset means the offline fake model.",
    )
    home: Path = Field(
        default_factory=default_home,
        description="Data folder: checkpoints.sqlite, runs.sqlite, chroma/, domain.sqlite.",
    )
    domain_db: str | None = Field(
        default=None, repr=False, description="The demo's business database: a path, "
        "sqlite:///path or postgresql://user@host:port/db (its tables in the 'business' "
        "schema). Unset: ORCHESTRATOR_DATABASE_URL when that is set, so workers on several "
        "machines write to one database, else domain.sqlite in the data folder.",
    )
    domains: str = Field(
        default="all", description="Domain packs to switch on (built-in and installed ones): "
        "'all' or a comma-separated list such as 'it_ops,commerce'.",
    )
    agents_dir: Path | None = Field(
        default=None, description="Folder of YAML agent cards loaded next to the built-ins."
    )
    max_request_chars: int = Field(
        default=8000, ge=1, description="Longest request accepted, in characters."
    )
    max_plan_repairs: int = Field(
        default=2, ge=0, description="How often an invalid plan is sent back to the model."
    )
    max_agent_steps: int = Field(
        default=6, ge=1, description="Model calls one specialist may make for one subtask."
    )
    max_subtasks: int = Field(
        default=20, ge=1, description="Most subtasks a plan may have (bigger plans are repaired)."
    )
    max_parallel: int = Field(
        default=8, ge=1, description="Subtasks that may run at the same time."
    )
    history_turns: int = Field(
        default=6, ge=0, description="Earlier conversation turns the planner sees."
    )
    knowledge: bool = Field(
        default=True, description="Use the knowledge base (retrieve tool, planner context)."
    )
    embedder: str = Field(
        default="minilm",
        description="Embedder spec: 'minilm' (local all-MiniLM-L6-v2), 'openai:<model>'; "
        "'hash' is for unit tests only.",
    )
    database_url: str | None = Field(
        default=None, repr=False, description="A PostgreSQL server "
        "(postgresql://user@host:port/db) holding the checkpoints, run store, write "
        "journal and API keys, so several server replicas and workers share them; unset: "
        "SQLite files in the data folder.",
    )
    database_pool_size: int | None = Field(
        default=None, ge=1, description="The most PostgreSQL connections each pool of this "
        "process may open: one pool each for the run store, the write journal, the API keys "
        "(server), the checkpoints and the business database, so a process holds at most five "
        "times this (four in a worker) and a call that finds its pool busy waits for a "
        "connection instead of opening one. Per pool, not split between them, so no store "
        "can starve another. The business database's pool is shared by the whole process and "
        "takes this from the environment. Unset: 8 (run store, journal), 4 (keys), 16 "
        "(checkpoints, business database).",
    )
    chroma_url: str | None = Field(
        default=None, description="A Chroma server (http://host:port) instead of the "
        "embedded store under the data folder."
    )
    fusion: Literal["score", "rrf"] = Field(
        default="score", description="How hybrid search fuses dense and BM25: 'score' "
        "(min-max, alpha 0.5, 300 candidates) or 'rrf' (reciprocal rank fusion).",
    )
    planner_context_chunks: int = Field(
        default=3, ge=0, description="Knowledge-base chunks the planner sees for a request."
    )
    planner_shortlist: int = Field(
        default=30, ge=1, description="Most agents the planner sees: a larger catalog is cut "
        "to the agents whose cards (description, skills, tool descriptions) are closest in "
        "meaning to the request, by the knowledge base's embedder; agents the request names "
        "or a matching playbook uses are always kept. A catalog this size or smaller is "
        "shown whole, without loading the embedder.",
    )

    # --- coordination -----------------------------------------------------------------
    coordination: Literal["rules", "adaptive", "hybrid"] = Field(
        default="hybrid", description="'rules': playbooks only; 'adaptive': the supervisor "
        "plans every request; 'hybrid': a matching playbook first, else the supervisor.",
    )
    playbooks_dir: Path | None = Field(
        default=None, description="Folder of YAML playbooks loaded next to the built-in ones."
    )
    adaptive_routing: bool = Field(
        default=True, description="Choose among capable agents by measured success and latency."
    )
    routing_window: int = Field(
        default=20, ge=1, description="Recent attempts per agent that routing statistics use."
    )
    probe_every: int = Field(
        default=10, ge=0, description="An agent passed over this many times in a row gets one "
        "trial, so an agent that recovers wins its work back (0: never probe).",
    )
    # --- recovery ---------------------------------------------------------------------
    max_retries: int = Field(
        default=2, ge=0, description="Retries of a failed subtask on the same agent."
    )
    retry_backoff_s: float = Field(
        default=0.5, ge=0, le=60, description="First retry delay; doubles on each retry."
    )
    max_reassigns: int = Field(
        default=2, ge=0, description="Other capable agents a failed subtask is handed to."
    )
    max_replans: int = Field(
        default=1, ge=0, description="Times per run the supervisor replans a failed branch."
    )
    subtask_timeout_s: float = Field(
        default=120.0, gt=0, le=86400, description="Longest one attempt at a subtask may run."
    )
    max_identical_calls: int = Field(
        default=2, ge=1, description="Times one agent may make the same tool call with the "
        "same arguments in a subtask; one more is a loop and fails the attempt.",
    )
    stall_steps: int = Field(
        default=4, ge=1, description="Model steps in a row without a successful new tool "
        "call after which an attempt counts as stalled.",
    )
    max_tool_output_chars: int = Field(
        default=20_000, ge=100, description="Longest tool output an agent sees and the run "
        "keeps, in characters; longer outputs are cut with a marker.",
    )
    tool_threads: int = Field(
        default=16, ge=1, le=256, description="Synchronous tool calls that may run at once "
        "in a process (each in its own thread; a hung one is abandoned at its timeout).",
    )
    starting_runs: int = Field(
        default=2, ge=0, le=1024, description="New runs of an event loop (the server has "
        "one) that may be in their first steps at once, until they wait on the world (a model "
        "call or its endpoint, a subtask, MCP servers starting); the others wait in line, so "
        "a burst of requests gets going in the order it came. 0: no limit.",
    )
    run_stall_attempts: int | None = Field(
        default=8, ge=1, description="Failed attempts in a row, with nothing done between, "
        "after which a run stops as making no progress.",
    )
    # --- budgets (per run; unset means no limit) ----------------------------------------
    max_llm_calls: int | None = Field(default=None, ge=1, description="LLM calls per run.")
    max_tokens: int | None = Field(default=None, ge=1, description="Tokens per run.")
    max_cost_usd: float | None = Field(
        default=None, gt=0, description="Dollars per run (needs ORCHESTRATOR_PRICES)."
    )
    max_wall_s: float | None = Field(
        default=600.0, gt=0, le=86400, description="Run timeout: wall-clock seconds per run."
    )
    prices: Path | None = Field(
        default=None, description="JSON/YAML price table: model -> {input, output} $ per 1M."
    )
    # --- visibility -------------------------------------------------------------------
    record_runs: bool = Field(
        default=True, description="Store every run's events and stats in runs.sqlite."
    )
    otel: bool = Field(
        default=False, description="Export run spans through OpenTelemetry (needs the "
        "'otel' extra and an exporter the user configures, e.g. OTEL_EXPORTER_OTLP_ENDPOINT).",
    )
    # --- crash safety and sizes -------------------------------------------------------
    max_event_bytes: int = Field(
        default=8000, ge=2, description="Largest event data accepted (bytes of its JSON); a "
        "bigger event is rejected before any planning.",
    )
    max_stored_chars: int = Field(
        default=20_000, ge=200, description="Longest text one field of a run record or "
        "event keeps in runs.sqlite; longer text is cut with a '[truncated ...]' marker.",
    )
    lease_s: float = Field(
        default=30.0, gt=0, le=3600, description="How long a claim on a run or a thread "
        "(running, resuming, approving) holds without renewal; its owner renews it while it "
        "works, so the claim of a crashed process expires after this.",
    )
    # --- runs on Temporal (orchestrator worker, --runs temporal) ------------------------
    runs: Literal["local", "temporal"] = Field(
        default="local", description="Where the CLI and the server run requests: 'local' "
        "in their own process, 'temporal' as Temporal workflows that `orchestrator worker` "
        "processes run.",
    )
    temporal_address: str = Field(
        default="localhost:7233", description="The Temporal frontend (host:port)."
    )
    temporal_namespace: str = Field(default="default", description="The Temporal namespace.")
    temporal_task_queue: str = Field(
        default="orchestrator", description="The task queue workflows are sent to and "
        "workers poll.",
    )
    temporal_heartbeat_s: float = Field(
        default=5.0, gt=0, le=600, description="How long a worker running a run may go "
        "without a heartbeat before Temporal gives the run to another worker (a worker "
        "killed mid-run is noticed after this).",
    )

    @field_validator("database_url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @property
    def stores(self) -> StoreLocations:
        """Where each durable store lives: all in ``database_url`` when it is set, else the
        SQLite files in the data folder. The one place that says so; ConfigError (one line,
        password hidden) for a URL that is not PostgreSQL."""
        url = self.database_url
        if url is None:
            return StoreLocations(runs=self.runs_path, checkpoints=self.checkpoints_path,
                                  writes=self.writes_path, keys=self.home / "keys.sqlite")
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in ("postgres", "postgresql"):
            from orchestrator.errors import ConfigError

            shown = url.split("://", 1)[0] + "://..." if "://" in url else "a value with no URL"
            raise ConfigError(f"ORCHESTRATOR_DATABASE_URL must be postgresql://user@host:port/db "
                              f"(got {shown})")
        server = DatabaseServer(url, self.database_pool_size)
        return StoreLocations(runs=server, checkpoints=server, writes=server, keys=server)

    @property
    def runs_path(self) -> Path:
        return self.home / "runs.sqlite"

    @property
    def writes_path(self) -> Path:
        """The write journal: each write call noted before it runs (crash safety)."""
        return self.home / "writes.sqlite"

    @property
    def checkpoints_path(self) -> Path:
        return self.home / "checkpoints.sqlite"

    @property
    def domain_db_path(self) -> Path:
        return self.home / "domain.sqlite"

    @property
    def domain_db_url(self) -> str | Path:
        """Where the business database lives (see ``domain_db``)."""
        return (self.domain_db or "").strip() or self.database_url or self.domain_db_path

    @property
    def chroma_path(self) -> Path:
        return self.home / "chroma"


@dataclass(frozen=True)
class DatabaseServer:
    """A PostgreSQL server the stores live in, and how many connections each pool of this
    process may open to it."""

    url: str = field(repr=False)
    """``postgresql://user@host:port/db`` (it may hold a password: never print it)."""
    pool_size: int | None = None
    """``ORCHESTRATOR_DATABASE_POOL_SIZE``; None: each store's own default."""


@dataclass(frozen=True)
class StoreLocations:
    """Where each durable store lives: a SQLite file or a PostgreSQL server with the size of
    its pool (see ``orchestrator.storage``; its URL may hold a password: never print it)."""

    runs: Path | DatabaseServer
    """Runs, events, agent statistics and claims."""
    checkpoints: Path | DatabaseServer
    """LangGraph threads."""
    writes: Path | DatabaseServer
    """The write journal."""
    keys: Path | DatabaseServer
    """The HTTP server's API keys."""


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit (non-None) overrides applied."""
    clean = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**clean)  # type: ignore[arg-type]


def ensure_home(settings: Settings) -> Path:
    """The data folder, created if missing; ConfigError (one line) when it cannot be used."""
    from orchestrator.errors import ConfigError

    try:
        settings.home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot use the data folder {settings.home} (ORCHESTRATOR_HOME): "
                          f"{exc.strerror or exc}") from None
    return settings.home
