"""Splitting documents into overlapping chunks that follow headings and paragraphs.

langchain-text-splitters does the splitting: ``MarkdownHeaderTextSplitter`` cuts
Markdown-like text into sections under their h1-h3 headings, then
``RecursiveCharacterTextSplitter`` cuts long sections at paragraph, line, sentence and
word boundaries, with overlap. Sizes are in characters.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

from orchestrator.retrieval.documents import MetadataValue, SourceDocument

_HEADER_LEVELS = [("#", "h1"), ("##", "h2"), ("###", "h3")]
_SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", " ", ""]
_MARKDOWN_FORMATS = frozenset({"markdown", "html"})
_HEADING_LINE = re.compile(r"^#{1,3} +\S", re.MULTILINE)
# The header splitter deletes characters that are not printable, which includes tabs and
# no-break spaces; turn them into plain spaces so words stay apart.
_ODD_SPACE = re.compile(r"[^\S\n]")


@dataclass(frozen=True)
class Chunk:
    """A piece of a document, the unit that is embedded and retrieved."""

    text: str
    """The chunk's text (never empty); the document title is not prepended."""
    position: int
    """0-based index of the chunk within its document."""
    heading: str
    """The heading path the chunk sits under, like ``"Runbook > Failover"``; ``""`` if none."""
    content_hash: str
    """sha256 hex digest of ``text``."""


@dataclass(frozen=True)
class _Section:
    heading: str
    text: str


def chunk_document(
    doc: SourceDocument, *, chunk_size: int = 1200, chunk_overlap: int = 150
) -> list[Chunk]:
    """Split ``doc`` into chunks of at most about ``chunk_size`` characters.

    Markdown and HTML documents, and plain text with ``#`` heading lines, are first cut at
    their h1-h3 headings; every chunk records its heading path. A document shorter than
    ``chunk_size`` becomes exactly one chunk.

    Raises:
        ValueError: unless ``chunk_size > chunk_overlap >= 0``.

    Example:
        >>> doc = SourceDocument("a.md", "A", "# A\\n\\nHello.", {"format": "markdown"})
        >>> [(c.position, c.heading, c.text) for c in chunk_document(doc)]
        [(0, 'A', '# A\\n\\nHello.')]
    """
    if chunk_overlap < 0:
        raise ValueError(f"chunk_overlap must be >= 0, got {chunk_overlap}")
    if chunk_size <= chunk_overlap:
        raise ValueError(
            f"chunk_size must be greater than chunk_overlap, got {chunk_size} <= {chunk_overlap}"
        )
    text = doc.text.strip()
    if not text:
        return []
    sections = _sections(text) if _is_markdown_like(doc) else [_Section("", text)]
    if len(text) < chunk_size:
        pieces = [(sections[0].heading if sections else "", text)]
    else:
        pieces = [
            (section.heading, piece)
            for section in sections
            for piece in _split_section(section.text, chunk_size, chunk_overlap)
        ]
    kept = [(heading, piece.strip()) for heading, piece in pieces if piece.strip()]
    return [
        Chunk(piece, position, heading, hashlib.sha256(piece.encode()).hexdigest())
        for position, (heading, piece) in enumerate(kept)
    ]


def chunk_metadata(doc: SourceDocument, chunk: Chunk) -> dict[str, MetadataValue]:
    """The flat metadata to store with ``chunk``: the document's own plus where the chunk is from.

    The title goes here rather than into the chunk text.
    """
    return {
        **doc.metadata,
        "source": doc.source,
        "doc_id": doc.doc_id,
        "title": doc.title,
        "heading": chunk.heading,
        "position": chunk.position,
        "content_hash": chunk.content_hash,
    }


def _is_markdown_like(doc: SourceDocument) -> bool:
    fmt = doc.metadata.get("format")
    return fmt in _MARKDOWN_FORMATS or (fmt == "text" and bool(_HEADING_LINE.search(doc.text)))


def _sections(text: str) -> list[_Section]:
    """The text cut at its h1-h3 headings, paragraphs kept apart by blank lines.

    The splitter runs line by line because its own grouping joins paragraphs with
    ``"  \\n"``, which would hide them from the paragraph separator afterwards.
    """
    splitter = MarkdownHeaderTextSplitter(
        _HEADER_LEVELS, strip_headers=False, return_each_line=True
    )
    sections: list[tuple[dict[str, str], list[str]]] = []
    for block in splitter.split_text(_ODD_SPACE.sub(" ", text)):
        metadata: dict[str, str] = dict(block.metadata)
        if sections and sections[-1][0] == metadata:
            sections[-1][1].append(block.page_content)
        elif sections and _only_headings(sections[-1][1]) and len(sections[-1][0]) < len(metadata):
            # A heading directly followed by a sub-heading: keep them in one section.
            sections[-1] = (metadata, [*sections[-1][1], block.page_content])
        else:
            sections.append((metadata, [block.page_content]))
    return [
        _Section(" > ".join(metadata[name] for _, name in _HEADER_LEVELS if name in metadata),
                 "\n\n".join(blocks))
        for metadata, blocks in sections
    ]


def _split_section(text: str, chunk_size: int, chunk_overlap: int) -> list[str]:
    """``text`` in pieces of at most ``chunk_size``, its leading heading lines kept on the first.

    Split alone, a heading would become a chunk of its own with nothing to retrieve it by;
    so the body is split with room left for the heading.
    """
    if len(text) <= chunk_size:
        return [text]
    lines = text.split("\n")
    start = 0
    while start < len(lines) and (not lines[start].strip() or _HEADING_LINE.match(lines[start])):
        start += 1
    head, body = "\n".join(lines[:start]).strip(), "\n".join(lines[start:]).strip()
    budget = chunk_size - len(head) - 2
    if not head or not body or budget <= chunk_overlap:
        return _splitter(chunk_size, chunk_overlap).split_text(text)
    first, *rest = _splitter(budget, chunk_overlap).split_text(body)
    return [f"{head}\n\n{first}", *rest]


def _splitter(chunk_size: int, chunk_overlap: int) -> RecursiveCharacterTextSplitter:
    return RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        separators=_SEPARATORS,
        keep_separator="end",
    )


def _only_headings(blocks: list[str]) -> bool:
    return all(_HEADING_LINE.match(line) for block in blocks for line in block.split("\n"))
