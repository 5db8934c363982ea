"""What every loader shares: the ``Assembler`` that joins blocks into a ``ParsedDocument`` with exact
section offsets, whitespace normalization, and ``wrap_errors`` (a library's failure on a corrupt file
becomes a 422)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePath

from rag.errors import RagError, UnprocessableDocument
from rag.types import ParsedDocument, Section

CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")  # category Cc minus whitespace


class Assembler:
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
        text = normalize(raw)
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
        title = WHITESPACE.sub(" ", title or "").strip() or PurePath(filename).stem
        return ParsedDocument(text=text, title=title, sections=sections)


_CRLF = re.compile(r"\r\n?")
_SPACES = re.compile(r"[^\S\n]+")
_LINE_EDGES = re.compile(r" *\n *")
_BLANK_LINES = re.compile(r"\n{3,}")
WHITESPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Collapse spaces/tabs, drop stray control chars, keep paragraph newlines (at most one blank line)."""
    text = CONTROL_CHARS.sub("", _CRLF.sub("\n", text))
    text = _LINE_EDGES.sub("\n", _SPACES.sub(" ", text))
    return _BLANK_LINES.sub("\n\n", text).strip()


Loader = Callable[[str, bytes], ParsedDocument]


def wrap_errors(kind: str) -> Callable[[Loader], Loader]:
    """Libraries raise anything on a corrupt file; report it as a 422 naming the file and the format."""

    def decorate(load: Loader) -> Loader:
        def wrapped(filename: str, content: bytes) -> ParsedDocument:
            try:
                return load(filename, content)
            except RagError:
                raise
            except Exception as exc:
                raise UnprocessableDocument(f"{filename}: not a valid {kind} ({exc})") from exc

        return wrapped

    return decorate
