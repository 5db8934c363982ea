"""DOCX (python-docx): paragraphs and table rows in body order, headings start sections; the archive is
checked for zip bombs from its directory before python-docx inflates anything."""

from __future__ import annotations

import io
import struct
import zipfile

import docx
from docx.opc.constants import RELATIONSHIP_TYPE
from docx.table import Table, _Row

from indexing.loaders.common import Assembler, normalize, wrap_errors
from rag.errors import UnprocessableDocument
from rag.types import ParsedDocument

# Zip-bomb guard for DOCX, checked on the zip directory before anything is inflated. The declared sizes
# are trustworthy here because ``zipfile`` never inflates a member past its declared size. The ratio is
# checked for the whole archive and for each member, so incompressible padding cannot hide a bomb; nested
# archives (a zip inside the DOCX) are never opened, they only count with their own (compressed) size.
MAX_DOCX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
MAX_DOCX_COMPRESSION_RATIO = 100
# Entry count, read from the end-of-central-directory record before zipfile parses the directory.
MAX_DOCX_ENTRIES = 10_000
_RATIO_CHECK_MIN_BYTES = 1024 * 1024  # small archives cannot hurt, whatever their ratio


@wrap_errors("DOCX")
def load_docx(filename: str, content: bytes) -> ParsedDocument:
    """Paragraphs and table rows in body order; "Title"/"Heading N" paragraphs start sections."""
    _check_docx_archive(filename, content)
    document = docx.Document(io.BytesIO(content))
    assembler = Assembler()
    first_heading: str | None = None
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                assembler.block(_docx_row_text(row))
            continue
        style = getattr(item.style, "name", None) or ""
        if style == "Title" or style.startswith("Heading"):
            heading = normalize(item.text) or None
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


def zip_has_docx_body(content: bytes) -> bool:
    """For sniffing (``detection``): a zip with ``word/document.xml`` is a DOCX."""
    entries = _zip_entry_count(content)
    if entries is not None and entries > MAX_DOCX_ENTRIES:
        return True  # the DOCX loader refuses it, naming the reason
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        return False
