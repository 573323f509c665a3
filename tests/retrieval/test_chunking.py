from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest

from orchestrator.retrieval.chunking import Chunk, chunk_document, chunk_metadata
from orchestrator.retrieval.documents import SourceDocument, load_file


def document(text: str, fmt: str = "markdown", title: str = "Doc") -> SourceDocument:
    return SourceDocument("/kb/doc", title, text, {"format": fmt}, doc_id="/kb/doc")


def sentences(prefix: str, count: int) -> str:
    return " ".join(f"{prefix} sentence number {i} says something." for i in range(count))


def assert_well_formed(chunks: list[Chunk], chunk_size: int) -> None:
    assert [chunk.position for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text and chunk.text == chunk.text.strip()
        assert len(chunk.text) <= chunk_size
        assert chunk.content_hash == hashlib.sha256(chunk.text.encode()).hexdigest()


RUNBOOK = f"""# Runbook

Read this first.

## Failover

{sentences("Failover", 12)}

{sentences("Traffic", 12)}

### Backup pool

Use pool-b for web servers.

## Escalation
### Severity 1

Page the on-call lead.
"""


def test_short_document_is_one_chunk() -> None:
    doc = document("# Title\n\nOne paragraph.\n\n## Part\n\nAnother.")

    [chunk] = chunk_document(doc)

    assert chunk == Chunk(doc.text, 0, "Title", hashlib.sha256(doc.text.encode()).hexdigest())


def test_short_document_starting_without_heading_has_no_heading() -> None:
    [chunk] = chunk_document(document("Preamble.\n\n# Later\n\nText."))

    assert chunk.heading == ""


def test_markdown_chunks_carry_their_heading_path() -> None:
    chunks = chunk_document(document(RUNBOOK), chunk_size=300, chunk_overlap=60)

    assert_well_formed(chunks, 300)
    headings = [chunk.heading for chunk in chunks]
    assert headings[0] == "Runbook"
    assert chunks[0].text == "# Runbook\n\nRead this first."
    assert headings.count("Runbook > Failover") >= 4
    backup = next(chunk for chunk in chunks if "pool-b" in chunk.text)
    assert backup.heading == "Runbook > Failover > Backup pool"
    assert backup.text == "### Backup pool\n\nUse pool-b for web servers."
    # A heading directly followed by a sub-heading does not become a chunk of its own.
    assert chunks[-1].heading == "Runbook > Escalation > Severity 1"
    assert chunks[-1].text == "## Escalation\n\n### Severity 1\n\nPage the on-call lead."
    # A long section keeps its heading on its first chunk rather than alone.
    failover = [chunk for chunk in chunks if chunk.heading == "Runbook > Failover"]
    assert failover[0].text.startswith("## Failover\n\nFailover sentence number 0")
    assert all(not chunk.text.startswith("## Failover") for chunk in failover[1:])
    # Continuation chunks carry the heading in metadata, not in their text.
    assert not any(chunk.text.startswith("#") for chunk in chunks[2:-2])


def test_chunks_break_at_paragraphs_when_they_fit() -> None:
    paragraphs = [sentences(f"Topic{i}", 3) for i in range(6)]
    doc = document("\n\n".join(paragraphs), fmt="text")

    chunks = chunk_document(doc, chunk_size=2 * len(paragraphs[0]) + 10, chunk_overlap=20)

    assert [chunk.text for chunk in chunks] == [
        "\n\n".join(paragraphs[i : i + 2]) for i in range(0, 6, 2)
    ]


def test_long_paragraph_chunks_overlap() -> None:
    doc = document(sentences("Plain", 60), fmt="text")

    chunks = chunk_document(doc, chunk_size=400, chunk_overlap=100)

    assert len(chunks) > 3
    assert_well_formed(chunks, 400)
    for before, after in itertools.pairwise(chunks):
        first_sentence = after.text.split(". ")[0]
        assert first_sentence in before.text
    assert all(chunk.heading == "" for chunk in chunks)


def test_text_with_headings_is_split_like_markdown() -> None:
    doc = document(f"# Notes\n\n{sentences('A', 10)}\n\n# Other\n\n{sentences('B', 10)}", "text")

    chunks = chunk_document(doc, chunk_size=600, chunk_overlap=50)

    assert [chunk.heading for chunk in chunks] == ["Notes", "Other"]


@pytest.mark.parametrize("fmt", ["pdf", "jsonl"])
def test_hash_lines_in_pdf_and_jsonl_are_not_headings(fmt: str) -> None:
    doc = document(f"# 1 item\n\n{sentences('C', 20)}", fmt)

    chunks = chunk_document(doc, chunk_size=300, chunk_overlap=50)

    assert len(chunks) > 1
    assert {chunk.heading for chunk in chunks} == {""}


def test_hashes_are_stable_and_follow_the_text() -> None:
    first = chunk_document(document(RUNBOOK), chunk_size=300, chunk_overlap=60)
    again = chunk_document(document(RUNBOOK), chunk_size=300, chunk_overlap=60)
    edited = chunk_document(
        document(RUNBOOK.replace("pool-b", "pool-c")), chunk_size=300, chunk_overlap=60
    )

    assert first == again
    changed = [a.position for a, b in zip(first, edited, strict=True)
               if a.content_hash != b.content_hash]
    assert changed == [next(c.position for c in first if "pool-b" in c.text)]


def test_odd_spaces_keep_words_apart() -> None:
    text = "# T\n\n" + "col1\tcol2\u00a0col3 " + sentences("D", 20)

    chunks = chunk_document(document(text), chunk_size=200, chunk_overlap=20)

    assert "col1 col2 col3" in chunks[0].text


def test_blank_document_has_no_chunks() -> None:
    assert chunk_document(document(" \n\n ")) == []


@pytest.mark.parametrize(("size", "overlap"), [(100, 100), (100, 150), (100, -1), (0, 0)])
def test_sizes_are_validated(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="chunk_"):
        chunk_document(document("text"), chunk_size=size, chunk_overlap=overlap)


def test_loaded_html_is_chunked_by_its_headings(tmp_path: Path) -> None:
    path = tmp_path / "policy.html"
    path.write_text(
        "<html><head><title>Policy</title><script>var x = 1;</script></head><body>"
        f"<h1>Escalation</h1><p>{sentences('E', 8)}</p>"
        f"<h2>Severity 2</h2><p>{sentences('S', 8)}</p></body></html>"
    )
    [doc] = load_file(path)

    chunks = chunk_document(doc, chunk_size=500, chunk_overlap=50)

    assert [chunk.heading for chunk in chunks] == ["Escalation", "Escalation > Severity 2"]
    assert chunks[1].text.startswith("## Severity 2\n\nS sentence number 0")


def test_chunk_metadata_carries_the_title_not_the_text() -> None:
    doc = SourceDocument("/kb/c.jsonl#9", "Paper title", "Body text.", {"format": "jsonl",
                         "line": 4}, doc_id="9")
    [chunk] = chunk_document(doc)

    assert "Paper title" not in chunk.text
    assert chunk_metadata(doc, chunk) == {
        "format": "jsonl",
        "line": 4,
        "source": "/kb/c.jsonl#9",
        "doc_id": "9",
        "title": "Paper title",
        "heading": "",
        "position": 0,
        "content_hash": chunk.content_hash,
    }
