"""Plain text: the decoded text as one block."""

from __future__ import annotations

from indexing.loaders.common import Assembler
from indexing.loaders.decoding import decode_text
from rag.types import ParsedDocument


def load_text(filename: str, content: bytes) -> ParsedDocument:
    assembler = Assembler()
    assembler.block(decode_text(filename, content))
    return assembler.document(filename, None)
