"""The demo: business systems database plus the knowledge base the domain packs ship."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from orchestrator.config import Settings
from orchestrator.domain_db import reset_domain_db
from retrieval.ingest import IngestReport, ingest_paths
from retrieval.store import KnowledgeStore

#: Collection name -> the package folder holding its files.
DEMO_KNOWLEDGE: dict[str, tuple[str, str]] = {
    "it_ops": ("agents.it_ops", "knowledge"),
    "commerce": ("agents.commerce", "knowledge"),
    "finance": ("agents.finance", "knowledge"),
    "healthcare": ("agents.healthcare", "knowledge"),
    "marketing": ("agents.marketing", "knowledge"),
}


def knowledge_folder(collection: str) -> Path:
    package, folder = DEMO_KNOWLEDGE[collection]
    return Path(str(resources.files(package).joinpath(folder)))


def ingest_demo_knowledge(store: KnowledgeStore, *, fresh: bool = False) -> list[IngestReport]:
    """Ingest the shipped knowledge bases (replacing them when ``fresh``)."""
    reports = []
    for collection in DEMO_KNOWLEDGE:
        if fresh and store.has_collection(collection):
            store.delete_collection(collection)
        reports.append(ingest_paths(store, [knowledge_folder(collection)], collection))
    return reports


def missing_demo_knowledge(store: KnowledgeStore) -> list[str]:
    present = set(store.collection_names())
    return [name for name in DEMO_KNOWLEDGE if name not in present]


def reset_demo(settings: Settings) -> tuple[Path, list[IngestReport]]:
    """Recreate the domain database from seed and re-ingest the demo knowledge base."""
    path = reset_domain_db(settings.domain_db_path)
    reports = ingest_demo_knowledge(KnowledgeStore.from_settings(settings), fresh=True) \
        if settings.knowledge else []
    return path, reports
