"""Loaders on real files built in the test with the real libraries."""

from __future__ import annotations

import ctypes
import io
import os
import zipfile

import docx
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest

from indexing import loaders
from indexing.loaders import DOCX, HTML, MARKDOWN, MEDIA_TYPES, PDF, TEXT, detect_media_type, load_document
from rag.errors import UnprocessableDocument, UnsupportedMediaType
from rag.types import ParsedDocument


def _pdf(pages: list[str]) -> bytes:
    """A real PDF drawn with pdfium: one text object per non-empty page string, blank pages otherwise."""
    pdf = pdfium.PdfDocument.new()
    try:
        for text in pages:
            page = pdf.new_page(612, 792)
            if text:
                obj = pdfium_c.FPDFPageObj_NewTextObj(pdf, b"Helvetica", 12.0)
                utf16 = ctypes.create_string_buffer((text + "\0").encode("utf-16-le"))
                pdfium_c.FPDFText_SetText(obj, ctypes.cast(utf16, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
                pdfium_c.FPDFPageObj_Transform(obj, 1, 0, 0, 1, 72, 700)
                pdfium_c.FPDFPage_InsertObject(page, obj)
                pdfium_c.FPDFPage_GenerateContent(page)
            page.close()
        out = io.BytesIO()
        pdf.save(out)
        return out.getvalue()
    finally:
        pdf.close()


def _handwritten_pdf(title: str, text: str) -> bytes:
    """A minimal hand-written one-page PDF with an /Info /Title (pdfium cannot write metadata)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>"
        ),
        None,  # content stream, below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title (" + title.encode("latin-1") + b") >>",
    ]
    stream = b"BT /F1 12 Tf 72 700 Td (" + text.encode("latin-1") + b") Tj ET"
    objects[3] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _docx(build) -> bytes:
    document = docx.Document()
    build(document)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _assert_tiled(parsed: ParsedDocument) -> None:
    """Sections cover the text in order without gaps."""
    assert parsed.sections[0].start == 0
    assert parsed.sections[-1].end == len(parsed.text)
    for before, after in zip(parsed.sections, parsed.sections[1:]):
        assert before.end == after.start
    assert all(section.start < section.end for section in parsed.sections)


def _section_of(parsed: ParsedDocument, needle: str):
    at = parsed.text.index(needle)
    return next(s for s in parsed.sections if s.start <= at < s.end)


# --- detection ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("extension", sorted(MEDIA_TYPES))
def test_detect_by_extension(extension: str) -> None:
    assert detect_media_type(f"Report{extension.upper()}", b"whatever") == MEDIA_TYPES[extension]


def test_detect_by_declared_type_then_magic() -> None:
    assert detect_media_type("upload", b"hello", "text/plain; charset=utf-8") == TEXT
    assert detect_media_type("upload", b"<p>x</p>", "application/xhtml+xml") == HTML
    assert detect_media_type("upload", _pdf(["x"]), "application/octet-stream") == PDF
    assert detect_media_type("upload", b"\xef\xbb\xbf  <!DOCTYPE html><html></html>") == HTML
    assert detect_media_type("upload.bin", _docx(lambda d: d.add_paragraph("x"))) == DOCX


@pytest.mark.parametrize(
    ("filename", "content", "kind"),
    [
        ("setup.exe", b"MZ\x90\x00\x03\x00", "Windows executable"),
        ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00", "PNG image"),
        ("archive.zip", b"PK\x03\x04\x14\x00", "ZIP archive"),
        ("data.xyz", b"\x01\x02", "'.xyz'"),
    ],
)
def test_detect_rejects_unsupported_types_naming_the_file(filename: str, content: bytes, kind: str) -> None:
    with pytest.raises(UnsupportedMediaType) as error:
        detect_media_type(filename, content, "application/octet-stream")
    assert filename in error.value.message and kind in error.value.message
    assert error.value.status_code == 415


def test_load_rejects_unknown_media_type() -> None:
    with pytest.raises(UnsupportedMediaType, match="x.bin"):
        load_document("x.bin", b"abc", "application/octet-stream")


# --- formats -----------------------------------------------------------------------------------------


def test_pdf_one_section_per_page() -> None:
    parsed = load_document("paper.pdf", _pdf(["Hello from page one.", "", "Page three says bye."]), PDF)
    assert parsed.text == "Hello from page one.\n\nPage three says bye."
    assert parsed.title == "paper"
    assert [s.page for s in parsed.sections] == [1, 3]
    assert _section_of(parsed, "bye").page == 3
    _assert_tiled(parsed)


def test_pdf_metadata_title() -> None:
    parsed = load_document("scan-0042.pdf", _handwritten_pdf("Annual Report", "Revenue grew."), PDF)
    assert parsed.title == "Annual Report"
    assert parsed.text == "Revenue grew."
    assert parsed.sections[0].page == 1


def test_html_visible_text_headings_and_title() -> None:
    html = b"""<!doctype html><html><head><title>My   Page</title><style>p {color: red}</style></head>
    <body><script>alert('secret script')</script><noscript>enable js</noscript>
    <h1>Intro</h1><p>First   paragraph
    with <b>bold</b> text.<br>After a break.</p><ul><li>one</li><li>two</li></ul>
    <template><p>hidden template</p></template><!-- a comment -->
    <h2>Data</h2><table><tr><th>name</th><th>value</th></tr><tr><td>x</td><td>1</td></tr></table>
    </body></html>"""
    parsed = load_document("page.html", html, HTML)
    assert parsed.title == "My Page"
    for hidden in ("secret script", "alert", "color: red", "enable js", "hidden template", "a comment"):
        assert hidden not in parsed.text
    assert "First paragraph with bold text.\nAfter a break." in parsed.text
    assert "one\n\ntwo" in parsed.text
    assert "name | value\n\nx | 1" in parsed.text
    assert [s.heading for s in parsed.sections] == ["Intro", "Data"]
    assert _section_of(parsed, "bold").heading == "Intro"
    assert _section_of(parsed, "value").heading == "Data"
    _assert_tiled(parsed)


def test_html_title_falls_back_to_first_h1() -> None:
    parsed = load_document("page.htm", b"<p>lead</p><h1>The   Heading</h1><p>body</p>", HTML)
    assert parsed.title == "The Heading"
    assert [s.heading for s in parsed.sections] == [None, "The Heading"]


def test_docx_paragraphs_headings_tables_and_title() -> None:
    def build(document) -> None:
        document.add_heading("Quarterly Report", level=0)
        document.add_paragraph("Intro   paragraph.")
        document.add_heading("Results", level=1)
        document.add_paragraph("Revenue was up.")
        table = document.add_table(rows=2, cols=2)
        for (row, col), text in {(0, 0): "Region", (0, 1): "Sales", (1, 0): "EU", (1, 1): "42"}.items():
            table.cell(row, col).text = text
        document.add_heading("Outlook", level=2)
        document.add_paragraph("Stable.")

    parsed = load_document("q3.docx", _docx(build), DOCX)
    assert parsed.title == "Quarterly Report"
    assert parsed.text.startswith("Quarterly Report\n\nIntro paragraph.\n\nResults")
    assert "Region | Sales\n\nEU | 42" in parsed.text
    assert [s.heading for s in parsed.sections] == ["Quarterly Report", "Results", "Outlook"]
    assert _section_of(parsed, "EU | 42").heading == "Results"
    _assert_tiled(parsed)


def test_docx_core_properties_title_wins() -> None:
    def build(document) -> None:
        document.core_properties.title = "Official Title"
        document.add_paragraph("Just text.")

    parsed = load_document("q3.docx", _docx(build), DOCX)
    assert parsed.title == "Official Title"
    assert parsed.sections[0].heading is None


def test_markdown_plain_text_and_heading_sections() -> None:
    markdown = """# Guide

Some *emphasis*, `code`, a [link](http://example.com) and ![the alt](img.png).
Second line.

## Install

- step **one**
- step two

| key | value |
|-----|-------|
| a   | 1     |

```
pip install thing
```
"""
    parsed = load_document("guide.md", markdown.encode(), MARKDOWN)
    assert parsed.title == "Guide"
    assert parsed.text.startswith("Guide\n\nSome emphasis, code, a link and the alt. Second line.\n\nInstall")
    for markup in ("*", "`", "[", "](", "http://", "#", "|---"):
        assert markup not in parsed.text
    assert "step one\n\nstep two" in parsed.text
    assert "key | value\n\na | 1" in parsed.text
    assert "pip install thing" in parsed.text
    assert [s.heading for s in parsed.sections] == ["Guide", "Install"]
    assert _section_of(parsed, "pip install").heading == "Install"
    _assert_tiled(parsed)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_text_decoding_and_whitespace(encoding: str) -> None:
    raw = "Grüße  aus\tKöln 你好\r\n\r\n\r\n\r\nNext   paragraph.\nSame paragraph.  "
    parsed = load_document("notes.txt", raw.encode(encoding), TEXT)
    assert parsed.text == "Grüße aus Köln 你好\n\nNext paragraph.\nSame paragraph."
    assert parsed.title == "notes"
    assert len(parsed.sections) == 1
    _assert_tiled(parsed)


# --- bad inputs --------------------------------------------------------------------------------------


def _rejects(filename: str, content: bytes, media_type: str, reason: str) -> None:
    with pytest.raises(UnprocessableDocument) as error:
        load_document(filename, content, media_type)
    assert error.value.message.startswith(f"{filename}: ")
    assert reason in error.value.message
    assert error.value.status_code == 422


@pytest.mark.parametrize("media_type", [PDF, HTML, DOCX, MARKDOWN, TEXT])
def test_empty_file(media_type: str) -> None:
    _rejects("empty.bin", b"", media_type, "empty file")


@pytest.mark.parametrize(
    ("filename", "content", "media_type"),
    [("blank.txt", b"  \n\t\n ", TEXT), ("blank.html", b"<html><script>x()</script></html>", HTML),
     ("blank.md", b"<!-- only a comment -->\n", MARKDOWN), ("blank.docx", None, DOCX)],
)  # fmt: skip
def test_no_text_found(filename: str, content: bytes | None, media_type: str) -> None:
    content = content or _docx(lambda document: document.add_paragraph("   "))
    _rejects(filename, content, media_type, "no text found")


def test_pdf_without_text_layer() -> None:
    _rejects("scan.pdf", _pdf(["", ""]), PDF, "no extractable text (scanned PDF?)")


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_pdf(cut: float) -> None:
    data = _pdf(["Some text on a page."])
    _rejects("broken.pdf", data[: int(len(data) * cut)], PDF, "not a valid PDF")


def test_corrupt_pdf() -> None:
    _rejects("broken.pdf", b"%PDF-1.7\n" + os.urandom(2000), PDF, "not a valid PDF")


def test_invalid_docx() -> None:
    _rejects("report.docx", b"this is not a zip", DOCX, "not a valid DOCX")
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")
    _rejects("report.docx", plain_zip.getvalue(), DOCX, "no word/document.xml")


def _zeros_docx(megabytes: int) -> bytes:
    """A zip whose word/document.xml inflates to ``megabytes`` of zeros, streamed so the test stays small."""
    out = io.BytesIO()
    block = bytes(1024 * 1024)
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("word/document.xml", "w", force_zip64=True) as member,
    ):
        for _ in range(megabytes):
            member.write(block)
    return out.getvalue()


def test_docx_zip_bomb_total_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loaders, "MAX_DOCX_UNCOMPRESSED_BYTES", 2 * 1024 * 1024)
    _rejects("bomb.docx", _zeros_docx(3), DOCX, "decompressed size too large")


def test_docx_zip_bomb_compression_ratio() -> None:
    bomb = _zeros_docx(20)
    assert len(bomb) < 100_000
    _rejects("bomb.docx", bomb, DOCX, "compression ratio")


def test_random_binary_as_text() -> None:
    _rejects("random.txt", os.urandom(4096), TEXT, "binary data")


def test_undecodable_text() -> None:
    _rejects("latin1.txt", "café crème".encode("latin-1"), TEXT, "undecodable text")


def test_control_characters_as_text() -> None:
    _rejects("term.txt", bytes(range(1, 9)) * 100 + b"some words", TEXT, "binary data")
