"""Which format an upload is: the media types we read, detection by extension, declared type and magic bytes,
and a description of a file we do not read, so the 415 says what it is."""

from __future__ import annotations

from pathlib import PurePath

from indexing.loaders.docx import zip_has_docx_body
from rag.errors import UnsupportedMediaType

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
SUPPORTED = ".pdf, .docx, .html, .md, .txt"


def detect_media_type(filename: str, content: bytes, declared: str | None = None) -> str:
    """Extension first (users name files deliberately), then the client's declared type, then magic bytes."""
    by_extension = MEDIA_TYPES.get(PurePath(filename).suffix.lower())
    if by_extension:
        return by_extension
    declared_type = canonical_type(declared) if declared else None
    if declared_type:
        return declared_type
    sniffed = _sniff_supported(content)
    if sniffed:
        return sniffed
    raise UnsupportedMediaType(
        f"{filename}: unsupported file type ({_describe(filename, content, declared)}); supported: {SUPPORTED}"
    )


def canonical_type(media_type: str) -> str | None:
    base = media_type.split(";", 1)[0].strip().lower()
    if base in MEDIA_TYPES.values():
        return base
    return _DECLARED_ALIASES.get(base)


def _sniff_supported(content: bytes) -> str | None:
    if content.startswith(b"%PDF-"):
        return PDF
    if content.startswith(b"PK\x03\x04") and zip_has_docx_body(content):
        return DOCX
    head = content[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return HTML
    return None


def _describe(filename: str, content: bytes, declared: str | None) -> str:
    """Say what the file is, so a 415 tells the caller more than 'no'."""
    kind = binary_signature(content)
    if kind:
        return kind
    suffix = PurePath(filename).suffix.lower()
    if suffix:
        return f"extension {suffix!r}"
    if declared:
        return f"declared as {declared!r}"
    return "no extension and unrecognized content"


def binary_signature(content: bytes) -> str | None:
    """The kind of binary file ``content`` starts like; ASCII-only signatures ("MZ", "ID3") need a NUL too,
    so a text that happens to start with those letters stays text."""
    head = content[:1024]
    for magic, kind in _BINARY_AS_TEXT_MAGIC:
        if head.startswith(magic) and (magic == b"%PDF-" or not _printable(magic) or b"\x00" in head):
            return kind
    return None


def _printable(data: bytes) -> bool:
    return all(32 <= byte < 127 for byte in data)
