"""The ``openai:<model>`` provider: OpenAI, or any OpenAI-compatible server.

``langchain_openai`` (and with it the ``openai`` client) is imported only when a model is
built: importing it costs about a second.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from orchestrator.models.specs import ModelSpec


class OpenAIProvider:
    """``openai:<model>``; reads ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL``."""

    def check(self, spec: ModelSpec) -> ModelSpec:
        if not spec.name:
            raise ConfigError(f"model spec {spec.text!r} needs a name, e.g. "
                              "'openai:gpt-4o-mini'")
        return spec

    def get_model(self, spec: ModelSpec) -> BaseChatModel:
        api_key = os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise ConfigError(
                f"openai:{spec.name} needs OPENAI_API_KEY (for a local OpenAI-compatible "
                "server any value works; set OPENAI_BASE_URL to its /v1 address)"
            )
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            model=spec.name,
            api_key=api_key,  # type: ignore[arg-type]
            base_url=os.environ.get("OPENAI_BASE_URL") or None,
            temperature=0,
            timeout=120,
            max_retries=2,
        )
