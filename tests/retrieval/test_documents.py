from __future__ import annotations

import json
from pathlib import Path

import pypdf
import pytest

from orchestrator.errors import OrchestratorError
from orchestrator.retrieval.documents import SUPPORTED_SUFFIXES, iter_files, load_file
from orchestrator.retrieval.errors import IngestError, RetrievalError


def write_text_pdf(path: Path, pages: list[list[str]], title: str | None = None) -> Path:
    """Write a minimal valid PDF whose pages show ``pages`` in Helvetica, one line each."""
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects = {
        1: "<< /Type /Catalog /Pages 2 0 R >>",
        2: f"<< /Type /Pages /Kids [{' '.join(f'{i} 0 R' for i in page_ids)}] "
        f"/Count {len(pages)} >>",
        3: "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    for page_id, lines in zip(page_ids, pages, strict=True):
        shown = " ".join(f"({line}) Tj 0 -20 Td" for line in lines)
        stream = f"BT /F1 12 Tf 72 720 Td {shown} ET"
        objects[page_id] = (
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_id + 1} 0 R >>"
        )
        objects[page_id + 1] = f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream"
    info_id = None
    if title is not None:
        info_id = max(objects) + 1
        objects[info_id] = f"<< /Title ({title}) >>"
    out = b"%PDF-1.4\n"
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += f"{number} 0 obj\n{objects[number]}\nendobj\n".encode("latin-1")
    xref_at = len(out)
    size = max(objects) + 1
    out += f"xref\n0 {size}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offsets[n]:010d} 00000 n \n" for n in range(1, size)).encode()
    info = f" /Info {info_id} 0 R" if info_id else ""
    out += f"trailer\n<< /Size {size} /Root 1 0 R{info} >>\nstartxref\n{xref_at}\n%%EOF\n".encode()
    path.write_bytes(out)
    return path


def write_blank_pdf(path: Path, password: str | None = None) -> Path:
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=612, height=792)
    if password is not None:
        writer.encrypt(user_password=password, algorithm="RC4-128")
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(IngestError) as caught:
        load_file(path)
    return str(caught.value)


def test_errors_belong_to_the_orchestrator_hierarchy() -> None:
    assert issubclass(IngestError, RetrievalError)
    assert issubclass(RetrievalError, OrchestratorError)


def test_markdown_title_is_the_first_h1_outside_code(tmp_path: Path) -> None:
    path = tmp_path / "runbook.md"
    path.write_text(
        "Intro line.\n\n```bash\n# not a title\n```\n\n## Sub first\n\n# Web failover #\n\nBody.\n"
    )

    [doc] = load_file(path)

    assert doc.title == "Web failover"
    assert doc.source == str(path.resolve()) == doc.doc_id
    assert doc.text.startswith("Intro line.") and doc.text.endswith("Body.")
    assert doc.metadata == {"format": "markdown"}


def test_markdown_without_heading_uses_the_stem(tmp_path: Path) -> None:
    path = tmp_path / "notes.markdown"
    path.write_text("just text\n")

    assert load_file(path)[0].title == "notes"


def test_relative_path_is_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("hello")
    monkeypatch.chdir(tmp_path / "sub")

    [doc] = load_file(Path("../sub/./a.txt"))

    assert doc.source == str((tmp_path / "sub" / "a.txt").resolve())


def test_text_drops_bom_and_normalises_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "policy.TXT"
    path.write_bytes("\ufeffFirst line\r\nSecond line\r\n".encode())

    [doc] = load_file(path)

    assert (doc.title, doc.text) == ("policy", "First line\nSecond line")
    assert doc.metadata == {"format": "text"}


def test_html_keeps_visible_text_and_headings(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<!DOCTYPE html><html><head><title> Escalation\n  policy </title>"
        "<style>p { color: red }</style><script>var token = 'leak';</script></head>"
        "<body><!-- hidden note --><h1>Escalation</h1><p>Call the <b>on-call</b>\n   engineer.</p>"
        "<script>alert('also leak')</script><h2>Severity 1</h2>"
        "<ul><li>Page the lead</li><li>Open a bridge</li></ul><noscript>enable js</noscript>"
        "</body></html>"
    )

    [doc] = load_file(path)

    assert doc.title == "Escalation policy"
    assert doc.text == (
        "# Escalation\n\nCall the on-call engineer.\n\n## Severity 1\n\n"
        "- Page the lead\n- Open a bridge"
    )
    for hidden in ("leak", "color", "hidden note", "enable js"):
        assert hidden not in doc.text


def test_html_title_falls_back_to_first_h1(tmp_path: Path) -> None:
    path = tmp_path / "fragment.htm"
    path.write_text("<h1>Service catalog</h1><p>web, db</p>")

    [doc] = load_file(path)

    assert doc.title == "Service catalog"
    assert doc.metadata == {"format": "html"}


def test_html_without_text_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.html"
    path.write_text("<html><body><script>x()</script></body></html>")

    assert "no text" in load_error(path)


def test_pdf_pages_are_joined(tmp_path: Path) -> None:
    path = write_text_pdf(
        tmp_path / "guide.pdf", [["Backup pool is pool-b.", "Use it for web."], ["Second page."]]
    )

    [doc] = load_file(path)

    assert "Backup pool is pool-b." in doc.text and "Second page." in doc.text
    assert doc.text.index("pool-b") < doc.text.index("Second page")
    assert doc.metadata == {"format": "pdf", "pages": 2}
    assert doc.title == "guide"


def test_pdf_title_comes_from_its_info(tmp_path: Path) -> None:
    path = write_text_pdf(tmp_path / "x.pdf", [["Text."]], title="Disaster recovery")

    assert load_file(path)[0].title == "Disaster recovery"


def test_pdf_without_text_layer_is_an_error(tmp_path: Path) -> None:
    path = write_blank_pdf(tmp_path / "scan.pdf")

    assert load_error(path) == "no extractable text: scanned PDF? run OCR first"


def test_encrypted_pdf_is_an_error(tmp_path: Path) -> None:
    path = write_blank_pdf(tmp_path / "locked.pdf", password="secret")

    assert load_error(path).startswith("encrypted PDF")


def test_corrupt_pdf_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\nthis is not really a pdf\n")

    assert load_error(path).startswith("unreadable PDF")


def test_jsonl_one_document_per_line(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    lines = [
        {"_id": "d1", "title": "First", "text": "Alpha text.", "year": 2020, "score": 0.5,
         "public": True, "tags": ["net", "web"], "nested": {"a": 1}, "empty": None},
        {"id": 7, "text": "Beta text."},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines[:1]) + "\n\n"
                    + json.dumps(lines[1]) + "\n")

    first, second = load_file(path)

    assert first.source == f"{path.resolve()}#d1"
    assert (first.doc_id, first.title, first.text) == ("d1", "First", "Alpha text.")
    assert first.metadata == {"format": "jsonl", "line": 1, "year": 2020, "score": 0.5,
                              "public": True, "tags": "net,web"}
    assert (second.doc_id, second.title, second.source) == ("7", "7", f"{path.resolve()}#7")
    assert second.metadata["line"] == 3


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        (['{"_id": "a", "text": "ok"}', '{"_id": "b", "text": "ok"}', '{"_id": "c", "text": '],
         "line 3: invalid JSON"),
        (['{"_id": "a", "text": "ok"}', '{"_id": "b", "title": "no text"}'],
         "line 2: missing 'text'"),
        (['{"_id": "a", "text": "   "}'], "line 1: missing 'text'"),
        (['{"title": "x", "text": "no id"}'], "line 1: missing '_id' or 'id'"),
        (['["not", "an", "object"]'], "line 1: expected a JSON object"),
        (['{"id": "a", "text": "x"}', '{"id": "a", "text": "y"}'],
         "line 2: duplicate id 'a' (first on line 1)"),
    ],
)
def test_bad_jsonl_names_the_line(tmp_path: Path, lines: list[str], reason: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")

    assert load_error(path).startswith(reason)


@pytest.mark.parametrize("suffix", [".md", ".txt", ".jsonl", ".html"])
def test_binary_file_is_an_error(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"image{suffix}"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

    assert load_error(path) == "binary file (contains NUL bytes)"


def test_non_utf8_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))

    assert load_error(path).startswith("binary file or not UTF-8 text")


@pytest.mark.parametrize("content", [b"", b"  \n\t\r\n"])
def test_empty_file_is_an_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.md"
    path.write_bytes(content)

    assert load_error(path) == "empty file"


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "folder.md"
    path.mkdir()

    assert load_error(path).startswith("unreadable file")


def test_unsupported_suffix_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "sheet.xyz"
    path.write_text("a,b")

    reason = load_error(path)

    assert reason.startswith("unsupported file type '.xyz' (supported: ")
    assert all(suffix in reason for suffix in SUPPORTED_SUFFIXES)


def test_iter_files_walks_folders_and_reports_explicit_problems(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    (kb / "b_dir").mkdir(parents=True)
    (kb / ".git").mkdir()
    for name in ("b.md", "a.txt", "skip.xyz", ".hidden.md", "b_dir/c.pdf", "b_dir/d.JSONL",
                 ".git/config.md"):
        (kb / name).write_text("x")
    explicit_hidden = kb / ".hidden.md"
    unsupported = kb / "skip.xyz"
    missing = tmp_path / "missing.md"

    found = list(iter_files([kb, missing, unsupported, explicit_hidden, kb / "a.txt"]))

    assert found == [
        (kb / "a.txt", None),
        (kb / "b.md", None),
        (kb / "b_dir" / "c.pdf", None),
        (kb / "b_dir" / "d.JSONL", None),
        (missing, "does not exist"),
        (unsupported, f"unsupported file type '.xyz' (supported: {', '.join(SUPPORTED_SUFFIXES)})"),
        (explicit_hidden, None),
    ]


def test_deeply_nested_html_is_read_in_one_walk(tmp_path: Path) -> None:
    # Tens of thousands of nested tags (an upload meant to stall the server): the text is
    # read in one pass over the tree, not a pass over each tag's subtree per tag (minutes),
    # and no recursion limit is met.
    depth = 30_000
    path = tmp_path / "deep.html"
    path.write_text("<html><body><h1>Deep</h1>" + "<div>" * depth + "core <p>text</p>"
                    + "</div>" * depth + "<pre>  kept\n  as is</pre></body></html>")

    [doc] = load_file(path)

    assert doc.text == "# Deep\n\ncore\n\ntext\n\nkept\nas is"


def test_processing_instructions_are_no_text_and_pre_keeps_its_spaces(tmp_path: Path) -> None:
    path = tmp_path / "pi.html"
    path.write_text("<body><p>a <?php echo $secret; ?> b</p><pre>c <?php x(); ?> d</pre>"
                    "<pre><h2>In   pre</h2></pre><h3>Out   of <em>pre</em></h3></body>")

    [doc] = load_file(path)

    assert "php" not in doc.text and "secret" not in doc.text
    assert doc.text == "a  b\n\nc  d\n\n## In   pre\n\n### Out of pre"
