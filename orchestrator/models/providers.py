"""Model providers: a registry keyed by the prefix of a model spec (``fake``, ``openai``, ...).

A provider is found through the entry-point group ``orchestrator.model_providers``; the
built-in ones register there like any third-party package would, so a new provider is one
module and one entry point:

```toml
[project.entry-points."orchestrator.model_providers"]
echo = "my_package.echo:EchoProvider"
```

The entry point names a :class:`ModelProvider`: an instance, or a class that takes no
arguments. Its module is imported only when a spec with its prefix is used.
:func:`register_model_provider` adds one at run time (tests, applications).
"""

from __future__ import annotations

import threading
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from orchestrator.models.specs import ModelSpec

ENTRY_POINT_GROUP = "orchestrator.model_providers"


@runtime_checkable
class ModelProvider(Protocol):
    """Makes chat models for the specs that start with one prefix.

    Example:
        ```python
        class EchoProvider:
            def check(self, spec: ModelSpec) -> ModelSpec:
                return spec                     # "echo" and "echo:<anything>" are fine

            def get_model(self, spec: ModelSpec) -> BaseChatModel:
                return EchoChatModel(prefix=spec.name)
        ```
    """

    def check(self, spec: ModelSpec) -> ModelSpec:
        """Validate ``spec`` (``spec.name`` is the text after the prefix) without building a
        model or needing credentials; return it, possibly with ``options`` filled in.

        Raises:
            ConfigError: the spec is malformed; the message says what a good one looks like.
        """
        ...

    def get_model(self, spec: ModelSpec) -> BaseChatModel:
        """The chat model for a spec that :meth:`check` returned."""
        ...


_registered: dict[str, ModelProvider] = {}
_loaded: dict[str, ModelProvider] = {}
_lock = threading.Lock()


def register_model_provider(prefix: str, provider: ModelProvider) -> None:
    """Use ``provider`` for specs starting with ``prefix``; it wins over an entry point."""
    if not prefix or ":" in prefix or prefix != prefix.strip():
        raise ValueError(f"a provider prefix is a word without ':' or spaces, not {prefix!r}")
    if not isinstance(provider, ModelProvider):
        raise TypeError(f"{provider!r} is not a ModelProvider (it needs check and get_model)")
    with _lock:
        _registered[prefix] = provider


def unregister_model_provider(prefix: str) -> None:
    """Forget a provider added with :func:`register_model_provider` (no-op if absent)."""
    with _lock:
        _registered.pop(prefix, None)


def known_providers() -> list[str]:
    """Every prefix that resolves: registered at run time or installed as an entry point."""
    with _lock:
        names = set(_registered)
    return sorted(names | {ep.name for ep in _entry_points()})


def get_provider(prefix: str, spec: str | None = None) -> ModelProvider:
    """The provider for ``prefix``, importing its module on first use.

    Raises:
        ConfigError: no provider has that prefix (the message lists the known ones).
    """
    with _lock:
        found = _registered.get(prefix) or _loaded.get(prefix)
    if found is not None:
        return found
    matches = [ep for ep in _entry_points() if ep.name == prefix]
    if not matches:
        what = f"model spec {spec!r}" if spec is not None else "model spec"
        raise ConfigError(f"unknown {what}: no provider {prefix!r}; known providers: "
                          f"{', '.join(known_providers()) or 'none'}")
    provider = _load(matches[0])
    with _lock:
        return _loaded.setdefault(prefix, provider)


def _entry_points() -> list[EntryPoint]:
    # Read each time a prefix is not yet known, so a plugin installed later is found.
    return list(entry_points(group=ENTRY_POINT_GROUP))


def _load(entry: EntryPoint) -> ModelProvider:
    try:
        target = entry.load()
    except Exception as exc:
        raise ConfigError(f"model provider {entry.name!r} ({entry.value}) failed to load: "
                          f"{type(exc).__name__}: {exc}") from exc
    provider = target() if isinstance(target, type) else target
    if not isinstance(provider, ModelProvider):
        raise ConfigError(f"model provider {entry.name!r} ({entry.value}) is not a "
                          "ModelProvider: it needs check(spec) and get_model(spec)")
    return provider
