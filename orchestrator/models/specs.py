"""Model specs: ``fake``, ``fake:latency=0.2``, ``openai:<model>``."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from langchain_core.language_models import BaseChatModel

from orchestrator.config import DEFAULT_MODEL_SPEC
from orchestrator.errors import ConfigError

_PROVIDERS = ("fake", "openai", "replay")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec."""

    provider: str
    name: str = ""
    options: dict[str, str] = field(default_factory=dict)


def parse_model_spec(spec: str) -> ModelSpec:
    """Parse ``provider[:name][:key=value,...]``; raise ConfigError on anything else."""
    text = spec.strip()
    provider, _, rest = text.partition(":")
    if provider not in _PROVIDERS:
        raise ConfigError(
            f"unknown model spec {spec!r}: use 'fake', 'fake:latency=0.2', 'openai:<model>' "
            "or 'replay:<cassette>'"
        )
    if provider == "fake":
        options: dict[str, str] = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq or key.strip() != "latency":
                raise ConfigError(
                    f"bad fake model option {item!r} in {spec!r}: use latency=SECONDS"
                )
            options["latency"] = value.strip()
        return ModelSpec("fake", options=options)
    if not rest.strip():
        example = "replay:evals/cassettes/run.jsonl" if provider == "replay" else \
            "openai:gpt-4o-mini"
        raise ConfigError(f"model spec {spec!r} needs a name, e.g. {example!r}")
    return ModelSpec(provider, name=rest.strip())


def get_model(spec: str | BaseChatModel | None = None) -> BaseChatModel:
    """A chat model for ``spec``; a model instance passes through, None means the default.

    Example:
        ```python
        get_model("fake:latency=0.2")
        get_model("openai:gpt-4o-mini")   # reads OPENAI_API_KEY and OPENAI_BASE_URL
        ```
    """
    if isinstance(spec, BaseChatModel):
        return spec
    parsed = parse_model_spec(spec or DEFAULT_MODEL_SPEC)
    if parsed.provider == "fake":
        from orchestrator.models.fake import FakeChatModel

        try:
            latency = float(parsed.options.get("latency", "0"))
        except ValueError:
            raise ConfigError(f"fake model latency must be a number of seconds: {spec!r}") from None
        if not math.isfinite(latency) or latency < 0:
            raise ConfigError(f"fake model latency must not be negative: {spec!r}")
        return FakeChatModel(latency=latency)
    if parsed.provider == "replay":
        from pathlib import Path

        from orchestrator.models.cassette import ReplayChatModel

        return ReplayChatModel(path=Path(parsed.name))
    return _openai_model(parsed.name)


def _openai_model(name: str) -> BaseChatModel:
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key:
        raise ConfigError(
            f"openai:{name} needs OPENAI_API_KEY (for a local OpenAI-compatible server any "
            "value works; set OPENAI_BASE_URL to its /v1 address)"
        )
    from langchain_openai import ChatOpenAI  # imported lazily: it is heavy and often unused

    return ChatOpenAI(
        model=name,
        api_key=api_key,  # type: ignore[arg-type]
        base_url=os.environ.get("OPENAI_BASE_URL") or None,
        temperature=0,
        timeout=120,
        max_retries=2,
    )
