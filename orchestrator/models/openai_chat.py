"""The ``openai:<model>`` provider: OpenAI, or any OpenAI-compatible server.

``langchain_openai`` (and with it the ``openai`` client) is imported only when a model is
built: importing it costs about a second.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import TYPE_CHECKING

from orchestrator.config import STRUCTURED_METHODS
from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from orchestrator.models.specs import ModelSpec


#: Options an ``openai:`` spec may carry after the model name, and their defaults.
OPTIONS: dict[str, float] = {"max_tokens": 0, "timeout": 120.0, "retries": 2, "slots": 0}
"""``max_tokens`` (0: the server's default), ``timeout`` (seconds per call), ``retries``
(of a failed call, by the client), ``slots`` (calls the endpoint takes at once; 0: no
limit; a call waits for a free slot, and the wait is not charged to the subtask)."""


class OpenAIProvider:
    """``openai:<model>[,max_tokens=N][,timeout=S][,retries=N][,structured=METHOD]``; reads
    ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL``. Options follow the model name after commas
    (model names may contain ``:``, as Ollama's do), e.g.
    ``openai:qwen2.5:1.5b,max_tokens=512,timeout=60,structured=json_schema``."""

    def check(self, spec: ModelSpec) -> ModelSpec:
        name, *items = spec.name.split(",")
        if not name.strip():
            raise ConfigError(f"model spec {spec.text!r} needs a name, e.g. "
                              "'openai:gpt-4o-mini'")
        options: dict[str, str] = {}
        for item in filter(None, (i.strip() for i in items)):
            key, eq, value = item.partition("=")
            key = key.strip()
            if eq and key == "structured":
                if value.strip() not in STRUCTURED_METHODS:
                    raise ConfigError(f"model option structured in {spec.text!r} must be one "
                                      f"of {', '.join(STRUCTURED_METHODS)}, not "
                                      f"{value.strip()!r}")
                options[key] = value.strip()
                continue
            if not eq or key not in OPTIONS:
                raise ConfigError(f"bad option {item!r} in model spec {spec.text!r}: use "
                                  f"{', '.join(f'{k}=N' for k in OPTIONS)} or structured="
                                  f"{'|'.join(STRUCTURED_METHODS)}")
            try:
                number = float(value)
            except ValueError:
                number = -1.0
            if not math.isfinite(number):
                number = -1.0
            whole = key != "timeout"
            if number < 0 or (whole and not number.is_integer()) or (
                    key == "timeout" and number == 0):
                raise ConfigError(f"model option {key} in {spec.text!r} must be "
                                  f"{'a whole number' if whole else 'a number of seconds'} "
                                  f"{'above' if key == 'timeout' else 'of at least'} 0, "
                                  f"not {value.strip()!r}")
            options[key] = value.strip()
        return replace(spec, name=name.strip(), options=options)

    def get_model(self, spec: ModelSpec) -> BaseChatModel:
        api_key = os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise ConfigError(
                f"openai:{spec.name} needs OPENAI_API_KEY (for a local OpenAI-compatible "
                "server any value works; set OPENAI_BASE_URL to its /v1 address)"
            )
        import httpx
        from langchain_openai import ChatOpenAI

        def option(key: str) -> float:
            return float(spec.options.get(key, OPTIONS[key]))

        max_tokens = int(option("max_tokens")) or None
        return ChatOpenAI(
            model=spec.name,
            api_key=api_key,  # type: ignore[arg-type]
            base_url=os.environ.get("OPENAI_BASE_URL") or None,
            temperature=0,
            timeout=option("timeout"),
            max_retries=int(option("retries")),
            max_completion_tokens=max_tokens,
            # No pooled connections for async calls: the synchronous API runs each request
            # in an event loop of its own, and a connection pooled in a loop that has closed
            # fails the next request ("Event loop is closed").
            http_async_client=httpx.AsyncClient(
                limits=httpx.Limits(max_keepalive_connections=0),
                timeout=option("timeout")),
            # how the engine asks it for a plan (orchestrator.config.StructuredMethod)
            metadata={"orchestrator_structured": spec.options.get("structured", "auto"),
                      "orchestrator_slots": int(option("slots")) or None,
                      # calls to one server and model share its slots
                      "orchestrator_endpoint": f"{os.environ.get('OPENAI_BASE_URL') or ''}"
                                               f"#{spec.name}"},
        )
