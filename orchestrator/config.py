"""Settings, read from ``ORCHESTRATOR_*`` environment variables.

This is the one place that documents each setting; CLI flags override them.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    chroma_url: str | None = Field(
        default=None, description="A Chroma server (http://host:port) instead of the "
        "embedded store under the data folder."
    )
    planner_context_chunks: int = Field(
        default=3, ge=0, description="Knowledge-base chunks the planner sees for a request."
    )

    @property
    def checkpoints_path(self) -> Path:
        return self.home / "checkpoints.sqlite"

    @property
    def domain_db_path(self) -> Path:
        return self.home / "domain.sqlite"

    @property
    def chroma_path(self) -> Path:
        return self.home / "chroma"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit (non-None) overrides applied."""
    clean = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**clean)  # type: ignore[arg-type]
