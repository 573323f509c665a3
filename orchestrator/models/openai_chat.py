"""The ``openai:<model>`` provider: OpenAI, or any OpenAI-compatible server.

``langchain_openai`` (and with it the ``openai`` client) is imported only when a model is
built: importing it costs about a second.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

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

SECONDS = frozenset({"timeout"})
"""Options that are a number of seconds above 0; the others are whole numbers >= 0."""


def split_options(spec: ModelSpec, allowed: dict[str, float], example: str) -> ModelSpec:
    """``spec`` with the ``,key=value`` items after its name moved into ``options``.

    ``allowed`` names the numeric options (whole numbers, or seconds for those in
    :data:`SECONDS`); ``structured=METHOD`` is always allowed.

    Raises:
        ConfigError: an empty name, an unknown option or a bad value (one line each).
    """
    name, *items = spec.name.split(",")
    if not name.strip():
        raise ConfigError(f"model spec {spec.text!r} needs a name, e.g. {example!r}")
    options: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in items)):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if eq and key == "structured":
            if value not in STRUCTURED_METHODS:
                raise ConfigError(f"model option structured in {spec.text!r} must be one of "
                                  f"{', '.join(STRUCTURED_METHODS)}, not {value!r}")
            options[key] = value
            continue
        if not eq or key not in allowed:
            raise ConfigError(f"bad option {item!r} in model spec {spec.text!r}: use "
                              f"{', '.join(f'{k}=N' for k in allowed)} or structured="
                              f"{'|'.join(STRUCTURED_METHODS)}")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not math.isfinite(number):
            number = -1.0
        seconds = key in SECONDS
        if number < 0 or (not seconds and not number.is_integer()) or (
                seconds and number == 0):
            what = "a number of seconds above 0" if seconds else "a whole number of at least 0"
            raise ConfigError(f"model option {key} in {spec.text!r} must be {what}, "
                              f"not {value!r}")
        options[key] = value
    return replace(spec, name=name.strip(), options=options)


def chat_openai(model: str, *, base_url: str | None, api_key: str, options: dict[str, str],
                defaults: dict[str, float], structured: str = "auto",
                hints: dict[str, Any] | None = None) -> BaseChatModel:
    """A ``ChatOpenAI`` for ``model`` at ``base_url`` with the engine's metadata set.

    ``options`` are a checked spec's (``max_tokens``, ``timeout``, ``retries``, ``slots``,
    ``structured``); what they leave out comes from ``defaults`` and ``structured``.
    ``hints`` are more engine metadata (``orchestrator_shortlist``).
    """
    import httpx
    from langchain_openai import ChatOpenAI

    def option(key: str) -> float:
        return float(options.get(key, defaults[key]))

    timeout = option("timeout")
    return ChatOpenAI(
        model=model,
        api_key=api_key,  # type: ignore[arg-type]
        base_url=base_url,
        temperature=0,
        timeout=timeout,
        max_retries=int(option("retries")),
        max_completion_tokens=int(option("max_tokens")) or None,
        # No pooled connections for async calls: the synchronous API runs each request in
        # an event loop of its own, and a connection pooled in a loop that has closed fails
        # the next request ("Event loop is closed").
        http_async_client=httpx.AsyncClient(
            limits=httpx.Limits(max_keepalive_connections=0), timeout=timeout),
        # how the engine asks it for a plan (orchestrator.config.StructuredMethod)
        metadata={"orchestrator_structured": options.get("structured", structured),
                  "orchestrator_slots": int(option("slots")) or None,
                  # calls to one server and model share its slots
                  "orchestrator_endpoint": f"{base_url or ''}#{model}", **(hints or {})},
    )


class OpenAIProvider:
    """``openai:<model>[,max_tokens=N][,timeout=S][,retries=N][,structured=METHOD]``; reads
    ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL``. Options follow the model name after commas
    (model names may contain ``:``, as Ollama's do), e.g.
    ``openai:qwen2.5:1.5b,max_tokens=512,timeout=60,structured=json_schema``."""

    def check(self, spec: ModelSpec) -> ModelSpec:
        return split_options(spec, OPTIONS, "openai:gpt-4o-mini")

    def get_model(self, spec: ModelSpec) -> BaseChatModel:
        api_key = os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise ConfigError(
                f"openai:{spec.name} needs OPENAI_API_KEY (for a local OpenAI-compatible "
                "server any value works; set OPENAI_BASE_URL to its /v1 address)"
            )
        return chat_openai(spec.name, base_url=os.environ.get("OPENAI_BASE_URL") or None,
                           api_key=api_key, options=spec.options, defaults=OPTIONS)
