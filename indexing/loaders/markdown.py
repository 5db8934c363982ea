"""Markdown (markdown-it-py, CommonMark with tables): rendered to plain text, headings start sections."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.token import Token

from indexing.loaders.common import Assembler, normalize
from indexing.loaders.decoding import decode_text
from rag.types import ParsedDocument


def load_markdown(filename: str, content: bytes) -> ParsedDocument:
    """Rendered to plain text (no markup); each heading starts a section and stays in the text."""
    tokens = MarkdownIt("commonmark").enable("table").parse(decode_text(filename, content))
    assembler = Assembler()
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
            heading = normalize("".join(pieces)) or None
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
