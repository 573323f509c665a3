"""One of the processes that the concurrency test starts together.

Imports everything, prints ``ready``, waits for a line on stdin (the starting gun), then
does what the CLI does first, building the demo knowledge base if needed, and searches it.
"""

from __future__ import annotations

import sys

from orchestrator.config import load_settings
from orchestrator.demo import demo_collections, demo_knowledge_lock, ensure_demo_knowledge
from orchestrator.retrieval.search import Retriever
from orchestrator.retrieval.store import KnowledgeStore


def main() -> None:
    settings = load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    print("ready", flush=True)
    sys.stdin.readline()
    store = KnowledgeStore.from_settings(settings)
    ensure_demo_knowledge(store, demo_knowledge_lock(settings),  # as Orchestrator.from_settings
                          on_build=lambda: print("First run: building the demo knowledge base",
                                                 file=sys.stderr, flush=True))
    retriever = Retriever(store)
    for collection in demo_collections():
        assert retriever.search("policy", [collection], k=1, mode="dense"), collection
    print("searched", flush=True)


if __name__ == "__main__":
    main()
