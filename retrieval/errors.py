"""Errors the RAG store raises on purpose; all are :class:`OrchestratorError`, so the CLI
prints them as one line."""

from __future__ import annotations

from orchestrator.errors import OrchestratorError, ToolRefusedError


class RetrievalError(OrchestratorError):
    """Root of the errors raised by ``retrieval``."""


class IngestError(RetrievalError):
    """A file cannot be turned into documents; the message is the one-line reason."""


class EmbedderMismatchError(RetrievalError):
    """A collection is queried or filled with an embedder other than the one it was built with."""


class CollectionAccessError(RetrievalError, ToolRefusedError):
    """A caller asked for a collection that is missing or that it may not read."""
