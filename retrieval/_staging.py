"""Writing new versions of sources so that no reader ever sees one half-done.

Chunks go in *staged* (metadata ``staged: True``, which every read of the store leaves
out). Once all of them are in, the sources' other chunks are deleted and the new ones
published by dropping the flag. Each chunk also records its version's ``chunk_count``, so
a reader can tell a whole version from part of one. The functions work on one chroma
collection; :class:`~orchestrator.retrieval.store.KnowledgeStore` decides when to call them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

STAGED = "staged"
"""Metadata flag of chunks written but not published yet."""
NOT_STAGED: dict[str, Any] = {STAGED: {"$ne": True}}
"""A chroma ``where`` for published chunks (matches chunks without the flag)."""
PAGE = 1000


def is_staged(metadata: Mapping[str, Any] | None) -> bool:
    return bool((metadata or {}).get(STAGED))


def staged_metadata(metadata: Mapping[str, Any], source: str, file_hash: str,
                    count: int) -> dict[str, Any]:
    """``metadata`` as written: staged, with its version's source, hash and chunk count."""
    return {**metadata, "source": source, "file_hash": file_hash, "chunk_count": count,
            STAGED: True}


def stage(col: Any, ids: Sequence[str], documents: Sequence[str],
          metadatas: Sequence[Mapping[str, Any]], embeddings: Sequence[Sequence[float]],
          added: list[str], hidden: list[str]) -> None:
    """Upsert one staged batch; ``added`` gets the ids not stored before, ``hidden`` the
    published ones the batch stages again (for :func:`roll_back`)."""
    before = col.get(ids=list(ids), include=["metadatas"])
    stored = set(before["ids"])
    published = {i for i, m in zip(before["ids"], before["metadatas"] or [], strict=True)
                 if not is_staged(m)}
    # Recorded before the write, so that a write failing half-way is undone too.
    added.extend(i for i in ids if i not in stored)
    hidden.extend(i for i in ids if i in published)
    col.upsert(ids=list(ids), documents=list(documents),
               metadatas=[dict(m) for m in metadatas], embeddings=list(embeddings))


def roll_back(col: Any, added: Sequence[str], hidden: Sequence[str],
              exc: BaseException) -> None:
    """Undo a write that failed: delete what it added, publish again what it hid."""
    try:
        delete_ids(col, added)
        unstage(col, hidden)  # same id: same source, version and position, so same chunk
    except Exception as cleanup:
        exc.add_note(f"rolling back {len(added)} staged chunks also failed: {cleanup}")


def publish(col: Any, sources: Sequence[str], written: Sequence[str]) -> None:
    """Delete the sources' chunks this write did not store, then publish the new ones.

    In this order a reader sees the old version, briefly none, then the new one: never a
    mix. A kill in between leaves the source missing, so the next ingest writes it again.
    """
    keep = set(written)
    for page in pages(sources):
        # Ids only: fetching metadata for every chunk just written costs memory.
        got = col.get(where={"source": {"$in": page}}, include=[])
        delete_ids(col, [i for i in got["ids"] if i not in keep])
    unstage(col, written)


def delete_leftovers(col: Any) -> None:
    """Delete every staged chunk: call only while no other writer can be staging."""
    delete_ids(col, col.get(where={STAGED: True}, include=[])["ids"])


def unstage(col: Any, ids: Sequence[str]) -> None:
    for page in pages(ids):
        col.update(ids=page, metadatas=[{STAGED: None}] * len(page))  # None drops the key


def delete_ids(col: Any, ids: Sequence[str]) -> None:
    for page in pages(ids):
        col.delete(ids=page)


def pages(items: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), PAGE):
        yield list(items[start:start + PAGE])
