"""Entity and relation extraction from one chunk without any model: regexes for Latin text, jieba for Han.

The graph only needs to know *which names a chunk mentions* and *which names it puts together*, so
extraction is deliberately shallow: capitalized spans (with lowercase connectors such as "of" inside),
quoted titles, acronyms, and the document title itself. Each name is folded to a key (``normalize``) so
"The Beatles'", "the Beatles" and "THE BEATLES" reach one node. Edges are sentence co-occurrences,
labelled with the words that link the two names, plus a "mentions" edge from the title to every name in the
chunk: that edge is what lets a question about a film reach the page of the actress the film names.

Everything is pure functions over compiled patterns, so indexing pays well under a millisecond per chunk;
jieba is loaded only when a text holds Han characters.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any

from rag.jieba_loader import jieba_module
from rag.sentences import sentence_spans
from rag.types import Chunk

MENTIONS_LABEL = "mentions"
MAX_LABEL_WORDS = 8
MAX_LABEL_CHARS_CJK = 16

_UPPER = "".join(c for c in map(chr, range(0x41, 0x530)) if c.isupper())
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
HAN_RE = re.compile(f"[{_HAN}]")
# A capitalized word ("Hork-Bajir", "O'Neill"; a possessive "'s" ends it), an initial followed by a name
# ("F. Kennedy"), or a dotted acronym ("U.S.").
_WORD = (
    rf"(?:(?:[{_UPPER}]\.){{2,}}|[{_UPPER}]\.(?=[^\S\n]+[{_UPPER}])"
    rf"|[{_UPPER}][^\W_]*(?:(?:['’](?!s\b)|-)[^\W_]+)*)"
)
# Lowercase words and numbers that may sit inside a name ("University of Chicago", "Big 12 Conference").
CONNECTORS = frozenset(
    "of the and & de von van in for on at del da di du la le der den".split()  # noqa: SIM905
)
_CONNECTOR = "(?:" + "|".join(map(re.escape, sorted(CONNECTORS))) + r"|\d+)"
_SPAN_RE = re.compile(rf"(?<![\w'’]){_WORD}(?:(?:[^\S\n]+{_CONNECTOR}){{0,2}}[^\S\n]+{_WORD})*")
# Connectors that also join two separate names ("Obama in Chicago", "Scott Derrickson and Ed Wood").
_WEAK_CONNECTOR_RE = re.compile(r"[^\S\n]+(?:and|&|in|on|at|for)[^\S\n]+")
_QUOTED_RE = re.compile(r'"([^"\n]{1,120}?)"|“([^”\n]{1,120}?)”|《([^》\n]{1,60}?)》')
_PARENTHETICAL_RE = re.compile(r"\s*\([^()]*\)\s*$")
_SPACE_RE = re.compile(r"\s+")
_POSSESSIVE_RE = re.compile(r"['’]s$")
_LEADING_PUNCT_RE = re.compile(r"^[\W_]+")
_TRAILING_PUNCT_RE = re.compile(r"[\W_]+$")
_WORD_RE = re.compile(r"\S+")
_LABEL_TRIM = " \t\n,;:.!?()[]\"'“”‘’«»-–—，。、；：（）"

# Capitalized words that name nothing: function words that start sentences, pronouns, calendar words.
STOP_ENTITIES = frozenset(
    """a an the this that these those there here it its it's he she him his her hers they them their we us our
    you your i me my mine who whom whose what which when where why how whether if then than so but or nor and
    yet also however although though while after before during since until unless because as at by for from
    in into of on onto to with within without about above below over under between among through throughout
    against despite upon via per is are was were be been being am do does did done has have had having can
    could shall should will would may might must not no yes all any both each either neither every few many
    most much more other another some such several one two three four five six seven eight nine ten first
    second third last next later earlier today according born following located including once
    january february march april may june july august september october november december jan feb mar apr
    jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday mr mrs ms dr
    st jr sr""".split()  # noqa: SIM905 - a word list reads better as text
)
# Common words that are capitalized only because they open a sentence ("Located in ...").
_SENTENCE_STARTERS = frozenset(
    """located based known set directed written produced released starring founded formed named called
    considered regarded led originally currently formerly together additionally furthermore moreover meanwhile
    nevertheless thus therefore hence instead often usually sometimes especially generally initially
    eventually finally subsequently previously recently unlike like along besides beyond near outside
    inside around across toward towards alongside""".split()  # noqa: SIM905
)
# A leading "The" belongs to the name ("The Beatles"); the key drops it.
_STOP_FIRST = STOP_ENTITIES - {"the"}
# A name after one of these is also recorded alone: "President Richard Nixon" is "Richard Nixon" too.
_HONORIFICS = frozenset(
    """president king queen emperor empress pope sir dame lord senator governor mayor professor bishop
    archbishop reverend chancellor""".split()  # noqa: SIM905
)
_CJK_TAGS = ("nr", "ns", "nt", "nz")



@dataclass(frozen=True)
class Mention:
    """One (entity, surface form) of a chunk; ``occurrences`` counts how often the chunk uses that form."""

    key: str
    surface: str
    is_title: bool
    occurrences: int


@dataclass(frozen=True)
class Relation:
    """One contribution to the edge ``a``–``b``: a shared sentence, or the title "mentions" link."""

    a: str
    b: str
    label: str


@dataclass(frozen=True)
class ChunkGraph:
    """What one chunk adds to the knowledge graph; ``title`` is the title's key ("" when untitled)."""

    chunk_id: str
    document_id: str
    tenant: str
    title: str
    mentions: tuple[Mention, ...]
    relations: tuple[Relation, ...]

    @property
    def entities(self) -> frozenset[str]:
        return frozenset(m.key for m in self.mentions)


@dataclass(frozen=True)
class Span:
    """A name found in a text: its key, its surface form and its character offsets."""

    key: str
    surface: str
    start: int
    end: int


@functools.lru_cache(maxsize=1 << 16)
def normalize(text: str) -> str:
    """The key of a name: NFKC, casefolded, single spaces, no end punctuation, possessive or leading "the"."""
    key = _SPACE_RE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    key = _strip_punctuation(key)
    key = _POSSESSIVE_RE.sub("", key)
    key = key.removeprefix("the ")
    return _strip_punctuation(key).strip()


def title_key(title: str) -> str:
    """The key of a document title: "Kiss and Tell (1945 film)" is the entity "kiss and tell"."""
    return normalize(_PARENTHETICAL_RE.sub("", title)) or normalize(title)


def is_entity_key(key: str) -> bool:
    return len(key) >= 2 and key not in STOP_ENTITIES


def find_spans(text: str, sentences: list[tuple[int, int]] | None = None) -> list[Span]:
    """The names ``text`` mentions, in text order (Latin patterns always, jieba proper nouns for Han text).

    ``sentences`` are ``sentence_spans(text)`` when the caller has them already.
    """
    if sentences is None:
        sentences = sentence_spans(text)
    sentence_starts = {start for start, _ in sentences}
    quoted = _quoted_spans(text)
    found = _capitalized_spans(text, sentence_starts)
    if HAN_RE.search(text):
        found.extend(_chinese_spans(text))
    # A name inside a quoted title is part of that title, not a mention of its own.
    spans = quoted + [s for s in found if not any(q.start <= s.start and s.end <= q.end for q in quoted)]
    spans.sort(key=lambda s: (s.start, -s.end))
    return spans


def extract(chunk: Chunk) -> ChunkGraph:
    """The entities ``chunk`` mentions and the entity–entity edges it contributes."""
    title = title_key(chunk.title) if chunk.title.strip() else ""
    if not is_entity_key(title):
        title = ""
    text = chunk.text
    sentences = sentence_spans(text)
    spans = find_spans(text, sentences)
    counts: Counter[tuple[str, str, bool]] = Counter((s.key, s.surface, False) for s in spans)
    if title:
        counts[(title, chunk.title.strip(), True)] += 1
    mentions = tuple(Mention(key, surface, is_title, n) for (key, surface, is_title), n in counts.items())

    relations: list[Relation] = []
    for group in _by_sentence(spans, sentences):
        relations.extend(_cooccurrences(text, group))
    if title:
        others = dict.fromkeys(s.key for s in spans if s.key != title)
        relations.extend(Relation(title, key, MENTIONS_LABEL) for key in others)
    return ChunkGraph(chunk.id, chunk.document_id, chunk.tenant, title, mentions, tuple(relations))


def _strip_punctuation(key: str) -> str:
    """Drop punctuation at both ends, but keep the ")" that closes a parenthetical ("x (1945 film)")."""
    key = _LEADING_PUNCT_RE.sub("", key)
    stripped = _TRAILING_PUNCT_RE.sub("", key)
    if key.endswith(")") and "(" in stripped:
        return stripped + ")"
    return stripped


def _span(text: str, start: int, end: int) -> Span | None:
    surface = text[start:end].strip().rstrip(".,;:!?")
    key = normalize(surface)
    return Span(key, surface, start, end) if is_entity_key(key) else None


def _quoted_spans(text: str) -> list[Span]:
    """Titles in quotes or 《》: short, starting with a capital or a digit (long quotes are speech)."""
    found = []
    for match in _QUOTED_RE.finditer(text):
        group = next(i for i in (1, 2, 3) if match.group(i) is not None)
        inner = match.group(group)
        head = inner.lstrip()[:1]
        if group != 3 and not (head.isupper() or head.isdigit()):
            continue
        if len(inner.split()) > 10:
            continue
        span = _span(text, match.start(group), match.end(group))
        if span is not None:
            found.append(span)
    return found


def _capitalized_spans(text: str, sentence_starts: set[int]) -> list[Span]:
    found = []
    for match in _SPAN_RE.finditer(text):
        start = _skip_stop_words(text, match.start(), match.end())
        if start is None:
            continue
        for piece_start, end in _split_weak(start, text[start : match.end()]):
            piece_start = _skip_stop_words(text, piece_start, end)
            if piece_start is None:
                continue
            surface = text[piece_start:end]
            if piece_start in sentence_starts and surface.casefold() in _SENTENCE_STARTERS:
                continue
            span = _span(text, piece_start, end)
            if span is not None:
                found.append(span)
                found.extend(_without_honorific(text, span))
    return found


def _without_honorific(text: str, span: Span) -> list[Span]:
    head, _, rest = span.surface.partition(" ")
    if head.casefold() not in _HONORIFICS or not rest[:1].isupper():
        return []
    name = _span(text, span.start + len(head) + 1, span.end)
    return [name] if name is not None else []


def _split_weak(offset: int, span: str) -> list[tuple[int, int]]:
    """Offsets of the names in ``span``: "Kiss and Tell" stays whole, "Scott Derrickson and Ed Wood" splits.

    A weak connector (and, &, in, on, at, for) joins one name only between two single non-stop words
    ("Pride and Prejudice", "Death in Venice"); with longer sides it nearly always separates two names.
    """
    separators = list(_WEAK_CONNECTOR_RE.finditer(span))
    if not separators:
        return [(offset, offset + len(span))]
    if len(separators) == 1:
        left, right = span[: separators[0].start()], span[separators[0].end() :]
        if " " not in left and " " not in right and normalize(right) not in STOP_ENTITIES:
            return [(offset, offset + len(span))]
    pieces, position = [], 0
    for separator in separators:
        pieces.append((offset + position, offset + separator.start()))
        position = separator.end()
    pieces.append((offset + position, offset + len(span)))
    return pieces


def _skip_stop_words(text: str, start: int, end: int) -> int | None:
    """Move ``start`` past leading function words ("In Los Angeles"); None when nothing is left."""
    for word in _WORD_RE.finditer(text, start, end):
        token = word.group()
        if token.casefold() in _STOP_FIRST or not token[0].isupper():
            continue
        return word.start()
    return None


def _chinese_spans(text: str) -> list[Span]:
    """Person, place, organisation and other proper nouns (jieba tags nr*, ns, nt, nz) with their offsets.

    HMM new-word guessing is off: it is ten times slower (about 10 ms for 500 characters) and glues
    function characters onto words; names outside jieba's dictionary are missed instead.
    """
    found = []
    position = 0
    for pair in _pos_tagger().cut(text, HMM=False):
        word, flag = pair.word, pair.flag
        start = text.find(word, position)
        if start < 0:
            continue
        position = start + len(word)
        if flag.startswith(_CJK_TAGS) and HAN_RE.search(word):
            span = _span(text, start, position)
            if span is not None:
                found.append(span)
    return found


def _pos_tagger() -> Any:
    """jieba's part-of-speech tagger over the shared, once-loaded segmenter (``rag.jieba_loader``)."""
    jieba_module()
    import jieba.posseg

    return jieba.posseg.dt


def _by_sentence(spans: list[Span], sentences: list[tuple[int, int]]) -> list[list[Span]]:
    """``spans`` grouped by the sentence their first character falls in (both lists are in text order)."""
    groups: list[list[Span]] = []
    index = 0
    for start, end in sentences:
        group = []
        while index < len(spans) and spans[index].start < end:
            if spans[index].start >= start:
                group.append(spans[index])
            index += 1
        if len(group) > 1:
            groups.append(group)
    return groups


def _cooccurrences(text: str, group: list[Span]) -> list[Relation]:
    """One relation per pair of distinct names in a sentence, labelled with the words between them."""
    first: dict[str, Span] = {}
    for span in group:
        first.setdefault(span.key, span)
    relations = []
    for left, right in itertools.combinations(first.values(), 2):
        if right.start < left.end:  # overlapping spans ("King George V" and "George V"): no phrase
            label = ""
        else:
            label = _label(text[left.end : right.start])
        relations.append(Relation(left.key, right.key, label))
    return relations


def _label(between: str) -> str:
    """The linking phrase: the words between two names, trimmed, cut to a few words."""
    between = between.strip(_LABEL_TRIM)
    if HAN_RE.search(between):
        return between[:MAX_LABEL_CHARS_CJK]
    words = between.split()
    if len(words) > MAX_LABEL_WORDS:
        return " ".join(words[:MAX_LABEL_WORDS]) + " …"
    return " ".join(words)
