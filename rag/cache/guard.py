"""Does a new question ask the *same* thing as a cached one? The check after embedding similarity.

Embedding similarity scores a question and its negation, or the same words in another order, as near
duplicates. A cached answer is reused only when, beyond the similarity threshold, the two questions
agree on what changes an answer: their numbers, their negations (one side must not negate what the
other says plainly), their names (and the order of the names), and the order of the words they share. Any disagreement is a miss: a miss costs a generation,
a wrong hit costs the user's trust.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from dataclasses import dataclass

import Stemmer

_TOKEN = re.compile(r"[A-Za-z]+(?:'[a-z]+)?|\d+(?:[.,:/]\d+)*|[\u3400-\u9fff]", re.UNICODE)
_NEGATIONS = frozenset(
    "not no non never none nobody nothing neither nor without cannot isn't aren't wasn't weren't don't "  # noqa: SIM905
    "doesn't didn't won't wouldn't can't couldn't shouldn't hasn't haven't hadn't mustn't 不 没 没有 别 无 非".split()
)
# Number words as digits. "one" is left out: it is more often a pronoun ("one can") than a number.
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "  # noqa: SIM905
        "seventeen eighteen nineteen twenty".split()
    )
    if word != "one"
} | {
    word: word
    for word in "hundred thousand million billion trillion first second third last half twice".split()  # noqa: SIM905
}
_NUMBER_WORDS |= {plural: plural[:-1] for plural in ("hundreds", "thousands", "millions", "billions")}
# Words between a negation and what it negates ("no longer available", "not even close").
_NEGATION_FILLERS = frozenset(
    "longer even really yet ever always necessarily quite exactly actually still".split()  # noqa: SIM905
)
# Words that say "not" in their meaning, with which the plain side of a pair may rephrase a negation.
_PRIVATIVES = frozenset(
    "absence absent lack lacks lacking lacked missing avoid avoids avoiding avoided prevent prevents "  # noqa: SIM905
    "preventing prevented optional unable unclear uncertain unknown unavailable unnecessary unsupported "
    "unlike different differs differ instead except excluding exclude excludes fail fails failed "
    "failing refuse refuses refused deny denies denied".split()
)
# Words that end the phrase a negation governs.
_PHRASE_ENDS = frozenset(
    "and or but if when because so that which while as than to from in on at for of with by about into "  # noqa: SIM905
    "since unless until whether where who".split()
)
_stemmers = threading.local()
_FUNCTION_WORDS = frozenset(
    "a an the is are was were be been being am do does did to of in on at by for with from as and or but if "  # noqa: SIM905
    "then so than that this these those it its it's i me my we our you your he him his she her they them "
    "their what which who whom whose when where why how can could should would will shall may might must "
    "has have had there here about into over under up down out off any some all more most very just also "
    "s get got".split()
)

_NOT_NEGATED = _FUNCTION_WORDS | _NEGATION_FILLERS  # skipped, with negations, when looking for what is negated


@dataclass(frozen=True)
class QuestionSignature:
    words: tuple[str, ...]  # lower-cased content words in order
    numbers: tuple[str, ...]  # digits, and number words as digits ("two" → "2")
    # What each negation negates: the stems of up to two content words after it in its phrase (none, as
    # in "... or not?", when the sentence ends), in order.
    negated: tuple[tuple[str, ...], ...]
    names: tuple[str, ...]  # capitalized words (the first word only if capitalized inside), in order

    @property
    def negations(self) -> int:
        return len(self.negated)


def normalized_text(question: str) -> str:
    """The question as both the guard and the verifier read it: NFKC, curly apostrophes made straight."""
    return unicodedata.normalize("NFKC", question).replace("’", "'")


def stem_words(words: list[str]) -> list[str]:
    """English Snowball stems (one stemmer per thread: PyStemmer's is not thread-safe)."""
    stemmer = getattr(_stemmers, "stemmer", None)
    if stemmer is None:
        stemmer = _stemmers.stemmer = Stemmer.Stemmer("english")
    return stemmer.stemWords(words)


def question_tokens(question: str) -> list[str]:
    """The question's tokens (words, numbers, single Han characters), case kept."""
    return _TOKEN.findall(normalized_text(question))


@functools.lru_cache(maxsize=4096)
def signature(question: str) -> QuestionSignature:
    text = normalized_text(question)
    markers = _list_markers(text)
    matches = [m for m in _TOKEN.finditer(text) if m.start() not in markers]
    tokens = [m.group() for m in matches]
    starts, clauses = _starts(text, {m.start() for m in matches})
    words, numbers, names, negated = [], [], [], []
    for position, token in enumerate(tokens):
        lower = token.lower()
        if _is_negation(tokens, position, text):
            negated.append(_negated_words(tokens, position, clauses))
            continue
        if token[0].isdigit():
            numbers.append(token.replace(",", ""))
            continue
        if lower in _NUMBER_WORDS:
            numbers.append(_NUMBER_WORDS[lower])
            continue
        # A capitalized first word is just the sentence's start unless it is capitalized inside too.
        is_name = token[0].isupper() and (position not in starts or any(c.isupper() for c in token[1:]))
        if is_name and lower not in _FUNCTION_WORDS:
            names.append(lower)
        if lower not in _FUNCTION_WORDS:
            words.append(lower)
    return QuestionSignature(tuple(words), tuple(numbers), tuple(negated), tuple(names))


def _is_negation(tokens: list[str], position: int, text: str) -> bool:
    """A negation word, unless it is part of a phrase that negates nothing: "No, ..." opening an answer
    (the negation that matters follows), "not only", "or not", "don't forget", "no matter"."""
    lower = tokens[position].lower()
    if not _negation_word(lower):
        return False
    if lower == "no" and position == 0 and re.match(r"\s*no\s*,", text, re.IGNORECASE):
        return False
    before = tokens[position - 1].lower() if position else ""
    after = tokens[position + 1].lower() if position + 1 < len(tokens) else ""
    return not (
        (lower == "not" and (after == "only" or before == "or"))
        or (after == "forget" and lower in {"don't", "not", "never"})
        or (lower == "no" and after == "matter")
    )


def _negation_word(lower: str) -> bool:
    return lower in _NEGATIONS or lower.endswith("n't")


def _negated_words(tokens: list[str], position: int, clauses: set[int]) -> tuple[str, ...]:
    """The stems of the first two content words after a negation, up to the end of its phrase: what it
    negates ("not considered a citrus fruit": the verb alone would miss the fruit; "not mandatory if the
    dataset ...": the dataset is not negated)."""
    negated: list[str] = []
    for later in range(position + 1, len(tokens)):
        lower = tokens[later].lower()
        if later in clauses or len(negated) == 2 or (negated and lower in _PHRASE_ENDS):
            break
        if lower not in _NOT_NEGATED and not _negation_word(lower):
            negated.append(_NUMBER_WORDS.get(lower, lower))
    return tuple(stem_words(negated))


def _list_markers(text: str) -> set[int]:
    """Where a list's item numbers start ("1. ..." opening a line, "1) ..." outside brackets): they
    number the items, they are not numbers a question asks about."""
    markers = {m.start(1) for m in re.finditer(r"(?m)^\s*(\d{1,2})[.)]\s", text)}
    for m in re.finditer(r"(?:^|(?<=[\s:;,]))(\d{1,2})\)\s", text):
        if text.count("(", 0, m.start()) <= text.count(")", 0, m.start()):
            markers.add(m.start(1))
    return markers


@dataclass(frozen=True)
class Verdict:
    same: bool
    reason: str


def same_question(
    new: str, cached: str, min_order_agreement: float = 1.0, reorder_overlap: float = 0.8
) -> Verdict:
    """The guard: every check must pass for a hit.

    - the same numbers in the same order, and negated alike: when one side is negated (an odd number of
      negations) and the other is not, a negation only one side has must not negate a word the other
      side uses (``_negation_contradicts``);
    - the same names; when both mention two or more, in the same order ("A beat B" is not "B beat A");
    - when the two share nearly all their words (``reorder_overlap`` of the smaller set), those words in
      the same order: a swap of the same words is the classic near-duplicate that means something else.
      Pairs of shared words out of order must not exceed ``1 - min_order_agreement``.
    """
    a, b = signature(new), signature(cached)
    differs = _numbers_or_negation_differ(a, b)
    if differs:
        return differs
    # Names are found by their capitals, which a user typing in lower case leaves out: each side's names
    # must occur among the other side's words, in the same order.
    missing = sorted((set(a.names) - set(b.words)) | (set(b.names) - set(a.words)))
    if missing:
        return Verdict(False, f"names differ: {missing}")
    names = set(a.names) | set(b.names)
    if _names_reordered(a, b, names):
        return Verdict(False, "the same names in another order")
    shared = set(a.words) & set(b.words)
    if shared and len(shared) >= reorder_overlap * min(len(set(a.words)), len(set(b.words))):
        agreement = order_agreement(a.words, b.words)
        if agreement < min_order_agreement:
            return Verdict(False, f"the same words in another order ({agreement:.2f})")
    return Verdict(True, "same numbers, negation, names and order")


def hard_guard(new: str, cached: str) -> Verdict:
    """The rules no score may overrule, applied before the cache's learned verifier: the same numbers in
    the same order, negated alike (as ``same_question`` checks it), and the names both mention in the
    same order. A name only one side
    mentions, and shared words in another order, are left to the verifier (``rag.cache.verifier``), which
    sees ``same_question``'s verdict among its features: on paraphrases written as whole sentences those
    two rules refused a quarter of the true duplicates."""
    a, b = signature(new), signature(cached)
    differs = _numbers_or_negation_differ(a, b)
    if differs:
        return differs
    names = (set(a.names) | set(b.names)) & set(a.words) & set(b.words)
    if _names_reordered(a, b, names):
        return Verdict(False, "the same names in another order")
    return Verdict(True, "same numbers, negation and name order")


def _starts(text: str, kept: set[int]) -> tuple[set[int], set[int]]:
    """Positions, among the tokens starting at the offsets ``kept``, that begin a sentence (after
    . : ; ! ? or at the start), and those that begin a clause (a sentence, or after a comma or bracket)."""
    sentences, clauses, position, boundary, clause = set(), set(), 0, True, True
    for match in re.finditer(_TOKEN.pattern + r"|[.:;!?,()]", text):
        mark = match.group()[0]
        if mark in ".:;!?":
            boundary = True
            continue
        if mark in ",()":
            clause = True
            continue
        if match.start() not in kept:
            continue
        if boundary:
            sentences.add(position)
        if boundary or clause:
            clauses.add(position)
        boundary = clause = False
        position += 1
    return sentences, clauses


def _numbers_or_negation_differ(a: QuestionSignature, b: QuestionSignature) -> Verdict | None:
    """The miss for other numbers, the same numbers in another order, or one side negated; else None."""
    if sorted(a.numbers) != sorted(b.numbers):
        return Verdict(False, f"numbers differ: {a.numbers} vs {b.numbers}")
    if a.numbers != b.numbers:
        return Verdict(False, "the same numbers in another order")
    if a.negations % 2 != b.negations % 2 and _negation_contradicts(a, b):
        return Verdict(False, "one is negated, the other is not")
    return None


def _negation_contradicts(a: QuestionSignature, b: QuestionSignature) -> bool:
    """With one side negated and the other not, the negation is a rephrasing only when the plain side
    says it with a word of negative meaning ("not mandatory" / "optional", "doesn't exist" / "is
    missing") and no negation only one side has negates a word the other side uses ("Is X mandatory?"
    / "Is X not mandatory?") or nothing it can find ("... Not yet."). Anything else contradicts."""
    plain = a if a.negations % 2 == 0 else b
    if not _PRIVATIVES.intersection(plain.words):
        return True
    for mine, theirs in ((a, b), (b, a)):
        their_stems = set(stem_words(list(theirs.words)))
        for scope in set(mine.negated) - set(theirs.negated):
            if not scope or their_stems.intersection(scope):
                return True
    return False


def _names_reordered(a: QuestionSignature, b: QuestionSignature, names: set[str]) -> bool:
    return order_agreement(tuple(w for w in a.words if w in names), tuple(w for w in b.words if w in names)) < 1.0


def order_agreement(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    """Share of pairs of words found once in each that keep their relative order (1 with < 2 shared)."""
    position_b: dict[str, int] = {}
    for i, w in enumerate(b):
        position_b[w] = -1 if w in position_b else i
    seen: dict[str, int] = {}
    for w in a:
        seen[w] = seen.get(w, 0) + 1
    shared = [position_b[w] for w in a if seen[w] == 1 and position_b.get(w, -1) >= 0]
    pairs = len(shared) * (len(shared) - 1) // 2
    if pairs == 0:
        return 1.0
    concordant = sum(
        1 for i in range(len(shared)) for j in range(i + 1, len(shared)) if shared[i] < shared[j]
    )
    return concordant / pairs
