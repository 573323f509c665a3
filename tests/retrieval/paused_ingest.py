"""An ingest that stops once some batches are stored, so a test can kill it with SIGKILL.

``python -m tests.retrieval.paused_ingest CHROMA FILE COLLECTION BATCHES CHUNK_SIZE`` ingests
FILE with the hashing embedder; when BATCHES batches are stored it prints ``paused`` and
waits to be killed. Only the embedder is a test double: the store and ingest are the real ones.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from orchestrator.retrieval.embedders import HashEmbedder
from orchestrator.retrieval.ingest import ingest_paths
from orchestrator.retrieval.store import KnowledgeStore


class PausingEmbedder(HashEmbedder):
    """The hashing embedder (same name, so its chunks match ``hash``), stopping before a batch."""

    def __init__(self, batches: int) -> None:
        super().__init__()
        self.batches = batches
        self.calls = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if self.calls == self.batches:
            # Every earlier batch is stored: the store embeds a batch, then writes it.
            print("paused", flush=True)
            threading.Event().wait()
        self.calls += 1
        return super().embed_documents(texts)


def main(chroma: str, file: str, collection: str, batches: str, chunk_size: str) -> None:
    store = KnowledgeStore(Path(chroma), embedder=PausingEmbedder(int(batches)))
    ingest_paths(store, [Path(file)], collection, chunk_size=int(chunk_size), chunk_overlap=0)
    print("finished", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
