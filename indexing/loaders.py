"""Turn an uploaded file into plain text plus sections (heading/page) that chunking keeps as metadata.

Every failure is a typed error naming the file, so the API can tell the caller what to fix:
``UnsupportedMediaType`` (415) for formats we do not read, ``UnprocessableDocument`` (422) for files we
should read but cannot.
"""

from __future__ import annotations

import codecs
import io
import re
import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import PurePath

import charset_normalizer
import docx
import pypdfium2 as pdfium
from docx.opc.constants import RELATIONSHIP_TYPE
from docx.table import Table, _Row
from markdown_it import MarkdownIt
from markdown_it.token import Token
from selectolax.lexbor import LexborHTMLParser, LexborNode

from rag.errors import RagError, UnprocessableDocument, UnsupportedMediaType
from rag.types import ParsedDocument, Section

PDF = "application/pdf"
HTML = "text/html"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
MARKDOWN = "text/markdown"
TEXT = "text/plain"

MEDIA_TYPES: dict[str, str] = {
    ".pdf": PDF,
    ".html": HTML,
    ".htm": HTML,
    ".docx": DOCX,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".txt": TEXT,
    ".text": TEXT,
}
_DECLARED_ALIASES = {"application/xhtml+xml": HTML, "text/x-markdown": MARKDOWN}

# Zip-bomb guard for DOCX, checked on the zip directory before anything is inflated. The declared sizes
# are trustworthy here because ``zipfile`` never inflates a member past its declared size. The ratio is
# checked for the whole archive and for each member, so incompressible padding cannot hide a bomb; nested
# archives (a zip inside the DOCX) are never opened, they only count with their own (compressed) size.
MAX_DOCX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
MAX_DOCX_COMPRESSION_RATIO = 100
# Entry count, read from the end-of-central-directory record before zipfile parses the directory.
MAX_DOCX_ENTRIES = 10_000
_RATIO_CHECK_MIN_BYTES = 1024 * 1024  # small archives cannot hurt, whatever their ratio
MAX_CONTROL_CHAR_SHARE = 0.05
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")  # category Cc minus whitespace

_UNSUPPORTED_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"MZ", "a Windows executable"),
    (b"\x7fELF", "an ELF executable"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"PK\x03\x04", "a ZIP archive"),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "an OLE compound file (legacy .doc/.xls, or a password-protected Office file)",
    ),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (b"\x00asm", "a WebAssembly module"),
    (b"\xca\xfe\xba\xbe", "a Java class or Mach-O file"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"RIFF", "a RIFF (audio/video/image) file"),
    (b"OggS", "an Ogg media file"),
    (b"fLaC", "a FLAC audio file"),
    (b"ID3", "an MP3 audio file"),
)
# What a file declared as text must not start with (checked before any decoding): a clear 415 naming the kind.
_BINARY_AS_TEXT_MAGIC = _UNSUPPORTED_MAGIC + ((b"%PDF-", "a PDF document"),)
_SUPPORTED = ".pdf, .docx, .html, .md, .txt"


def detect_media_type(filename: str, content: bytes, declared: str | None = None) -> str:
    """Extension first (users name files deliberately), then the client's declared type, then magic bytes."""
    by_extension = MEDIA_TYPES.get(PurePath(filename).suffix.lower())
    if by_extension:
        return by_extension
    declared_type = _canonical_type(declared) if declared else None
    if declared_type:
        return declared_type
    sniffed = _sniff_supported(content)
    if sniffed:
        return sniffed
    raise UnsupportedMediaType(
        f"{filename}: unsupported file type ({_describe(filename, content, declared)}); supported: {_SUPPORTED}"
    )


def load_document(filename: str, content: bytes, media_type: str) -> ParsedDocument:
    """Parse ``content`` of ``media_type`` (as returned by ``detect_media_type``)."""
    loader = _LOADERS.get(_canonical_type(media_type) or "")
    if loader is None:
        raise UnsupportedMediaType(
            f"{filename}: unsupported media type {media_type!r}; supported: {_SUPPORTED}"
        )
    if not content:
        raise UnprocessableDocument(f"{filename}: empty file")
    return loader(filename, content)


def _canonical_type(media_type: str) -> str | None:
    base = media_type.split(";", 1)[0].strip().lower()
    if base in MEDIA_TYPES.values():
        return base
    return _DECLARED_ALIASES.get(base)


def _sniff_supported(content: bytes) -> str | None:
    if content.startswith(b"%PDF-"):
        return PDF
    if content.startswith(b"PK\x03\x04") and _zip_has_docx_body(content):
        return DOCX
    head = content[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return HTML
    return None


def _zip_has_docx_body(content: bytes) -> bool:
    entries = _zip_entry_count(content)
    if entries is not None and entries > MAX_DOCX_ENTRIES:
        return True  # the DOCX loader refuses it, naming the reason
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        return False


def _describe(filename: str, content: bytes, declared: str | None) -> str:
    """Say what the file is, so a 415 tells the caller more than 'no'."""
    kind = _binary_signature(content)
    if kind:
        return kind
    suffix = PurePath(filename).suffix.lower()
    if suffix:
        return f"extension {suffix!r}"
    if declared:
        return f"declared as {declared!r}"
    return "no extension and unrecognized content"


class _Assembler:
    """Joins normalized blocks with blank lines and records where sections start, so offsets stay exact."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._starts: list[tuple[int, str | None, int | None]] = []
        self._heading: str | None = None
        self._page: int | None = None
        self._new_section = True

    def section(self, heading: str | None, page: int | None = None) -> None:
        """The next non-empty block starts a section with this heading and page."""
        self._heading, self._page, self._new_section = heading, page, True

    def block(self, raw: str) -> None:
        text = _normalize(raw)
        if not text:
            return
        if self._parts:
            self._parts.append("\n\n")
            self._length += 2
        if self._new_section:
            self._starts.append((self._length, self._heading, self._page))
            self._new_section = False
        self._parts.append(text)
        self._length += len(text)

    @property
    def empty(self) -> bool:
        return not self._parts

    def document(self, filename: str, title: str | None) -> ParsedDocument:
        text = "".join(self._parts)
        if not text:
            raise UnprocessableDocument(f"{filename}: no text found")
        ends = [start for start, _, _ in self._starts[1:]] + [len(text)]
        sections = tuple(
            Section(start=start, end=end, heading=heading, page=page)
            for (start, heading, page), end in zip(self._starts, ends)
        )
        title = _WHITESPACE.sub(" ", title or "").strip() or PurePath(filename).stem
        return ParsedDocument(text=text, title=title, sections=sections)


_CRLF = re.compile(r"\r\n?")
_SPACES = re.compile(r"[^\S\n]+")
_LINE_EDGES = re.compile(r" *\n *")
_BLANK_LINES = re.compile(r"\n{3,}")
_WHITESPACE = re.compile(r"\s+")


def _normalize(text: str) -> str:
    """Collapse spaces/tabs, drop stray control chars, keep paragraph newlines (at most one blank line)."""
    text = _CONTROL_CHARS.sub("", _CRLF.sub("\n", text))
    text = _LINE_EDGES.sub("\n", _SPACES.sub(" ", text))
    return _BLANK_LINES.sub("\n\n", text).strip()


_Loader = Callable[[str, bytes], ParsedDocument]


def _wrap_errors(kind: str) -> Callable[[_Loader], _Loader]:
    """Libraries raise anything on a corrupt file; report it as a 422 naming the file and the format."""

    def decorate(load: _Loader) -> _Loader:
        def wrapped(filename: str, content: bytes) -> ParsedDocument:
            try:
                return load(filename, content)
            except RagError:
                raise
            except Exception as exc:
                raise UnprocessableDocument(f"{filename}: not a valid {kind} ({exc})") from exc

        return wrapped

    return decorate


# pdfium's load error codes (FPDF_ERR_*) the caller can act on.
_PDF_LOAD_ERRORS = {
    3: "not a valid PDF (corrupt or truncated: pdfium cannot read its structure)",
    4: "password-protected PDF (encrypted; remove the password and upload it again)",
    5: "encrypted PDF with an unsupported security handler",
}


def _open_pdf(filename: str, content: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(content)
    except pdfium.PdfiumError as exc:
        reason = _PDF_LOAD_ERRORS.get(getattr(exc, "err_code", None) or 0)
        if reason is None:
            raise
        raise UnprocessableDocument(f"{filename}: {reason}") from exc


@_wrap_errors("PDF")
def _load_pdf(filename: str, content: bytes) -> ParsedDocument:
    """One section per page; pages without a text layer contribute nothing."""
    pdf = _open_pdf(filename, content)
    try:
        assembler = _Assembler()
        for index in range(len(pdf)):
            assembler.section(None, page=index + 1)
            assembler.block(_pdf_page_text(pdf, index))
        title = pdf.get_metadata_value("Title")
    finally:
        pdf.close()
    if assembler.empty:
        raise UnprocessableDocument(f"{filename}: no extractable text (scanned PDF?)")
    return assembler.document(filename, title)


def _pdf_page_text(pdf: pdfium.PdfDocument, index: int) -> str:
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            return textpage.get_text_range()
        finally:
            textpage.close()
    finally:
        page.close()


# Never indexed: code, styles, fallbacks for what the page does show (noscript, iframe/noembed/noframes raw
# text), templates, and the head (its <title> is read first). Comments and doctypes are skipped in the walk.
_HTML_DROP = ["script", "style", "noscript", "template", "head", "iframe", "noembed", "noframes"]
_HTML_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_HTML_BLOCKS = _HTML_HEADINGS | {
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog", "div", "dl",
    "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "li", "main", "nav", "ol",
    "p", "pre", "section", "summary", "table", "tbody", "thead", "tfoot", "tr", "ul",
}  # fmt: skip
_HTML_CELLS = {"td", "th"}


def _load_html(filename: str, content: bytes) -> ParsedDocument:
    tree = LexborHTMLParser(_decode_text(filename, content, html=True))
    title_node = tree.css_first("title")
    title = title_node.text() if title_node else None
    tree.strip_tags(_HTML_DROP)
    walker = _HtmlWalker()
    walker.walk(tree.body or tree.root)
    if not title:
        title = walker.first_h1
    return walker.assembler.document(filename, title)


class _HtmlWalker:
    """Visible text in document order; block elements end a paragraph, h1-h6 start a section.

    Iterative (explicit stack) so deeply nested markup cannot exhaust Python's recursion limit.
    """

    def __init__(self) -> None:
        self.assembler = _Assembler()
        self.first_h1: str | None = None
        self._pieces: list[str] = []
        self._pre_depth = 0

    def walk(self, root: LexborNode) -> None:
        stack: list[tuple[LexborNode, bool]] = [(root, False)]
        while stack:
            node, leaving = stack.pop()
            if leaving:
                self._close(node.tag)
            elif node.tag == "-text":
                self._text(node.text_content or "")
            elif not node.tag.startswith("-"):  # comments, doctype
                self._open(node.tag)
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(list(_children(node))))
        self._flush()

    def _open(self, tag: str) -> None:
        if tag in _HTML_BLOCKS:
            self._flush()
        elif tag in _HTML_CELLS and "".join(self._pieces).strip():
            self._pieces.append(" | ")
        elif tag == "br":
            self._pieces.append("\n")
        if tag == "pre":
            self._pre_depth += 1

    def _close(self, tag: str) -> None:
        if tag == "pre":
            self._pre_depth -= 1
        if tag in _HTML_HEADINGS:
            heading = _normalize("".join(self._pieces))
            self.assembler.section(heading or None)
            if tag == "h1" and heading and self.first_h1 is None:
                self.first_h1 = heading
        if tag in _HTML_BLOCKS:
            self._flush()

    def _text(self, text: str) -> None:
        self._pieces.append(text if self._pre_depth else _WHITESPACE.sub(" ", text))

    def _flush(self) -> None:
        self.assembler.block("".join(self._pieces))
        self._pieces.clear()


def _children(node: LexborNode) -> Iterator[LexborNode]:
    child = node.child
    while child is not None:
        yield child
        child = child.next


@_wrap_errors("DOCX")
def _load_docx(filename: str, content: bytes) -> ParsedDocument:
    """Paragraphs and table rows in body order; "Title"/"Heading N" paragraphs start sections."""
    _check_docx_archive(filename, content)
    document = docx.Document(io.BytesIO(content))
    assembler = _Assembler()
    first_heading: str | None = None
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                assembler.block(_docx_row_text(row))
            continue
        style = getattr(item.style, "name", None) or ""
        if style == "Title" or style.startswith("Heading"):
            heading = _normalize(item.text) or None
            assembler.section(heading)
            if first_heading is None and style in ("Title", "Heading 1"):
                first_heading = heading
        assembler.block(item.text)
    return assembler.document(filename, _docx_core_title(document) or first_heading)


def _docx_core_title(document: docx.document.Document) -> str | None:
    """python-docx invents the title "Word Document" for a file without core properties; ignore that."""
    try:
        document.part.package.part_related_by(RELATIONSHIP_TYPE.CORE_PROPERTIES)
    except KeyError:
        return None
    return document.core_properties.title


def _docx_row_text(row: _Row) -> str:
    """Merged cells repeat in ``row.cells``; keep each underlying cell once."""
    seen: set[int] = set()
    texts = []
    for cell in row.cells:
        if id(cell._tc) in seen:
            continue
        seen.add(id(cell._tc))
        if cell.text.strip():
            texts.append(cell.text)
    return " | ".join(texts)


def _check_docx_archive(filename: str, content: bytes) -> None:
    """Refuse non-DOCX files and zip bombs from the zip's directory, before python-docx inflates anything."""
    if content.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        raise UnprocessableDocument(
            f"{filename}: not a valid DOCX (an OLE compound file: a password-protected document or a legacy "
            ".doc; save it as an unprotected .docx)"
        )
    entries = _zip_entry_count(content)
    if entries is not None and entries > MAX_DOCX_ENTRIES:
        raise UnprocessableDocument(
            f"{filename}: too many entries in the archive ({entries} > {MAX_DOCX_ENTRIES}, possible zip bomb)"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise UnprocessableDocument(f"{filename}: not a valid DOCX (not a zip archive: {exc})") from exc
    if len(members) > MAX_DOCX_ENTRIES:
        raise UnprocessableDocument(
            f"{filename}: too many entries in the archive ({len(members)} > {MAX_DOCX_ENTRIES}, possible zip bomb)"
        )
    if not any(member.filename == "word/document.xml" for member in members):
        raise UnprocessableDocument(f"{filename}: not a valid DOCX (no word/document.xml)")
    if any(member.flag_bits & 0x1 for member in members):
        raise UnprocessableDocument(f"{filename}: not a valid DOCX (encrypted archive members)")
    uncompressed = sum(member.file_size for member in members)
    compressed = max(1, sum(member.compress_size for member in members))
    if uncompressed > MAX_DOCX_UNCOMPRESSED_BYTES:
        raise UnprocessableDocument(
            f"{filename}: decompressed size too large ({uncompressed} bytes > {MAX_DOCX_UNCOMPRESSED_BYTES}, "
            "possible zip bomb)"
        )
    if uncompressed > _RATIO_CHECK_MIN_BYTES and uncompressed / compressed > MAX_DOCX_COMPRESSION_RATIO:
        raise UnprocessableDocument(
            f"{filename}: decompressed size too large (compression ratio {uncompressed // compressed}:1 "
            f"> {MAX_DOCX_COMPRESSION_RATIO}:1, possible zip bomb)"
        )
    # Incompressible padding beside a bomb lowers the archive's ratio, not the member's.
    for member in members:
        ratio = member.file_size / max(1, member.compress_size)
        if member.file_size > _RATIO_CHECK_MIN_BYTES and ratio > MAX_DOCX_COMPRESSION_RATIO:
            raise UnprocessableDocument(
                f"{filename}: decompressed size too large ({member.filename!r} has compression ratio "
                f"{int(ratio)}:1 > {MAX_DOCX_COMPRESSION_RATIO}:1, possible zip bomb)"
            )


_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"


def _zip_entry_count(content: bytes) -> int | None:
    """The entry count the end-of-central-directory record declares (zip64 too), read without parsing the
    directory, so an archive of millions of tiny entries is refused before ``zipfile`` builds them all."""
    at = content.rfind(_EOCD, max(0, len(content) - 22 - 65535))
    if at < 0 or at + 22 > len(content):
        return None
    (entries,) = struct.unpack_from("<H", content, at + 10)
    locator = at - 20
    if entries == 0xFFFF and locator >= 0 and content[locator : locator + 4] == _ZIP64_LOCATOR:
        (record,) = struct.unpack_from("<Q", content, locator + 8)
        if record + 56 <= len(content) and content[record : record + 4] == _ZIP64_EOCD:
            (entries,) = struct.unpack_from("<Q", content, record + 32)
    return entries


def _load_markdown(filename: str, content: bytes) -> ParsedDocument:
    """Rendered to plain text (no markup); each heading starts a section and stays in the text."""
    tokens = MarkdownIt("commonmark").enable("table").parse(_decode_text(filename, content))
    assembler = _Assembler()
    first_heading: str | None = None
    pieces: list[str] = []
    for token in tokens:
        if token.type == "inline":
            pieces.append(_markdown_inline(token))
        elif token.type in ("th_open", "td_open") and "".join(pieces).strip():
            pieces.append(" | ")
        elif token.type in ("fence", "code_block"):
            assembler.block(token.content)
        elif token.type == "heading_close":
            heading = _normalize("".join(pieces)) or None
            assembler.section(heading)
            first_heading = first_heading or heading
        if token.type in ("heading_close", "paragraph_close", "tr_close"):
            assembler.block("".join(pieces))
            pieces.clear()
    return assembler.document(filename, first_heading)


def _markdown_inline(token: Token) -> str:
    """Text of an inline token: words, code spans and image alt text; markup and raw HTML dropped."""
    out = []
    for child in token.children or ():
        if child.type in ("text", "code_inline", "image"):
            out.append(child.content)
        elif child.type == "softbreak":
            out.append(" ")
        elif child.type == "hardbreak":
            out.append("\n")
    return "".join(out)


def _load_text(filename: str, content: bytes) -> ParsedDocument:
    assembler = _Assembler()
    assembler.block(_decode_text(filename, content))
    return assembler.document(filename, None)


_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# WHATWG: a page labelled Latin-1 or ASCII is decoded as windows-1252 (its superset, with “”, € and —).
_LABEL_ALIASES = {"iso8859-1": "cp1252", "ascii": "cp1252", "gb2312": "gb18030", "gbk": "gb18030"}
_HTML_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]{1,40})""", re.IGNORECASE
)
# Candidates charset detection proposes that decode the same bytes about as cleanly are ambiguous (short
# texts especially); among those, windows-1252 (Western text) wins, then GB18030 (Chinese), then the best.
_CHAOS_TIE = 0.05
_PREFERRED_LEGACY = ("cp1252", "gb18030")
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def _decode_text(filename: str, content: bytes, html: bool = False) -> str:
    """Bytes of a text format to str: never garbage, never silent mojibake when it is cheap to tell.

    Order: binary signatures (a PNG named .txt) → BOM → (HTML) ``<meta charset>`` → UTF-8 → charset
    detection (UTF-16/32 without BOM, windows-1252, GB18030, Shift-JIS, cp1251, ...). NUL bytes outside
    UTF-16/32 and text full of control characters are binary data, refused with a 422.
    """
    kind = _binary_signature(content)
    if kind:
        raise UnsupportedMediaType(f"{filename}: binary data sent as text ({kind}); supported: {_SUPPORTED}")
    encoding = next((name for bom, name in _BOMS if content.startswith(bom)), None)
    if encoding is not None:
        text = _strict(filename, content, encoding)
    else:
        text = (_declared_html_charset(content) if html else None) or _utf8_or_legacy(filename, content)
    _reject_binary(filename, text)
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise UnprocessableDocument(f"{filename}: no text found (only whitespace)")
    return text


def _binary_signature(content: bytes) -> str | None:
    """The kind of binary file ``content`` starts like; ASCII-only signatures ("MZ", "ID3") need a NUL too,
    so a text that happens to start with those letters stays text."""
    head = content[:1024]
    for magic, kind in _BINARY_AS_TEXT_MAGIC:
        if head.startswith(magic) and (magic == b"%PDF-" or not _printable(magic) or b"\x00" in head):
            return kind
    return None


def _printable(data: bytes) -> bool:
    return all(32 <= byte < 127 for byte in data)


def _strict(filename: str, content: bytes, encoding: str) -> str:
    try:
        return content.decode(encoding)
    except UnicodeDecodeError as exc:
        raise UnprocessableDocument(
            f"{filename}: undecodable text (not valid {_label(encoding)}: {exc.reason} at byte {exc.start})"
        ) from exc


def _label(encoding: str) -> str:
    return {
        "utf-8": "UTF-8",
        "utf-8-sig": "UTF-8",
        "utf-16": "UTF-16",
        "utf-32-le": "UTF-32",
        "utf-32-be": "UTF-32",
    }.get(encoding, encoding)


def _declared_html_charset(content: bytes) -> str | None:
    """The page's own ``<meta charset>`` (first 1024 bytes, as browsers look), if it decodes the page."""
    match = _HTML_META_CHARSET.search(content[:1024])
    if not match:
        return None
    try:
        name = codecs.lookup(match.group(1).decode("ascii")).name
    except (LookupError, UnicodeDecodeError):
        return None
    name = _LABEL_ALIASES.get(name, name)
    if name.startswith(("utf-16", "utf-32", "utf-7")):  # a page that says so in ASCII is not UTF-16
        return None
    try:
        return content.decode(name)
    except (UnicodeError, LookupError):  # a wrong label is common (and "base64" is no text encoding)
        return None


def _utf8_or_legacy(filename: str, content: bytes) -> str:
    if b"\x00" in content:  # valid UTF-8, but only UTF-16/32 text (without its BOM) has NUL bytes
        return _legacy(filename, content, None)
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data" and exc.start >= len(content) - 3:
            return content[: exc.start].decode("utf-8")  # cut in the middle of its last character
        utf8_error = exc
    valid = len(_UTF8_MULTIBYTE.findall(content))
    invalid = content.decode("utf-8", errors="replace").count("\ufffd")
    if valid > invalid:  # mostly UTF-8 with broken bytes: guessing another encoding would garble it all
        raise UnprocessableDocument(
            f"{filename}: undecodable text (UTF-8 with invalid bytes: {utf8_error.reason} at byte {utf8_error.start})"
        )
    return _legacy(filename, content, utf8_error)


def _legacy(filename: str, content: bytes, utf8_error: UnicodeDecodeError | None) -> str:
    matches = list(charset_normalizer.from_bytes(content))
    if b"\x00" in content:  # only UTF-16/32 text has NUL bytes
        matches = [m for m in matches if m.encoding.startswith(("utf_16", "utf_32"))]
        if not matches:
            raise UnprocessableDocument(f"{filename}: binary data sent as text (contains NUL bytes)")
    if not matches:
        where = f": {utf8_error.reason} at byte {utf8_error.start}" if utf8_error else ""
        raise UnprocessableDocument(
            f"{filename}: undecodable text (not UTF-8{where}; no other text encoding fits; binary data?)"
        )
    best = min(match.chaos for match in matches)
    tied = [m for m in matches if m.chaos <= best + _CHAOS_TIE]
    if not tied[0].encoding.startswith(("utf_16", "utf_32")):
        for preferred in _PREFERRED_LEGACY:
            if any(preferred in m.could_be_from_charset for m in tied):
                return _strict(filename, content, preferred)
    return _strict(filename, content, tied[0].encoding)


def _reject_binary(filename: str, text: str) -> None:
    if "\x00" in text:
        raise UnprocessableDocument(f"{filename}: binary data sent as text (contains NUL characters)")
    controls = len(_CONTROL_CHARS.findall(text))
    if controls > MAX_CONTROL_CHAR_SHARE * len(text):
        raise UnprocessableDocument(f"{filename}: binary data sent as text ({controls} control characters)")


_LOADERS: dict[str, _Loader] = {
    PDF: _load_pdf,
    HTML: _load_html,
    DOCX: _load_docx,
    MARKDOWN: _load_markdown,
    TEXT: _load_text,
}
