"""Model specs resolve through the provider registry: built-ins, run-time and plugin providers."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.errors import ConfigError
from orchestrator.models import (
    FakeChatModel,
    ModelSpec,
    get_model,
    known_providers,
    parse_model_spec,
    register_model_provider,
)
from orchestrator.models.providers import unregister_model_provider
from tests.support.plugins import install_fixture

HEALTH_REQUEST = "check the health of web-2"


class CountingProvider:
    """``counting``: the fake model, counting the models it built."""

    def __init__(self) -> None:
        self.built: list[FakeChatModel] = []

    def check(self, spec: ModelSpec) -> ModelSpec:
        return spec

    def get_model(self, spec: ModelSpec) -> FakeChatModel:
        model = FakeChatModel(model_name=f"counting:{spec.name}")
        self.built.append(model)
        return model


@pytest.fixture
def counting() -> Iterator[CountingProvider]:
    provider = CountingProvider()
    register_model_provider("counting", provider)
    yield provider
    unregister_model_provider("counting")


def test_built_in_providers_register_through_entry_points() -> None:
    assert {"fake", "openai", "replay"} <= set(known_providers())
    assert parse_model_spec(" openai:gpt-4o-mini ") == ModelSpec("openai", "gpt-4o-mini")
    assert parse_model_spec("fake:latency=0.2").options == {"latency": "0.2"}
    assert parse_model_spec("replay:run.jsonl").name == "run.jsonl"


def test_unknown_prefix_is_one_line_listing_the_known_providers() -> None:
    with pytest.raises(ConfigError) as caught:
        get_model("anthropic:claude")
    message = str(caught.value)
    assert "\n" not in message
    assert "'anthropic:claude'" in message and "'anthropic'" in message
    assert "known providers: fake, local, openai, replay" in message


def test_provider_registered_at_run_time_drives_a_run(counting: CountingProvider,
                                                      domain_db: Path) -> None:
    assert "counting" in known_providers()
    result = Orchestrator("counting:any", agents=it_ops_agents(), domain_db=domain_db
                          ).run(HEALTH_REQUEST)
    assert result.ok, result.answer
    (model,) = counting.built
    assert model.model_name == "counting:any"
    assert len(model.calls) >= 3  # plan, the agent's steps, the answer


def test_installed_provider_plugin_is_imported_only_when_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, domain_db: Path
) -> None:
    target = install_fixture("echoing_provider", tmp_path)
    monkeypatch.syspath_prepend(str(target))
    importlib.invalidate_caches()
    monkeypatch.delitem(sys.modules, "echoing_provider", raising=False)

    assert "echoing" in known_providers()
    assert "echoing_provider" not in sys.modules  # listed from its entry point, not imported
    with pytest.raises(ConfigError, match="echoing has no voice 'shout'"):
        parse_model_spec("echoing:shout")

    result = Orchestrator("echoing:loud", agents=it_ops_agents(), domain_db=domain_db
                          ).run(HEALTH_REQUEST)
    assert result.ok, result.answer
    plugin = importlib.import_module("echoing_provider")
    (model,) = plugin.MODELS
    assert model.model_name == "echoing:loud" and model.calls
    monkeypatch.delitem(sys.modules, "echoing_provider")


def test_a_provider_must_have_check_and_get_model() -> None:
    with pytest.raises(TypeError, match="not a ModelProvider"):
        register_model_provider("broken", object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prefix"):
        register_model_provider("a:b", CountingProvider())
