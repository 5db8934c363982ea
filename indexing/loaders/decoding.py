"""Bytes of a text format (plain text, Markdown, HTML) to str: binary signatures, BOM, the page's
``<meta charset>``, UTF-8, then charset detection; binary data sent as text is refused."""

from __future__ import annotations

import codecs
import re

import charset_normalizer

from indexing.loaders.common import CONTROL_CHARS
from indexing.loaders.detection import SUPPORTED, binary_signature
from rag.errors import UnprocessableDocument, UnsupportedMediaType

MAX_CONTROL_CHAR_SHARE = 0.05

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


def decode_text(filename: str, content: bytes, html: bool = False) -> str:
    """Bytes of a text format to str: never garbage, never silent mojibake when it is cheap to tell.

    Order: binary signatures (a PNG named .txt) → BOM → (HTML) ``<meta charset>`` → UTF-8 → charset
    detection (UTF-16/32 without BOM, windows-1252, GB18030, Shift-JIS, cp1251, ...). NUL bytes outside
    UTF-16/32 and text full of control characters are binary data, refused with a 422.
    """
    kind = binary_signature(content)
    if kind:
        raise UnsupportedMediaType(f"{filename}: binary data sent as text ({kind}); supported: {SUPPORTED}")
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
    controls = len(CONTROL_CHARS.findall(text))
    if controls > MAX_CONTROL_CHAR_SHARE * len(text):
        raise UnprocessableDocument(f"{filename}: binary data sent as text ({controls} control characters)")
