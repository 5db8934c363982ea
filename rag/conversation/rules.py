"""Whether a question needs the conversation to be understood: cheap rules, no model.

A question that names what it asks about and points back at nothing ("When did Frank Zappa form the
Mothers of Invention?") is searched as asked. One that points back ("When did *they* disband?"), trails
off from the last turn ("And in 1990?", "Why?") or names nothing at all ("What happened in 1983?")
needs the conversation, and goes to the rewriter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Words that point back at something said earlier.
REFERRING = frozenset(
    {
        "he", "she", "it", "they", "him", "her", "them", "his", "hers", "its", "their", "theirs",
        "himself", "herself", "itself", "themselves", "this", "that", "these", "those", "there",
        "former", "latter", "same",
    }
)
# Openings that carry on from the previous turn rather than ask on their own ("What about Spain?").
CONTINUING = (
    "and ", "but ", "also ", "what about", "how about", "what else", "anything else", "any other",
    "what other", "which other", "who else", "where else", "other than", "besides",
)
CHINESE_REFERRING = ("他", "她", "它", "其", "这", "那", "该", "此")
_WORD = re.compile(r"[A-Za-z][\w'’.-]*")
_HAN = re.compile(r"[\u4e00-\u9fff]")


def names_something(question: str) -> bool:
    """A name: a capitalized word past the first, or an acronym. A year or a number alone is not what a
    question asks about ("What happened in 1983?")."""
    words = _WORD.findall(question)
    return any(word[0].isupper() and (i > 0 or word.isupper()) and word != "I" for i, word in enumerate(words))


def resolution_needed(question: str, has_history: bool) -> str | None:
    """Why the question needs the conversation (a short reason), or None to search it as asked."""
    if not has_history:
        return None
    text = question.strip()
    if _HAN.search(text):
        hit = next((word for word in CHINESE_REFERRING if word in text), None)
        return f"refers back ({hit})" if hit else None
    words = {w.lower().strip(".'’").removesuffix("'s").removesuffix("’s") for w in _WORD.findall(text)}
    referring = sorted(words & REFERRING)
    if referring:
        return f"refers back ({', '.join(referring)})"
    if text.lower().startswith(CONTINUING):
        return "carries on from the previous turn"
    if not names_something(text):
        return "names nothing it asks about"
    return None


_SUBJECT_PRONOUNS = frozenset({"he", "she", "they", "him", "them"})
_POSSESSIVES = frozenset({"his", "their", "its"})
# After "her" these words mean it is the object ("met her in 1990"), not the possessive ("her album").
_AFTER_OBJECT = frozenset({"to", "in", "on", "at", "for", "with", "from", "and", "about", "as", "after", "before"})
_NAME_RUN = re.compile(r"\b(?:[A-Z][\w'’.-]*)(?:\s+(?:of|the|de|van|von|and|&)?\s*[A-Z][\w'’.-]*)*")
_PARENTHETICAL = re.compile(r"\s*\([^)]*\)")


def substitute(question: str, subject: str) -> str:
    """The question with its first personal pronoun replaced by ``subject`` (its possessive by
    "subject's"); a question with none gets the subject added at its end."""
    words = question.split(" ")
    for i, word in enumerate(words):
        core = re.sub(r"[^\w]", "", word).lower()
        following = re.sub(r"[^\w]", "", words[i + 1]).lower() if i + 1 < len(words) else ""
        if core in _SUBJECT_PRONOUNS or (core == "her" and (not following or following in _AFTER_OBJECT)):
            replacement = subject
        elif core in _POSSESSIVES or core == "her":
            replacement = f"{subject}'s"
        else:
            continue
        start = word.lower().index(core)
        words[i] = word[:start] + replacement + word[start + len(core) :]
        return " ".join(words)
    stripped = question.rstrip().rstrip("?").rstrip()
    return f"{stripped} ({subject})?"


def conversation_subject(turns: Sequence[tuple[str, str]], topic: str | None) -> str | None:
    """Who or what the conversation is about: the topic's name when one is given ("Joe Perry (musician):
    Early life" → "Joe Perry"), else the name its turns mention most, a mention in a question counting
    twice (people name what they ask about; answers name much else), the latest on a tie."""
    if topic:
        return _PARENTHETICAL.sub("", topic.split(":")[0]).strip() or None
    counts: dict[str, tuple[int, int]] = {}
    texts = [(text, weight) for question, answer in turns for text, weight in ((question, 2), (answer, 1))]
    for order, (text, weight) in enumerate(texts):
        for match in _NAME_RUN.finditer(text):
            name = match.group().strip().rstrip(".'’-")
            first_word = match.start() == 0 or text[: match.start()].rstrip()[-1:] in ".?!"
            if first_word and " " not in name:
                continue  # a capitalized first word is usually just the sentence's start
            seen, _ = counts.get(name, (0, 0))
            counts[name] = (seen + weight, order)
    return max(counts, key=lambda name: counts[name]) if counts else None
