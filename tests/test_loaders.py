"""Loaders on real files built in the test with the real libraries."""

from __future__ import annotations

import ctypes
import io
import os
import random
import zipfile

import docx
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.loaders import DOCX, HTML, MARKDOWN, MEDIA_TYPES, PDF, TEXT, detect_media_type, load_document
from indexing.loaders import docx as docx_loader
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
    monkeypatch.setattr(docx_loader, "MAX_DOCX_UNCOMPRESSED_BYTES", 2 * 1024 * 1024)
    _rejects("bomb.docx", _zeros_docx(3), DOCX, "decompressed size too large")


def test_docx_zip_bomb_compression_ratio() -> None:
    bomb = _zeros_docx(20)
    assert len(bomb) < 100_000
    _rejects("bomb.docx", bomb, DOCX, "compression ratio")


def test_random_binary_as_text() -> None:
    _rejects("random.txt", b"\x01" + random.Random(3).randbytes(4096), TEXT, "binary data")


def test_undecodable_text() -> None:
    noise = bytes(b for b in random.Random(7).randbytes(8192) if b and b not in b"\t\n\r")[:4096]
    _rejects("noise.txt", noise, TEXT, "undecodable text")


def test_control_characters_as_text() -> None:
    _rejects("term.txt", bytes(range(1, 9)) * 100 + b"some words", TEXT, "binary data")


# --- hostile and mislabelled inputs --------------------------------------------------------------------


LEGACY_TEXTS = [
    ("latin-1", "Le café crème coûte très cher à Paris. Où est la gare ? Ça dépend de l'été."),
    ("latin-1", "café crème"),  # short: many code pages fit, windows-1252 must win
    ("cp1252", "He said “hello” — and left… for €5. Naïve façade."),
    ("gb18030", "北京是中华人民共和国的首都，也是全国的政治、文化中心。今天天气很好。"),
    ("gb18030", "你好世界"),
    ("utf-16-le", "UTF-16 without its byte order mark: Grüße aus Köln."),
    ("utf-16-be", "UTF-16 big-endian without its byte order mark."),
    ("utf-16-le", "北京是中华人民共和国的首都，也是全国的政治、文化中心。"),
    ("shift_jis", "日本語のテキストです。東京は日本の首都です。"),
    ("cp1251", "Москва — столица России, город федерального значения."),
]


@pytest.mark.parametrize(("encoding", "text"), LEGACY_TEXTS)
def test_legacy_encodings_are_decoded_not_garbled(encoding: str, text: str) -> None:
    parsed = load_document("legacy.txt", text.encode(encoding), TEXT)
    assert parsed.text == text


def test_html_meta_charset_is_honoured() -> None:
    page = '<html><head><meta charset="iso-8859-1"><title>Café</title></head><body><p>Crème brûlée “ok”</p></body></html>'
    parsed = load_document("page.html", page.encode("cp1252"), HTML)
    assert parsed.title == "Café" and parsed.text == "Crème brûlée “ok”"


def test_utf8_cut_inside_its_last_character_is_kept() -> None:
    parsed = load_document("cut.txt", "Grüße aus Köln ö".encode()[:-1], TEXT)
    assert parsed.text == "Grüße aus Köln"


def test_mostly_utf8_with_broken_bytes_is_refused_not_garbled() -> None:
    data = "Grüße aus Köln, schön und heiß.".encode() + b"\xff\xfe" + " Straße".encode()
    _rejects("mixed.txt", data, TEXT, "UTF-8 with invalid bytes")


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "a PNG image"),
        (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00", "a Windows executable"),
        (b"\x7fELF\x02\x01\x01\x00", "an ELF executable"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF document"),
        (b"PK\x03\x04\x14\x00\x00\x00", "a ZIP archive"),
        (b"SQLite format 3\x00\x10\x00", "an SQLite database"),
    ],
)
@pytest.mark.parametrize("media_type", [TEXT, MARKDOWN, HTML])
def test_binary_sent_as_text_is_415_naming_what_it_is(content: bytes, kind: str, media_type: str) -> None:
    with pytest.raises(UnsupportedMediaType) as error:
        load_document("file.txt", content + bytes(200), media_type)
    assert (
        error.value.message.startswith("file.txt: binary data sent as text") and kind in error.value.message
    )


def test_text_starting_like_a_signature_is_still_text() -> None:
    assert load_document("mz.txt", b"MZ is the signature of DOS executables.", TEXT).text.startswith("MZ is")


def test_whitespace_only_text_is_422() -> None:
    _rejects("blank.md", b" \r\n\t \n", MARKDOWN, "no text found")
    _rejects("blank.txt", "\u3000 \n".encode(), TEXT, "no text found")


HOSTILE_HTML = [
    b"<p>VISIBLE</p><script>SECRET_TOKEN()</script>",
    b"<p>VISIBLE</p><SCRIPT type='text/javascript'>SECRET_TOKEN()</SCRIPT>",
    b"<p>VISIBLE</p><script>unclosed SECRET_TOKEN",
    b"<p>VISIBLE</p><script><!-- SECRET_TOKEN --></script>",
    b"<p>VISIBLE</p><svg><script>SECRET_TOKEN()</script><style>SECRET_TOKEN{}</style></svg>",
    b"<p>VISIBLE</p><style>body::after{content:'SECRET_TOKEN'}</style>",
    b"<p>VISIBLE</p><!-- SECRET_TOKEN --><!--[if IE]>SECRET_TOKEN<![endif]-->",
    b"<p>VISIBLE</p><iframe>SECRET_TOKEN</iframe><noembed>SECRET_TOKEN</noembed><noframes>SECRET_TOKEN</noframes>",
    b"<p>VISIBLE</p><template><p>SECRET_TOKEN</p></template><noscript>SECRET_TOKEN</noscript>",
    b"<html><head><script>SECRET_TOKEN</script><meta name='x' content='SECRET_TOKEN'></head><body>VISIBLE</body></html>",
    b'<p onclick="SECRET_TOKEN()"><a href="javascript:SECRET_TOKEN()">VISIBLE</a></p>',
]


@pytest.mark.parametrize("html", HOSTILE_HTML)
def test_html_code_styles_and_comments_never_become_text(html: bytes) -> None:
    parsed = load_document("page.html", html, HTML)
    assert "VISIBLE" in parsed.text
    assert "SECRET_TOKEN" not in parsed.text and "SECRET_TOKEN" not in parsed.title


def test_markdown_raw_html_scripts_never_become_text() -> None:
    text = b"# Title\n\nVISIBLE text.\n\n<script>\nSECRET_TOKEN()\n</script>\n\nMore <span onclick='SECRET_TOKEN'>x</span>.\n"
    parsed = load_document("doc.md", text, MARKDOWN)
    assert "VISIBLE" in parsed.text and "SECRET_TOKEN" not in parsed.text


def _encrypted_pdf() -> bytes:
    """A PDF whose standard security handler wants a password (random /O and /U entries)."""
    encrypt = b"/Encrypt << /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32
    encrypt += b"> /P -4 >> /ID [<" + b"33" * 16 + b"> <" + b"33" * 16 + b">]"
    return _handwritten_pdf("Locked", "Secret.").replace(
        b"/Info 6 0 R >>", b"/Info 6 0 R " + encrypt + b" >>"
    )


def test_password_protected_pdf() -> None:
    _rejects("locked.pdf", _encrypted_pdf(), PDF, "password-protected PDF")


@pytest.mark.parametrize("content", [b"%PDF-", b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog", b"not a pdf at all"])
def test_pdf_garbage_is_422(content: bytes) -> None:
    _rejects("broken.pdf", content, PDF, "not a valid PDF")


def test_ole_file_named_docx() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    _rejects("protected.docx", ole, DOCX, "password-protected document or a legacy .doc")


def _docx_with(extra: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A real DOCX with extra members added to its archive."""
    source = zipfile.ZipFile(io.BytesIO(_docx(lambda d: d.add_paragraph("The real text."))))
    out = io.BytesIO()
    with source, zipfile.ZipFile(out, "w", compression) as archive:
        for item in source.infolist():
            archive.writestr(item, source.read(item))
        for name, data in extra.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_docx_bomb_hidden_by_incompressible_padding() -> None:
    """The archive's ratio looks harmless (random padding), the member's does not."""
    padded = _docx_with(
        {"word/media/pad.bin": random.Random(1).randbytes(3 * 1024 * 1024)}, zipfile.ZIP_STORED
    )
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(padded)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive,
    ):
        for item in source.infolist():
            archive.writestr(item, source.read(item))
        with archive.open("word/bomb.xml", "w", force_zip64=True) as member:
            for _ in range(20):
                member.write(bytes(1024 * 1024))
    members = zipfile.ZipFile(io.BytesIO(out.getvalue())).infolist()
    total = sum(m.file_size for m in members) / sum(m.compress_size for m in members)
    # the whole-archive check alone would let it through
    assert total < docx_loader.MAX_DOCX_COMPRESSION_RATIO
    _rejects("padded.docx", out.getvalue(), DOCX, "'word/bomb.xml' has compression ratio")


def test_docx_with_too_many_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docx_loader, "MAX_DOCX_ENTRIES", 50)
    data = _docx_with({f"extra/item{i}.xml": b"<a/>" for i in range(60)})
    _rejects("many.docx", data, DOCX, "too many entries in the archive")


def test_docx_entry_count_is_read_before_zipfile_parses_the_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(docx_loader, "MAX_DOCX_ENTRIES", 50)
    data = _docx_with({f"extra/item{i}.xml": b"<a/>" for i in range(60)})
    assert docx_loader._zip_entry_count(data) == len(zipfile.ZipFile(io.BytesIO(data)).infolist())
    monkeypatch.setattr(zipfile, "ZipFile", None)  # would raise TypeError if it were reached
    _rejects("many.docx", data, DOCX, "too many entries")


def test_docx_nested_zip_bomb_is_never_expanded() -> None:
    """A zip bomb inside the DOCX is one more opaque part: its compressed bytes count, nothing inflates."""
    inner = _zeros_docx(50)
    parsed = load_document(
        "nested.docx", _docx_with({"word/embeddings/bomb.zip": inner}, zipfile.ZIP_STORED), DOCX
    )
    assert parsed.text == "The real text."


def test_docx_billion_laughs_is_not_expanded() -> None:
    entities = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    body = (
        f'<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY l0 "lol">{entities}]>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        "<w:body><w:p><w:r><w:t>Before &l9; after</w:t></w:r></w:p></w:body></w:document>"
    )
    source = zipfile.ZipFile(io.BytesIO(_docx(lambda d: d.add_paragraph("x"))))
    out = io.BytesIO()
    with source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in source.infolist():
            data = body.encode() if item.filename == "word/document.xml" else source.read(item)
            archive.writestr(item.filename, data)
    try:
        parsed = load_document("laughs.docx", out.getvalue(), DOCX)
    except UnprocessableDocument as error:
        assert error.message.startswith("laughs.docx: ")
    else:
        assert len(parsed.text) < 1000 and "lollol" not in parsed.text


def test_encrypted_zip_members_in_docx() -> None:
    data = bytearray(_docx(lambda d: d.add_paragraph("x")))
    at = data.find(b"PK\x01\x02")  # set the "encrypted" flag of the first central directory entry
    data[at + 8] |= 0x1
    _rejects("enc.docx", bytes(data), DOCX, "encrypted archive members")


def test_docx_zip_bomb_is_refused_without_inflating_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    def inflate(*_: object, **__: object) -> None:
        raise AssertionError("a member was opened")

    bomb = _zeros_docx(100)
    monkeypatch.setattr(zipfile.ZipFile, "open", inflate)
    _rejects("bomb.docx", bomb, DOCX, "possible zip bomb")


@pytest.mark.parametrize("media_type", [PDF, HTML, DOCX, MARKDOWN, TEXT])
@given(content=st.one_of(st.binary(max_size=2000), st.text(max_size=500).map(str.encode)))
@settings(max_examples=150, deadline=None, database=None)
def test_any_bytes_parse_or_fail_with_a_typed_error(media_type: str, content: bytes) -> None:
    """Whatever the bytes, a loader returns a document or raises the 415/422 naming the file, nothing else."""
    try:
        parsed = load_document("fuzz.bin", content, media_type)
    except (UnprocessableDocument, UnsupportedMediaType) as error:
        assert error.message.startswith("fuzz.bin: ")
    else:
        assert parsed.text.strip() and parsed.title


@given(
    charset=st.sampled_from(["rot13", "base64", "utf-7", "idna", "nonsense", "utf-16", "x" * 40]),
    body=st.text(max_size=50),
)
@settings(max_examples=60, deadline=None, database=None)
def test_any_declared_html_charset_is_safe(charset: str, body: str) -> None:
    page = f'<html><head><meta charset="{charset}"></head><body><p>ok {body}</p></body></html>'.encode()
    try:
        parsed = load_document("page.html", page, HTML)
    except (UnprocessableDocument, UnsupportedMediaType) as error:
        assert error.message.startswith("page.html: ")
    else:
        assert "ok" in parsed.text
