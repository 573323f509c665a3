"""The model layer: model specs, the provider registry, and the shipped fake model.

Names are imported on first use, so that reading a spec does not load langchain-core.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from orchestrator.config import DEFAULT_MODEL_SPEC

if TYPE_CHECKING:
    from orchestrator.models.fake import FakeCall, FakeChatModel, tool_call
    from orchestrator.models.providers import (
        ModelProvider,
        known_providers,
        register_model_provider,
    )
    from orchestrator.models.specs import ModelSpec, get_model, parse_model_spec

_EXPORTS = {
    "FakeCall": "orchestrator.models.fake",
    "FakeChatModel": "orchestrator.models.fake",
    "tool_call": "orchestrator.models.fake",
    "ModelProvider": "orchestrator.models.providers",
    "known_providers": "orchestrator.models.providers",
    "register_model_provider": "orchestrator.models.providers",
    "ModelSpec": "orchestrator.models.specs",
    "get_model": "orchestrator.models.specs",
    "parse_model_spec": "orchestrator.models.specs",
}

__all__ = [
    "DEFAULT_MODEL_SPEC",
    "FakeCall",
    "FakeChatModel",
    "ModelProvider",
    "ModelSpec",
    "get_model",
    "known_providers",
    "parse_model_spec",
    "register_model_provider",
    "tool_call",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator.models' has no attribute {name!r}")
    return getattr(import_module(module), name)
