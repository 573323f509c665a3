"""The demo: business systems database plus the knowledge base the domain packs ship.

Each installed domain pack's knowledge folder is ingested into a collection named after the
pack; the packs are found through their entry points (``orchestrator.agents.domains``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from orchestrator.agents.domains import installed_packs
from orchestrator.config import Settings
from orchestrator.domain_db import reset_domain_db
from orchestrator.errors import ConfigError
from orchestrator.retrieval.ingest import IngestReport, ingest_paths, pending_sources
from orchestrator.retrieval.locking import file_lock
from orchestrator.retrieval.store import KnowledgeStore
from orchestrator.storage.urls import redact_url


def demo_collections() -> dict[str, Path]:
    """Collection name -> knowledge folder, for every installed pack that ships one."""
    return {pack.name: folder for pack in installed_packs()
            if (folder := pack.knowledge_folder()) is not None}


def knowledge_folder(collection: str) -> Path:
    """The folder whose files make up the demo collection ``collection``."""
    collections = demo_collections()
    if collection not in collections:
        raise ConfigError(f"no domain pack ships knowledge for collection {collection!r} "
                          f"(known: {', '.join(collections) or 'none'})")
    return collections[collection]


def ingest_demo_knowledge(store: KnowledgeStore, *, fresh: bool = False) -> list[IngestReport]:
    """Ingest the shipped knowledge bases (replacing them when ``fresh``)."""
    reports = []
    for collection, folder in demo_collections().items():
        if fresh and store.has_collection(collection):
            store.delete_collection(collection)
        reports.append(ingest_paths(store, [folder], collection))
    return reports


def outdated_demo_knowledge(store: KnowledgeStore) -> list[str]:
    """The demo collections missing, or lacking a shipped file whole and up to date."""
    return [name for name, folder in demo_collections().items()
            if pending_sources(store, [folder], name)]


def ensure_demo_knowledge(store: KnowledgeStore, lock: Path, *,
                          on_build: Callable[[], None] | None = None) -> list[IngestReport]:
    """Build what the demo knowledge base lacks, once, however many processes ask at once.

    The processes take turns on the file ``lock`` and check only once they have it, so the
    first builds and the others find the work done. ``on_build`` is called before building;
    returns the reports of the collections built.
    """
    # Checking before the lock would be no quicker and is not safe: an embedded chromadb
    # that read a collection while another process was filling it cannot search it later
    # ("Error creating hnsw segment reader: Nothing found on disk").
    with file_lock(lock):
        collections = demo_collections()
        outdated = [name for name, folder in collections.items()
                    if pending_sources(store, [folder], name)]
        if outdated and on_build is not None:
            on_build()
        return [ingest_paths(store, [collections[name]], name) for name in outdated]


def demo_knowledge_lock(settings: Settings) -> Path:
    return settings.home / "demo-knowledge.lock"


def reset_demo(settings: Settings) -> tuple[str, list[IngestReport]]:
    """Recreate the domain database from seed and re-ingest the demo knowledge base; returns
    where the database is (a path, or a URL without its password) and the ingest reports."""
    location = reset_domain_db(settings.domain_db_url)
    shown = str(location) if isinstance(location, Path) else redact_url(location)
    if not settings.knowledge:
        return shown, []
    with file_lock(demo_knowledge_lock(settings)):
        return shown, ingest_demo_knowledge(KnowledgeStore.from_settings(settings), fresh=True)
