"""Ingest files into a collection: load, chunk, embed, store; unchanged files are skipped.

A source is a file's path relative to the ingest root: the folder given, or with several
paths the deepest folder holding them all (a single file is its name). Equal file names in
different folders therefore stay apart, and citations read ``teamA/README.md#2``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.retrieval.chunking import chunk_document, chunk_metadata
from orchestrator.retrieval.documents import SourceDocument, iter_files, load_file
from orchestrator.retrieval.errors import IngestError
from orchestrator.retrieval.store import ChunkRecord, KnowledgeStore

BATCH_CHUNKS = 256
ProgressFn = Callable[[int, int, str], None]


@dataclass
class IngestReport:
    """What an ingest did."""

    collection: str
    files: int = 0
    documents: int = 0
    chunks_added: int = 0
    skipped: int = 0
    """Documents whose content was already stored unchanged."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) for each file that could not be ingested."""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def document_hash(doc: SourceDocument) -> str:
    payload = json.dumps([doc.title, doc.text, doc.metadata], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def chunk_records(doc: SourceDocument, file_hash: str, tags: Sequence[str] = (),
                  chunk_size: int = 1200, chunk_overlap: int = 150) -> list[ChunkRecord]:
    """The document's chunks with ids and metadata (source, title, position, hashes, tags)."""
    source_key = hashlib.sha1(doc.source.encode()).hexdigest()[:16]
    doc_tags = [t for t in str(doc.metadata.get("tags", "")).split(",") if t.strip()]
    records = []
    for chunk in chunk_document(doc, chunk_size=chunk_size, chunk_overlap=chunk_overlap):
        meta = {**chunk_metadata(doc, chunk), "file_hash": file_hash}
        for tag in [*doc_tags, *tags]:
            meta[f"tag:{tag.strip()}"] = True
        records.append(ChunkRecord(f"{source_key}-{file_hash[:12]}-{chunk.position}",
                                   chunk.text, meta))
    return records


def ingest_paths(
    store: KnowledgeStore,
    paths: Sequence[str | Path],
    collection: str,
    *,
    tags: Sequence[str] = (),
    chunk_size: int = 1200,
    chunk_overlap: int = 150,
    on_progress: ProgressFn | None = None,
) -> IngestReport:
    """Ingest files and folders; a bad file is reported and the rest goes on.

    Sources are stored relative to the ingest root (see the module docstring), so citations
    read ``runbook.md#2`` rather than a machine's absolute path. A file is skipped only if
    its version is stored whole: one an interrupted ingest left half-written goes in again.
    """
    started = time.perf_counter()
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    report = IngestReport(collection=collection)
    files = _expand(paths, report)
    known = store.source_hashes(collection)
    pending: list[tuple[str, str, list[ChunkRecord]]] = []
    pending_chunks = 0
    for done, (file, display) in enumerate(files, start=1):
        report.files += 1
        try:
            batch = []
            for doc in _load(file, display):
                doc_hash = document_hash(doc)
                report.documents += 1
                if known.get(doc.source) == doc_hash:
                    report.skipped += 1
                    continue
                batch.append((doc.source, doc_hash,
                              chunk_records(doc, doc_hash, tags, chunk_size, chunk_overlap)))
        except IngestError as exc:
            report.failed.append((str(file), str(exc)))
            batch = []
        pending.extend(batch)
        pending_chunks += sum(len(chunks) for _, _, chunks in batch)
        if pending_chunks >= BATCH_CHUNKS:
            report.chunks_added += _flush(store, collection, pending, report)
            pending, pending_chunks = [], 0
        if on_progress is not None:
            on_progress(done, len(files), display)
    report.chunks_added += _flush(store, collection, pending, report)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _flush(store: KnowledgeStore, collection: str,
           pending: list[tuple[str, str, list[ChunkRecord]]], report: IngestReport) -> int:
    if not pending:
        return 0
    try:
        return store.write_sources(collection, pending)
    except IngestError as exc:
        report.failed.extend((source, str(exc)) for source, _, _ in pending)
        return 0


def pending_sources(store: KnowledgeStore, paths: Sequence[str | Path], collection: str
                    ) -> list[str]:
    """The sources under ``paths`` that :func:`ingest_paths` would write: new, changed, or
    not stored whole. Files that cannot be loaded are left out."""
    known = store.source_hashes(collection)
    pending: list[str] = []
    for file, display in _expand(paths, IngestReport(collection=collection)):
        try:
            docs = _load(file, display)
        except IngestError:
            continue
        pending.extend(d.source for d in docs if known.get(d.source) != document_hash(d))
    return pending


def _load(file: Path, display: str) -> list[SourceDocument]:
    """The file's documents, their sources named after ``display``."""
    return [dataclasses.replace(d, source=_display_source(d, display)) for d in load_file(file)]


def _expand(paths: Sequence[str | Path], report: IngestReport) -> list[tuple[Path, str]]:
    """The files to ingest, each with its source name: its path relative to the ingest root."""
    roots = [Path(raw).expanduser() for raw in paths]
    base = _ingest_root(roots)
    files: list[tuple[Path, str]] = []
    for root in roots:
        for file, problem in iter_files([root]):
            if problem is not None:
                report.failed.append((str(file), problem))
                continue
            files.append((file, Path(os.path.abspath(file)).relative_to(base).as_posix()))
    return files


def _ingest_root(roots: Sequence[Path]) -> Path:
    """The one folder given, else the deepest folder holding every given path that exists
    (a path that does not exist is only reported, so it must not move the others' names)."""
    folders = [os.path.abspath(r if r.is_dir() else r.parent) for r in roots if r.exists()]
    return Path(os.path.commonpath(folders)) if folders else Path.cwd()


def _display_source(doc: SourceDocument, display: str) -> str:
    # JSONL documents are "file#id"; everything else is the file itself.
    suffix = doc.source.split("#", 1)[1] if "#" in doc.source else ""
    return f"{display}#{suffix}" if suffix else display
