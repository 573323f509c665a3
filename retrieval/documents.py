"""Loading files into :class:`SourceDocument` objects, one loader per file type.

Every failure is an :class:`~orchestrator.retrieval.errors.IngestError` whose message is a one-line
reason, so an ingest can report the file and go on with the rest.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pypdf
from bs4 import BeautifulSoup, CData, NavigableString, PageElement, Tag
from pypdf.errors import PyPdfError

from orchestrator.retrieval.errors import IngestError

#: A metadata value chromadb accepts: metadata stays flat.
MetadataValue = str | int | float | bool


@dataclass(frozen=True)
class SourceDocument:
    """One document read from a file (a JSONL file holds many)."""

    source: str
    """The resolved file path; for JSONL ``"<path>#<id>"``."""
    title: str
    """The document's title (first heading, ``<title>``, JSONL ``title``, or the file stem)."""
    text: str
    """The text to chunk; HTML headings are turned into Markdown ``#`` lines."""
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    """Flat, chromadb-compatible metadata; ``format`` is always set."""
    doc_id: str = ""
    """The JSONL ``_id``/``id``; otherwise the same as ``source``."""


_HEADING_TAGS = {f"h{level}": level for level in range(1, 7)}
_DROPPED_TAGS = ("script", "style", "noscript", "template", "head", "svg", "iframe")
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "div", "dl", "figcaption", "figure", "footer",
    "form", "header", "hr", "main", "nav", "ol", "p", "pre", "section", "table", "ul",
})
_LINE_TAGS = frozenset({"dd", "dt", "li", "tr"})
_TEXT_STRINGS = (NavigableString, CData)
_SPACES = re.compile(r"\s+")
_MD_TITLE = re.compile(r"#\s+(.+?)(?:\s+#+)?\s*")


def load_file(path: Path) -> list[SourceDocument]:
    """Read ``path`` into documents according to its suffix.

    Raises:
        IngestError: the file type is unsupported, or the file is unreadable, binary,
            empty, a PDF without text or with a password, or a malformed JSONL file.
    """
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise IngestError(_unsupported(path))
    return loader(path)


def iter_files(paths: Sequence[Path]) -> Iterator[tuple[Path, str | None]]:
    """Expand ``paths`` into the files to ingest, each with ``None`` or the reason it is skipped.

    Folders are walked recursively in sorted order; inside them hidden entries and
    unsupported file types are left out silently. A path given explicitly that does not
    exist, is not a regular file, or has an unsupported suffix yields a reason instead.
    Each file is yielded once.
    """
    seen: set[Path] = set()

    def first_time(file: Path) -> bool:
        key = file.resolve()
        if key in seen:
            return False
        seen.add(key)
        return True

    for path in paths:
        if path.is_dir():
            for file in _walk(path):
                if first_time(file):
                    yield file, None
        elif not path.exists():
            yield path, "does not exist"
        elif not path.is_file():
            yield path, "not a regular file"
        elif path.suffix.lower() not in _LOADERS:
            yield path, _unsupported(path)
        elif first_time(path):
            yield path, None


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            file = Path(root, name)
            if not name.startswith(".") and file.suffix.lower() in _LOADERS and file.is_file():
                yield file


def _unsupported(path: Path) -> str:
    suffix = path.suffix or "(none)"
    return f"unsupported file type '{suffix}' (supported: {', '.join(SUPPORTED_SUFFIXES)})"


def _read_text(path: Path) -> str:
    """The file's text, with line endings normalised; rejects binary and empty files."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"unreadable file: {exc.strerror or exc}") from exc
    if b"\x00" in data:
        raise IngestError("binary file (contains NUL bytes)")
    try:
        # utf-8-sig reads plain UTF-8 too and drops a byte-order mark if there is one.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        reason = f"binary file or not UTF-8 text (bad byte at offset {exc.start})"
        raise IngestError(reason) from exc
    if not text.strip():
        raise IngestError("empty file")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _document(path: Path, title: str, text: str, **metadata: MetadataValue) -> SourceDocument:
    source = str(path.resolve())
    return SourceDocument(source, title, text.strip(), metadata, doc_id=source)


def _load_markdown(path: Path) -> list[SourceDocument]:
    text = _read_text(path)
    return [_document(path, _markdown_title(text) or path.stem, text, format="markdown")]


def _markdown_title(text: str) -> str | None:
    in_fence = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
        elif not in_fence and (match := _MD_TITLE.fullmatch(stripped)):
            return match.group(1)
    return None


def _load_text(path: Path) -> list[SourceDocument]:
    return [_document(path, path.stem, _read_text(path), format="text")]


def _load_html(path: Path) -> list[SourceDocument]:
    soup = BeautifulSoup(_read_text(path), "html.parser")
    first_h1 = soup.find("h1")
    title = (
        (" ".join(soup.title.get_text(" ").split()) if soup.title else "")
        or (" ".join(first_h1.get_text(" ").split()) if first_h1 else "")
        or path.stem
    )
    text = _html_text(soup.body or soup)
    if not text:
        raise IngestError("empty document: no text in the HTML body")
    return [_document(path, title, text, format="html")]


def _html_text(root: Tag | BeautifulSoup) -> str:
    """Visible text with paragraphs as blank-line blocks and headings as ``#`` lines.

    One walk over the tree, with a stack of its own: the time is linear in the document,
    however deep its nesting (changing the tree as it went cost a walk of a tag's subtree
    per tag, minutes for a few thousand nested tags, and recursion would hit Python's
    limit)."""
    out: list[str] = []
    in_pre = 0
    stack: list[tuple[PageElement, bool]] = [(child, False) for child in reversed(root.contents)]
    while stack:
        node, closing = stack.pop()
        if closing:  # after the tag's children
            assert isinstance(node, Tag)
            if node.name in _BLOCK_TAGS:
                out.append("\n\n")
            elif node.name in ("td", "th"):
                out.append(" ")
            in_pre -= node.name == "pre"
            continue
        if isinstance(node, NavigableString):
            if _visible(node):
                # Source-file whitespace means nothing in HTML, but in <pre>.
                out.append(str(node) if in_pre else _SPACES.sub(" ", node))
            continue
        if not isinstance(node, Tag) or node.name in _DROPPED_TAGS:
            continue
        if node.name in _HEADING_TAGS:
            marks = "#" * _HEADING_TAGS[node.name]
            out.append(f"\n\n{marks} {_flat_text(node, in_pre > 0)}\n\n")
            continue
        if node.name == "br":
            out.append("\n")
            continue
        if node.name in _BLOCK_TAGS:
            out.append("\n\n")
        elif node.name in _LINE_TAGS:
            out.append("\n- " if node.name == "li" else "\n")
        in_pre += node.name == "pre"
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.contents))
    lines = (line.strip() for line in "".join(out).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _flat_text(root: Tag, in_pre: bool) -> str:
    """A heading's visible strings, each stripped, joined by spaces; their inner spaces
    collapsed but in <pre>."""
    words: list[str] = []
    stack: list[tuple[PageElement, bool]] = [(c, in_pre) for c in reversed(root.contents)]
    while stack:
        node, pre = stack.pop()
        if isinstance(node, NavigableString):
            if _visible(node) and node.strip():
                words.append(node.strip() if pre else _SPACES.sub(" ", node.strip()))
        elif isinstance(node, Tag) and node.name not in _DROPPED_TAGS:
            inner = pre or node.name == "pre"
            stack.extend((child, inner) for child in reversed(node.contents))
    return " ".join(words)


def _visible(node: NavigableString) -> bool:
    """Text a reader sees: not a comment, declaration, doctype or processing instruction
    (the strings BeautifulSoup's ``get_text`` reads)."""
    return type(node) in _TEXT_STRINGS


def _load_pdf(path: Path) -> list[SourceDocument]:
    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise IngestError("encrypted PDF: it needs a password")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except IngestError:
        raise
    except OSError as exc:
        raise IngestError(f"unreadable file: {exc.strerror or exc}") from exc
    except (PyPdfError, ValueError) as exc:
        raise IngestError(f"unreadable PDF: {exc}") from exc
    text = "\n\n".join(page for page in pages if page)
    if not text:
        raise IngestError("no extractable text: scanned PDF? run OCR first")
    title = (title or "").strip() or path.stem
    return [_document(path, title, text, format="pdf", pages=len(pages))]


def _load_jsonl(path: Path) -> list[SourceDocument]:
    source = str(path.resolve())
    documents: list[SourceDocument] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise IngestError(f"line {number}: invalid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise IngestError(f"line {number}: expected a JSON object")
        doc_id = record.get("_id", record.get("id"))
        if isinstance(doc_id, bool) or not isinstance(doc_id, str | int) or str(doc_id) == "":
            raise IngestError(f"line {number}: missing '_id' or 'id' (a string or integer)")
        doc_id = str(doc_id)
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            raise IngestError(f"line {number}: missing 'text' (a non-empty string)")
        if doc_id in first_line:
            raise IngestError(
                f"line {number}: duplicate id {doc_id!r} (first on line {first_line[doc_id]})"
            )
        first_line[doc_id] = number
        title = record.get("title")
        metadata = _jsonl_metadata(record)
        documents.append(
            SourceDocument(
                source=f"{source}#{doc_id}",
                title=title.strip() if isinstance(title, str) and title.strip() else doc_id,
                text=text.strip(),
                metadata={**metadata, "format": "jsonl", "line": number},
                doc_id=doc_id,
            )
        )
    return documents


def _jsonl_metadata(record: dict[str, object]) -> dict[str, MetadataValue]:
    """Scalar fields as they are, lists of strings joined with ','; the rest is dropped."""
    metadata: dict[str, MetadataValue] = {}
    for key, value in record.items():
        if key in ("_id", "id", "title", "text"):
            continue
        if isinstance(value, str | int | float | bool):
            metadata[key] = value
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            metadata[key] = ",".join(value)
    return metadata


_LOADERS: dict[str, Callable[[Path], list[SourceDocument]]] = {
    ".md": _load_markdown,
    ".markdown": _load_markdown,
    ".txt": _load_text,
    ".html": _load_html,
    ".htm": _load_html,
    ".pdf": _load_pdf,
    ".jsonl": _load_jsonl,
}

#: File suffixes :func:`load_file` understands (compared case-insensitively).
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(sorted(_LOADERS))
