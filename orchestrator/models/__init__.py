"""The model layer: model specs, the shipped fake model, and resolution of specs to models."""

from orchestrator.models.fake import FakeCall, FakeChatModel, tool_call
from orchestrator.models.specs import DEFAULT_MODEL_SPEC, get_model, parse_model_spec

__all__ = [
    "DEFAULT_MODEL_SPEC",
    "FakeCall",
    "FakeChatModel",
    "get_model",
    "parse_model_spec",
    "tool_call",
]
