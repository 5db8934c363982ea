"""Does a new question ask the *same* thing as a cached one? The check after embedding similarity.

Embedding similarity scores a question and its negation, or the same words in another order, as near
duplicates. A cached answer is reused only when, beyond the similarity threshold, the two questions
agree on what changes an answer: their numbers, their negations, their names (and the order of the
names), and the order of the words they share. Any disagreement is a miss: a miss costs a generation,
a wrong hit costs the user's trust.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

_TOKEN = re.compile(r"[A-Za-z]+(?:'[a-z]+)?|\d+(?:[.,:/]\d+)*|[\u3400-\u9fff]", re.UNICODE)
_NEGATIONS = frozenset(
    "not no never none nobody nothing neither nor without cannot isn't aren't wasn't weren't don't "  # noqa: SIM905
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
_FUNCTION_WORDS = frozenset(
    "a an the is are was were be been being am do does did to of in on at by for with from as and or but if "  # noqa: SIM905
    "then so than that this these those it its it's i me my we our you your he him his she her they them "
    "their what which who whom whose when where why how can could should would will shall may might must "
    "has have had there here about into over under up down out off any some all more most very just also "
    "s get got".split()
)


@dataclass(frozen=True)
class QuestionSignature:
    words: tuple[str, ...]  # lower-cased content words in order
    numbers: tuple[str, ...]  # digits, and number words as digits ("two" → "2")
    negations: int
    names: tuple[str, ...]  # capitalized words (the first word only if capitalized inside), in order


def normalized_text(question: str) -> str:
    """The question as both the guard and the verifier read it: NFKC, curly apostrophes made straight."""
    return unicodedata.normalize("NFKC", question).replace("’", "'")


def question_tokens(question: str) -> list[str]:
    """The question's tokens (words, numbers, single Han characters), case kept."""
    return _TOKEN.findall(normalized_text(question))


@functools.lru_cache(maxsize=4096)
def signature(question: str) -> QuestionSignature:
    text = normalized_text(question)
    tokens = _TOKEN.findall(text)
    words, numbers, names = [], [], []
    negations = 0
    starts = _sentence_starts(text)
    for position, token in enumerate(tokens):
        lower = token.lower()
        if lower == "no" and position == 0 and re.match(r"\s*no\s*,", text, re.IGNORECASE):
            continue  # "No, X doesn't ..." answers a question: the negation that matters follows
        if lower in _NEGATIONS or lower.endswith("n't"):
            negations += 1
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
    return QuestionSignature(tuple(words), tuple(numbers), negations, tuple(names))


@dataclass(frozen=True)
class Verdict:
    same: bool
    reason: str


def same_question(
    new: str, cached: str, min_order_agreement: float = 1.0, reorder_overlap: float = 0.8
) -> Verdict:
    """The guard: every check must pass for a hit.

    - the same numbers in the same order, and negated alike (an odd or even number of negations);
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
    the same order, negated alike, and the names both mention in the same order. A name only one side
    mentions, and shared words in another order, are left to the verifier (``rag.cache_verifier``), which
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


def _sentence_starts(text: str) -> set[int]:
    """Token positions that begin a sentence (after . : ; ! ? or at the start)."""
    starts, position, boundary = set(), 0, True
    for match in re.finditer(_TOKEN.pattern + r"|[.:;!?]", text):
        if match.group()[0] in ".:;!?":
            boundary = True
            continue
        if boundary:
            starts.add(position)
        boundary = False
        position += 1
    return starts


def _numbers_or_negation_differ(a: QuestionSignature, b: QuestionSignature) -> Verdict | None:
    """The miss for other numbers, the same numbers in another order, or one side negated; else None."""
    if sorted(a.numbers) != sorted(b.numbers):
        return Verdict(False, f"numbers differ: {a.numbers} vs {b.numbers}")
    if a.numbers != b.numbers:
        return Verdict(False, "the same numbers in another order")
    if a.negations % 2 != b.negations % 2:
        return Verdict(False, "one is negated, the other is not")
    return None


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
