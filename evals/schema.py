"""Eval cases: the file format (JSONL or YAML), validated with errors that name file and line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.errors import ConfigError


class DatasetError(ConfigError):
    """A dataset file cannot be read or a case in it is invalid."""


class ToolCallExpectation(BaseModel):
    """A tool call that should happen; ``args`` is a subset the call's arguments must contain."""

    model_config = ConfigDict(extra="forbid")

    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class StateCheck(BaseModel):
    """An SQL query on the domain database after the run and what it must return.

    ``equals`` compares the first column of the first row; ``rows`` compares all rows;
    ``count`` compares the number of rows.
    """

    model_config = ConfigDict(extra="forbid")

    sql: str
    equals: Any = None
    rows: list[list[Any]] | None = None
    count: int | None = None
    description: str = ""

    @field_validator("sql")
    @classmethod
    def _read_only(cls, sql: str) -> str:
        if not sql.lstrip().lower().startswith(("select", "with")):
            raise ValueError("state checks must be SELECT queries")
        return sql


class Expectations(BaseModel):
    """What a passing run looks like; every field is optional."""

    model_config = ConfigDict(extra="forbid")

    agents: list[str] | None = None
    """Agents that should be used (exactly this set; a sequence if ``agents_in_order``)."""
    agents_in_order: bool = False
    tool_calls: list[ToolCallExpectation] = Field(default_factory=list)
    state: list[StateCheck] = Field(default_factory=list)
    answer_includes: list[str] = Field(default_factory=list)
    answer_excludes: list[str] = Field(default_factory=list)
    citations: list[str] = Field(default_factory=list)
    """Sources the answer must cite (``source`` or ``source#chunk``)."""
    status: Literal["ok", "partial", "failed", "paused"] | None = None
    max_llm_calls: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)


class EventInput(BaseModel):
    """An event that starts the case instead of (or before) a request."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,59}$")
    data: dict[str, Any] = Field(default_factory=dict)


class Approval(BaseModel):
    """What a person decides when the run pauses for an approval."""

    model_config = ConfigDict(extra="forbid")

    approve: bool
    reason: str = "eval decision"


class EvalCase(BaseModel):
    """One eval case."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,80}$")
    input: str | list[str] = Field(default_factory=list)
    """One request, or the turns of a conversation (expectations apply to the whole run)."""
    event: EventInput | None = None
    """An event fired first (its playbook, or the supervisor, handles it)."""
    approval: Approval | None = None
    """The decision given each time the run pauses for an approval; unset: it stays paused."""
    setup: str | None = None
    """SQL run on the case's own copy of the domain database before the run."""
    tags: list[str] = Field(default_factory=list)
    domain: str = "it_ops"
    expect: Expectations = Field(default_factory=Expectations)
    known_failure: str | None = None
    """Why the offline fake model is expected to fail this case (reported, not hidden)."""

    @property
    def turns(self) -> list[str]:
        if isinstance(self.input, str):
            return [self.input] if self.input else []
        return list(self.input)

    @model_validator(mode="after")
    def _something_to_run(self) -> EvalCase:
        turns = self.turns
        if not all(t.strip() for t in turns) or not (turns or self.event):
            raise ValueError("a case needs an input (a request or a list of requests), "
                             "an event, or both")
        return self


def load_cases(paths: Sequence[str | Path]) -> list[EvalCase]:
    """All cases of the given JSONL / YAML files (folders: every such file inside)."""
    cases: list[EvalCase] = []
    for path in _expand(paths):
        cases.extend(_load_file(path))
    seen: dict[str, str] = {}
    for case in cases:
        if case.id in seen:
            raise DatasetError(f"duplicate case id {case.id!r}")
        seen[case.id] = case.id
    if not cases:
        raise DatasetError("no eval cases found in " + ", ".join(map(str, paths)))
    return cases


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*")
                                if p.suffix in (".jsonl", ".yaml", ".yml") and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise DatasetError(f"{path}: no such dataset file or folder")
    return files


def _load_file(path: Path) -> list[EvalCase]:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from None
    if path.suffix == ".jsonl":
        cases = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("//"):
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
            cases.append(_case(raw, f"{path}:{number}"))
        return cases
    if path.suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DatasetError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
        if isinstance(data, dict) and "packs" in data and "cases" not in data:
            return _pack_cases(path, data["packs"])
        items = data.get("cases") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise DatasetError(f"{path}: expected a list of cases (or a mapping with 'cases')")
        return [_case(item, f"{path} case {index + 1}") for index, item in enumerate(items)]
    raise DatasetError(f"{path}: unsupported dataset file (use .jsonl, .yaml or .yml)")


def _pack_cases(path: Path, names: Any) -> list[EvalCase]:
    """``packs: [name, ...]`` in a dataset file: the eval cases those domain packs declare
    (``DomainPack.evals``), so a suite can include what the packs ship."""
    from orchestrator.agents.domains import pack_eval_cases
    from orchestrator.errors import ConfigError

    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DatasetError(f"{path}: 'packs' must be a list of domain pack names")
    try:
        files = _expand(pack_eval_cases(names))
    except ConfigError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    cases: list[EvalCase] = []
    for file in files:
        included = _load_file(file)
        cases.extend(included)
    return cases


def _case(raw: Any, where: str) -> EvalCase:
    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: a case must be an object")
    try:
        return EvalCase.model_validate(raw)
    except ValidationError as exc:
        case_id = raw.get("id", "?")
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'case'}: {e['msg']}"
                             for e in exc.errors())
        raise DatasetError(f"{where} (case {case_id!r}): {problems}") from None
