"""Model specs, ``provider[:rest]``: ``fake``, ``fake:latency=0.2``, ``openai:<model>``,
``replay:<cassette>``, or any prefix a provider plug-in registers (see ``providers``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.config import DEFAULT_MODEL_SPEC
from orchestrator.models.providers import get_provider

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel


@dataclass(frozen=True)
class ModelSpec:
    """A model spec split at its first ``:``: the provider prefix and the rest."""

    provider: str
    """The prefix that picks the provider: ``fake``, ``openai``, ``replay``, ..."""
    name: str = ""
    """What follows the prefix (a model name, a cassette path, ...), stripped."""
    options: dict[str, str] = field(default_factory=dict)
    """``key=value`` settings a provider read out of ``name`` (``fake:latency=0.2``)."""

    @property
    def text(self) -> str:
        """The spec as written: ``provider`` or ``provider:name``."""
        return f"{self.provider}:{self.name}" if self.name else self.provider


def parse_model_spec(spec: str) -> ModelSpec:
    """Split ``spec`` and let its provider check it; builds no model and needs no key.

    Raises:
        ConfigError: unknown provider prefix (the message lists the known ones), or a
            spec its provider rejects.
    """
    provider, _, rest = spec.strip().partition(":")
    parsed = ModelSpec(provider.strip(), name=rest.strip())
    return get_provider(parsed.provider, spec).check(parsed)


def get_model(spec: str | BaseChatModel | None = None) -> BaseChatModel:
    """A chat model for ``spec``; a model instance passes through, None means the default.

    Example:
        ```python
        get_model("fake:latency=0.2")
        get_model("openai:gpt-4o-mini")   # reads OPENAI_API_KEY and OPENAI_BASE_URL
        ```
    """
    if spec is not None and not isinstance(spec, str):
        return spec
    parsed = parse_model_spec(spec or DEFAULT_MODEL_SPEC)
    return get_provider(parsed.provider).get_model(parsed)
