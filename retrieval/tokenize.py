"""BM25 analyzer: one function turns a chunk or a query into index terms.

The analyzer is chosen per script run, so mixed text works without a language flag:

* Han runs (Chinese, and kanji in Japanese) are segmented with jieba's search mode, which also emits the
  dictionary sub-words of long words, so a query word matches a longer document word that contains it.
  HMM new-word guessing is off: it glues function characters onto words ("经是"). BM25 recall@1 on
  CMRC 2018 dev (848 passages, 1,593 questions): search mode 0.987 without HMM, 0.982 with; lcut
  0.984 / 0.979; CJK stopwords add about 0.003.
* Kana and Hangul runs become overlapping character bigrams (the Lucene CJK approach): jieba has no
  dictionary for them and would emit single characters.
* Every other run is a word: lowercased, English stopwords removed, ASCII words Snowball-stemmed.
  Decimals ("3.5") stay whole; hyphenated words emit their parts, plus the compound of the analyzed parts
  when it holds a digit ("covid-19" -> covid, 19, covid-19) so identifiers match exactly and by parts.

Text is NFKC-normalized first, which folds the full-width Latin letters and digits common in Chinese text.
Terms never contain whitespace, so callers may store them space-joined.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from typing import Any

import Stemmer

from rag.jieba_loader import jieba_module

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_KANA_HANGUL = "\u3040-\u30fa\u30fc-\u30ff\u31f0-\u31ff\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
_WORD_CHAR = rf"[^\W{_HAN}{_KANA_HANGUL}]"
# A word atom may hold apostrophes ("don't", "alzheimer's") and dot-digit tails ("3.5", "v1.2").
_ATOM = rf"{_WORD_CHAR}+(?:'{_WORD_CHAR}+)*(?:\.\d{_WORD_CHAR}*)*"
_RUN_RE = re.compile(rf"([{_HAN}]+)|([{_KANA_HANGUL}]+)|({_ATOM}(?:-{_ATOM})*)")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})

ENGLISH_STOPWORDS = frozenset(
    """a about above after again against all am an and any are aren't as at be because been before being
    below between both but by can could couldn't did didn't do does doesn't doing don't down during each
    few for from further had hadn't has hasn't have haven't having he her here hers herself him himself his
    how i if in into is isn't it it's its itself just me more most my myself no nor not of off on once only
    or other our ours ourselves out over own same she should shouldn't so some such than that the their
    theirs them themselves then there these they this those through to too under until up very was wasn't
    we were weren't what when where which while who whom why will with won't would wouldn't you your yours
    yourself yourselves""".split()  # noqa: SIM905 - a word list reads better as text
)

# Function words and question words: they carry no topic, and questions are full of them.
CJK_STOPWORDS = frozenset(
    """的 了 着 过 是 在 和 与 及 或 也 都 而 就 之 其 这 那 这个 那个 这些 那些 有 为 以 于 把 被 对 从 到 等
    吗 呢 吧 啊 呀 么 什么 哪 哪些 哪个 哪里 谁 怎么 怎样 如何 多少 几 为什么 是否 一个 一种 我 你 他 她 它
    我们 你们 他们 她们 它们 并 但 但是 而且 因为 所以 如果 虽然 还 又 很 最 将 已 已经 由 向 给 让 之后 之前
    时 时候 中 上 下 个""".split()  # noqa: SIM905
)

_stemmers = threading.local()


def tokenize(text: str) -> list[str]:
    """Index terms of ``text`` in text order; queries and documents must go through this same function."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    terms: list[str] = []
    for han, kana_hangul, word in _RUN_RE.findall(text):
        if han:
            terms.extend(t for t in _segmenter().cut_for_search(han, HMM=False) if t not in CJK_STOPWORDS)
        elif kana_hangul:
            terms.extend(_bigrams(kana_hangul))
        elif "-" in word:
            parts = [part for part in map(_analyze_word, word.split("-")) if part]
            terms.extend(parts)
            if len(parts) > 1 and any(c.isdigit() for c in word):
                terms.append("-".join(parts))
        elif term := _analyze_word(word):
            terms.append(term)
    return terms


@functools.lru_cache(maxsize=1 << 17)
def _analyze_word(word: str) -> str:
    """The word's term, or "" for a stopword. Cached: a corpus repeats a small vocabulary many times."""
    if "'" in word:
        if word in ENGLISH_STOPWORDS:
            return ""
        word = word.removesuffix("'s").replace("'", "")
    word = word.strip("_")
    if word in ENGLISH_STOPWORDS:
        return ""
    return _stemmer().stemWord(word) if word.isascii() and word.isalpha() else word


def _bigrams(run: str) -> list[str]:
    return [run[i : i + 2] for i in range(len(run) - 1)] or [run]


def _stemmer() -> Stemmer.Stemmer:
    """One stemmer per thread: a PyStemmer object is not safe to share between threads."""
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        stemmer = _stemmers.english = Stemmer.Stemmer("english")
    return stemmer


def _segmenter() -> Any:
    """jieba's tokenizer (``rag.jieba_loader``: loaded once, on the first Chinese text)."""
    return jieba_module().dt
