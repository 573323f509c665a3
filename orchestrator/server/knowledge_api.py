"""The knowledge base over HTTP: collections, search, upload a file to ingest, delete a source.

Tenancy rule: a collection name a client uses never contains ``--``. The ``default``
tenant's collections are stored under their own names (the ones the CLI and the domain
packs' agents use); any other tenant's are stored as ``<tenant>--<name>`` and shown to it as
``<name>``. A key lists, searches and changes only its tenant's collections: the default
tenant sees no name with ``--`` in it, another tenant only names with its own prefix, so no
tenant ever sees or reaches another's (tenant names have no ``--`` ambiguity: a name cannot
hold ``--``, so ``a--b--x`` is tenant ``a--b``'s ``x`` and never tenant ``a``'s).

Agents retrieve from the collections their specs name, as stored: the default tenant's.
Files another tenant uploads are for its own search; its agents do not read them.

Uploads go through the project's ingest path (:meth:`KnowledgeBase.ingest`), one file at a
time, its source named after the file; a file over the server's upload limit
(``create_app(max_upload_bytes=...)``, 5 MB by default) or of a type the ingest path cannot
read is refused before anything is stored.
"""

from __future__ import annotations

import asyncio
import functools
import re
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, UploadFile
from pydantic import BaseModel, Field

from orchestrator.api import Orchestrator
from orchestrator.knowledge import KnowledgeBase
from orchestrator.retrieval.documents import SUPPORTED_SUFFIXES
from orchestrator.retrieval.errors import RetrievalError
from orchestrator.server.auth import require
from orchestrator.server.errors import ApiError
from orchestrator.server.keys import DEFAULT_TENANT, KeyInfo
from orchestrator.server.native import NativeRoute

router = APIRouter(prefix="/api/knowledge", tags=["knowledge"], route_class=NativeRoute)

TENANT_SEPARATOR = "--"
# The store's rule for collection names (3-63 characters; see retrieval.store), checked here
# on the stored name so that a tenant's prefix counts against the length.
_STORED_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,119}")
_READ_CHUNK = 64 * 1024


# --- tenancy --------------------------------------------------------------------------------


def stored_name(tenant: str, name: str) -> str:
    """The store's name of a tenant's collection ``name``; ApiError 400 for a bad name."""
    if TENANT_SEPARATOR in name:
        raise ApiError(400, f"collection name {name!r} must not contain "
                       f"{TENANT_SEPARATOR!r}", code="invalid_collection", param="collection")
    stored = name if tenant == DEFAULT_TENANT else f"{tenant}{TENANT_SEPARATOR}{name}"
    # the name itself is checked, not only the stored one: "-plans" of tenant "a" would be
    # stored as "a---plans", which reads as tenant "a-"'s "plans"
    if not (_STORED_NAME.fullmatch(stored) and _STORED_NAME.fullmatch(name)) or ".." in stored:
        room = 63 - (len(stored) - len(name))
        raise ApiError(400, f"invalid collection name {name!r}: use 3-{room} letters, digits, "
                       "'.', '_' or '-', starting and ending with a letter or digit",
                       code="invalid_collection", param="collection")
    return stored


def shown_name(tenant: str, stored: str) -> str | None:
    """The name ``tenant`` knows a stored collection by, or None when it is not its own."""
    if tenant == DEFAULT_TENANT:
        return None if TENANT_SEPARATOR in stored else stored
    name = stored.removeprefix(f"{tenant}{TENANT_SEPARATOR}")
    own = name != stored and TENANT_SEPARATOR not in name and bool(_STORED_NAME.fullmatch(name))
    return name if own else None


def _knowledge(request: Request) -> KnowledgeBase:
    orch: Orchestrator = request.app.state.orchestrator
    # A KnowledgeStore, or a Retriever over one (the server names neither: engine internals).
    found = orch.knowledge
    store: Any = getattr(found, "store", found)
    if store is None:
        raise ApiError(404, "the knowledge base is off on this server (ORCHESTRATOR_KNOWLEDGE)",
                       code="knowledge_off")
    return KnowledgeBase(store, orch.settings)


def _owned(kb: KnowledgeBase, tenant: str) -> dict[str, str]:
    """The tenant's collections: shown name -> stored name."""
    return {shown: stored for stored in kb.store.collection_names()
            if (shown := shown_name(tenant, stored)) is not None}


def _existing(kb: KnowledgeBase, tenant: str, name: str) -> str:
    stored = stored_name(tenant, name)
    if stored not in kb.store.collection_names():
        raise ApiError(404, f"no collection named {name!r}", code="collection_not_found",
                       param="collection")
    return stored


# --- collections and search -----------------------------------------------------------------


class CollectionOut(BaseModel):
    name: str
    chunks: int
    sources: int
    embedder: str
    dimension: int


@router.get("/collections")
async def list_collections(request: Request,
                           caller: Annotated[KeyInfo, Depends(require("chat"))]
                           ) -> list[CollectionOut]:
    """The caller's tenant's collections with their size."""
    kb = _knowledge(request)

    def collections() -> list[CollectionOut]:
        owned = {stored: shown for shown, stored in _owned(kb, caller.tenant).items()}
        return [CollectionOut(name=owned[s.name], chunks=s.chunks, sources=s.sources,
                              embedder=s.embedder, dimension=s.dimension)
                for s in kb.collections() if s.name in owned]

    return await asyncio.to_thread(collections)


class HitOut(BaseModel):
    collection: str
    source: str
    citation: str = Field(description="source#chunk: what answers cite.")
    title: str
    heading: str
    text: str
    score: float


class SearchOut(BaseModel):
    query: str
    hits: list[HitOut]


@router.get("/search")
async def search(
    request: Request, caller: Annotated[KeyInfo, Depends(require("chat"))],
    q: Annotated[str, Query(min_length=1, max_length=2000, description="What to look for.")],
    collection: Annotated[str | None, Query(
        description="One of the tenant's collections (default: all of them).")] = None,
    k: Annotated[int, Query(ge=1, le=50, description="How many hits.")] = 5,
    mode: Annotated[Literal["hybrid", "dense", "bm25"], Query()] = "hybrid",
) -> SearchOut:
    """The best ``k`` chunks for ``q`` in the tenant's collections, with their citations."""
    kb = _knowledge(request)

    def hits() -> list[HitOut]:
        owned = _owned(kb, caller.tenant)
        if collection is not None:
            targets = {collection: _existing(kb, caller.tenant, collection)}
        else:
            targets = owned
        if not targets:  # an empty list would search every tenant's collections
            return []
        shown = {stored: name for name, stored in targets.items()}
        return [HitOut(collection=shown[h.collection], source=h.source, citation=h.citation,
                       title=h.title, heading=h.heading, text=h.text, score=h.score)
                for h in kb.search(q, list(shown), k=k, mode=mode)]

    return SearchOut(query=q, hits=await asyncio.to_thread(hits))


# --- ingest and delete ----------------------------------------------------------------------


class IngestOut(BaseModel):
    collection: str
    source: str = Field(description="The stored source: the file's name.")
    documents: int
    chunks_added: int
    skipped: int = Field(description="Documents stored before, unchanged.")


def _file_name(upload: UploadFile) -> str:
    given = upload.filename or ""
    if "/" in given or "\\" in given:
        raise ApiError(400, "the uploaded file's name must not hold a path (/ or \\): send "
                       "its name alone (e.g. runbook.md)", code="invalid_file_name",
                       param="file")
    name = given
    if not _FILE_NAME.fullmatch(name) or ".." in name:
        raise ApiError(400, "the uploaded file needs a name of 1-120 letters, digits, spaces "
                       "or . _ - (e.g. runbook.md)", code="invalid_file_name", param="file")
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ApiError(415, f"unsupported file type '{suffix or '(none)'}': upload one of "
                       f"{', '.join(SUPPORTED_SUFFIXES)}", code="unsupported_file_type",
                       param="file")
    return name


async def _save(upload: UploadFile, path: Path, limit: int) -> None:
    """Copy the upload to ``path``; ApiError 413 once it is over ``limit`` bytes."""
    size = 0
    with path.open("wb") as out:
        while piece := await upload.read(_READ_CHUNK):
            size += len(piece)
            if size > limit:
                raise ApiError(413, f"the file is over the upload limit of {limit} bytes",
                               code="file_too_large", param="file")
            out.write(piece)


INGEST_THREADS = 2
"""Uploads ingested at once; more wait in line. Ingesting is CPU work (parsing, embedding):
on threads of their own, uploads never hold up the threads every other route reads the run
store from (asyncio's default executor)."""
_ingest_pool: list[ThreadPoolExecutor] = []
_ingest_pool_lock = threading.Lock()


def _ingest_threads() -> ThreadPoolExecutor:
    with _ingest_pool_lock:
        if not _ingest_pool:
            _ingest_pool.append(ThreadPoolExecutor(INGEST_THREADS,
                                                   thread_name_prefix="orchestrator-ingest"))
        return _ingest_pool[0]


@router.post("/{collection}/files", status_code=201)
async def upload_file(collection: str, file: UploadFile, request: Request,
                      caller: Annotated[KeyInfo, Depends(require("ingest"))]) -> IngestOut:
    """Ingest one file (multipart field ``file``: .md, .txt, .html, .pdf, .jsonl) into the
    collection, created when new; a file uploaded again replaces its earlier version."""
    kb = _knowledge(request)
    stored = stored_name(caller.tenant, collection)
    name = _file_name(file)
    with tempfile.TemporaryDirectory(prefix="orchestrator-upload-") as folder:
        path = Path(folder) / name
        await _save(file, path, request.app.state.max_upload_bytes)
        report = await asyncio.get_running_loop().run_in_executor(
            _ingest_threads(), functools.partial(kb.ingest, [path], stored))
    if report.failed:
        reason = "; ".join(why for _, why in report.failed)
        raise ApiError(422, f"{name} could not be ingested: {reason}", code="ingest_failed",
                       param="file")
    return IngestOut(collection=collection, source=name, documents=report.documents,
                     chunks_added=report.chunks_added, skipped=report.skipped)


class DeletionOut(BaseModel):
    collection: str
    source: str
    sources: list[str] = Field(description="The sources removed (a JSONL file's documents "
                               "are file#id each).")
    chunks: int


@router.delete("/{collection}/sources/{source:path}")
async def delete_source(collection: str, source: str, request: Request,
                        caller: Annotated[KeyInfo, Depends(require("ingest"))]) -> DeletionOut:
    """Remove one source (a file) and its chunks from the collection."""
    kb = _knowledge(request)

    def delete() -> DeletionOut:
        stored = _existing(kb, caller.tenant, collection)
        try:
            gone = kb.delete(stored, source)
        except RetrievalError as exc:  # no such source in it
            raise ApiError(404, str(exc).replace(repr(stored), repr(collection)),
                           code="source_not_found", param="source") from None
        return DeletionOut(collection=collection, source=source, sources=list(gone.sources),
                           chunks=gone.chunks)

    return await asyncio.to_thread(delete)
