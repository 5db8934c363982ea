"""Turn an uploaded file into plain text plus sections (heading/page) that chunking keeps as metadata.

Every failure is a typed error naming the file, so the API can tell the caller what to fix:
``UnsupportedMediaType`` (415) for formats we do not read, ``UnprocessableDocument`` (422) for files we
should read but cannot.

One module per job, as Haystack keeps one converter per file:

- ``detection``: the media types we read and ``detect_media_type`` (extension, declared type, magic bytes);
- ``dispatch``: ``load_document``, a media type to its loader;
- ``pdf``, ``html``, ``docx`` (with the zip-bomb checks on the archive), ``markdown``, ``text``: one loader
  per format;
- ``decoding``: bytes of the text formats (plain text, Markdown, HTML) to str;
- ``common``: what the loaders share (the ``Assembler`` that builds a ``ParsedDocument``, whitespace
  normalization, the 422 for a library's failure on a corrupt file).
"""

from indexing.loaders.detection import DOCX, HTML, MARKDOWN, MEDIA_TYPES, PDF, TEXT, detect_media_type
from indexing.loaders.dispatch import load_document

__all__ = ["DOCX", "HTML", "MARKDOWN", "MEDIA_TYPES", "PDF", "TEXT", "detect_media_type", "load_document"]
