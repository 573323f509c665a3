"""Per-model settings of the openai provider: max_tokens, the per-call timeout, retries,
given after the model name (whose own ':' stays part of it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.errors import ConfigError
from orchestrator.models import get_model, parse_model_spec
from tests.support.openai_server import OpenAICompatServer, use_server


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer() as srv:
        yield use_server(srv, monkeypatch)


def test_options_follow_the_model_name_and_reach_the_server(server: OpenAICompatServer
                                                            ) -> None:
    spec = parse_model_spec("openai:qwen2.5:1.5b,max_tokens=64,timeout=30,retries=0")
    assert (spec.name, spec.options) == (
        "qwen2.5:1.5b", {"max_tokens": "64", "timeout": "30", "retries": "0"})
    model = get_model("openai:qwen2.5:1.5b,max_tokens=64,timeout=30,retries=0,slots=1")
    assert model.metadata is not None
    assert (model.metadata["orchestrator_structured"], model.metadata["orchestrator_slots"]) \
        == ("auto", 1)
    model.invoke("hello")
    body = server.requests[-1]
    assert body["model"] == "qwen2.5:1.5b" and body["max_completion_tokens"] == 64
    assert (model.request_timeout, model.max_retries) == (30.0, 0)


def test_without_options_the_defaults_hold(server: OpenAICompatServer) -> None:
    model = get_model("openai:fake-rules")
    model.invoke("hello")
    assert "max_completion_tokens" not in server.requests[-1]
    assert (model.request_timeout, model.max_retries) == (120.0, 2)


@pytest.mark.parametrize(("spec", "message"), [
    ("openai:m,max_token=5", "bad option 'max_token=5'.*use max_tokens=N, timeout=N, retries=N"
                             ", slots=N or structured="),
    ("openai:m,structured=grammar", "structured .* must be one of auto, tools, json_schema"),
    ("openai:m,max_tokens", "bad option 'max_tokens'"),
    ("openai:m,max_tokens=1.5", "max_tokens .* must be a whole number"),
    ("openai:m,retries=-1", "retries .* must be a whole number"),
    ("openai:m,timeout=0", "timeout .* must be a number of seconds above 0"),
    ("openai:m,timeout=soon", "timeout .* not 'soon'"),
    ("openai:m,timeout=nan", "timeout .* not 'nan'"),
    ("openai:m,timeout=inf", "timeout .* not 'inf'"),
    ("openai:,timeout=5", "needs a name"),
])
def test_a_bad_option_is_one_clear_line(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_model_spec(spec)
    assert "\n" not in str(caught.value)
