"""``load_document``: a media type to its format's loader."""

from __future__ import annotations

from indexing.loaders.common import Loader
from indexing.loaders.detection import DOCX, HTML, MARKDOWN, PDF, SUPPORTED, TEXT, canonical_type
from indexing.loaders.docx import load_docx
from indexing.loaders.html import load_html
from indexing.loaders.markdown import load_markdown
from indexing.loaders.pdf import load_pdf
from indexing.loaders.text import load_text
from rag.errors import UnprocessableDocument, UnsupportedMediaType
from rag.types import ParsedDocument

_LOADERS: dict[str, Loader] = {
    PDF: load_pdf,
    HTML: load_html,
    DOCX: load_docx,
    MARKDOWN: load_markdown,
    TEXT: load_text,
}


def load_document(filename: str, content: bytes, media_type: str) -> ParsedDocument:
    """Parse ``content`` of ``media_type`` (as returned by ``detect_media_type``)."""
    loader = _LOADERS.get(canonical_type(media_type) or "")
    if loader is None:
        raise UnsupportedMediaType(
            f"{filename}: unsupported media type {media_type!r}; supported: {SUPPORTED}"
        )
    if not content:
        raise UnprocessableDocument(f"{filename}: empty file")
    return loader(filename, content)
