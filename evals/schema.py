"""Eval cases: the file format (JSONL or YAML), validated with errors that name file and line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
    status: Literal["ok", "partial", "failed"] | None = None
    max_llm_calls: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)


class EvalCase(BaseModel):
    """One eval case."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,80}$")
    input: str | list[str]
    """One request, or the turns of a conversation (expectations apply to the whole run)."""
    setup: str | None = None
    """SQL run on the case's own copy of the domain database before the run."""
    tags: list[str] = Field(default_factory=list)
    domain: str = "it_ops"
    expect: Expectations = Field(default_factory=Expectations)
    known_failure: str | None = None
    """Why the offline fake model is expected to fail this case (reported, not hidden)."""

    @property
    def turns(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        turns = [value] if isinstance(value, str) else value
        if not turns or not all(t.strip() for t in turns):
            raise ValueError("input must be a non-empty request or list of requests")
        return value


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
        items = data.get("cases") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise DatasetError(f"{path}: expected a list of cases (or a mapping with 'cases')")
        return [_case(item, f"{path} case {index + 1}") for index, item in enumerate(items)]
    raise DatasetError(f"{path}: unsupported dataset file (use .jsonl, .yaml or .yml)")


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
