"""HTML (selectolax's lexbor parser): visible text in document order, h1-h6 start sections."""

from __future__ import annotations

from collections.abc import Iterator

from selectolax.lexbor import LexborHTMLParser, LexborNode

from indexing.loaders.common import WHITESPACE, Assembler, normalize
from indexing.loaders.decoding import decode_text
from rag.types import ParsedDocument

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


def load_html(filename: str, content: bytes) -> ParsedDocument:
    tree = LexborHTMLParser(decode_text(filename, content, html=True))
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
        self.assembler = Assembler()
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
            heading = normalize("".join(self._pieces))
            self.assembler.section(heading or None)
            if tag == "h1" and heading and self.first_h1 is None:
                self.first_h1 = heading
        if tag in _HTML_BLOCKS:
            self._flush()

    def _text(self, text: str) -> None:
        self._pieces.append(text if self._pre_depth else WHITESPACE.sub(" ", text))

    def _flush(self) -> None:
        self.assembler.block("".join(self._pieces))
        self._pieces.clear()


def _children(node: LexborNode) -> Iterator[LexborNode]:
    child = node.child
    while child is not None:
        yield child
        child = child.next
