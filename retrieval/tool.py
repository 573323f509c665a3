"""The ``retrieve`` tool: knowledge-base search that an agent may only point at its own
collections. List :data:`retrieve` in an AgentSpec's tools (or ``retrieve`` in a card); the
engine replaces it with a copy bound to the store and to that agent's ``collections``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field, WithJsonSchema, create_model

from orchestrator.retrieval.errors import CollectionAccessError
from orchestrator.retrieval.search import Hit, Retriever

RETRIEVE_TOOL_NAME = "retrieve"
_DESCRIPTION = ("Search the company knowledge base (runbooks, policies, catalogs, past "
                "incidents) and return passages with citations.")


class RetrieveArgs(BaseModel):
    query: str = Field(description="What to look up, in plain words.")
    collection: str | None = Field(
        default=None, description="One of your knowledge collections; all of them when omitted."
    )
    k: int = Field(default=4, ge=1, le=20, description="How many passages to return.")


def format_hits(hits: Sequence[Hit]) -> str:
    """Passages with citation markers: ``[source#chunk] text``."""
    if not hits:
        return "No passages found."
    return "\n\n".join(f"[{h.citation}] {h.text.strip()}" for h in hits)


def _unbound(query: str, collection: str | None = None, k: int = 4) -> str:
    raise CollectionAccessError("the retrieve tool is not connected to a knowledge base")


#: What retrieve does, in MCP's tool annotations: it only reads.
READ_ONLY_ANNOTATIONS = {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False}

#: The placeholder agents list; bound per agent by :func:`bind_retrieve_tool`.
retrieve: BaseTool = StructuredTool.from_function(
    _unbound, name=RETRIEVE_TOOL_NAME, description=_DESCRIPTION, args_schema=RetrieveArgs,
    metadata=dict(READ_ONLY_ANNOTATIONS))


def bind_retrieve_tool(retriever: Retriever | None, agent: str, allowed: Sequence[str]
                       ) -> BaseTool:
    """A ``retrieve`` tool that can read only ``allowed`` collections, enforced here in code."""
    allowed_set = list(dict.fromkeys(allowed))

    def run(query: str, collection: str | None = None, k: int = 4) -> str:
        if collection is not None and collection not in allowed_set:
            raise CollectionAccessError(
                f"agent {agent} may not read collection {collection!r} "
                f"(its collections: {', '.join(allowed_set) or 'none'})"
            )
        if retriever is None:
            return "No knowledge base is configured."
        targets = [collection] if collection else allowed_set
        if not targets:
            raise CollectionAccessError(f"agent {agent} has no knowledge collections")
        present = set(retriever.store.collection_names())
        missing = [t for t in targets if t not in present]
        if missing and len(missing) == len(targets):
            return f"The knowledge collection(s) {', '.join(missing)} are empty or not ingested."
        return format_hits(retriever.search(query, [t for t in targets if t in present], k=k))

    return StructuredTool.from_function(run, name=RETRIEVE_TOOL_NAME, description=_DESCRIPTION,
                                        args_schema=_args_for(allowed_set),
                                        metadata=dict(READ_ONLY_ANNOTATIONS))


def _args_for(allowed: list[str]) -> type[BaseModel]:
    """The arguments with ``collection`` listed as one of the agent's own collections (an
    enum in the schema the model sees: a server that enforces the schema cannot name
    another). Not checked by validation: ``run`` refuses another collection in code, so the
    refusal is recorded as one."""
    if not allowed:
        return RetrieveArgs
    listed: Any = Annotated[str, WithJsonSchema({"type": "string", "enum": list(allowed)})]
    return create_model(
        "RetrieveArgs", __base__=RetrieveArgs,
        collection=(listed | None, Field(default=None, description="One of your knowledge "
                                         "collections; all of them when omitted.")))
