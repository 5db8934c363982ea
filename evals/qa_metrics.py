"""Answer metrics: exact match and F1 against a question's gold answers, and a paired bootstrap.

English follows the SQuAD v1.1 evaluation: lowercase, drop punctuation and the articles a/an/the, then
token-level F1. Chinese follows the CMRC 2018 evaluation: Chinese characters (and punctuation) are
single segments and runs of other characters are split into words; F1 comes from the longest common
contiguous run of segments, EM compares the strings with punctuation removed. The CMRC script splits the
non-Chinese runs with NLTK's word tokenizer; a regex split stands in for it here (it differs only inside
runs of Latin text, such as contractions). Both take the best score over the gold answers.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_EN_PUNCTUATION = set(string.punctuation)
# The CMRC 2018 script's own list of Chinese and special punctuation, beside ASCII punctuation.
_ZH_PUNCTUATION = set("-:_*^/\\~`+=，。：？！“”；’《》……·、「」（）－～『』") | _EN_PUNCTUATION
_HAN = re.compile(r"[\u4e00-\u9fa5]")
_LATIN_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def normalize_en(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _EN_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1_from_overlap(overlap: int, predicted: int, gold: int) -> float:
    if overlap == 0 or predicted == 0 or gold == 0:
        return 0.0
    precision, recall = overlap / predicted, overlap / gold
    return 2 * precision * recall / (precision + recall)


def f1_en(prediction: str, gold: str) -> float:
    predicted, expected = normalize_en(prediction).split(), normalize_en(gold).split()
    if not predicted and not expected:
        return 1.0
    overlap = sum((Counter(predicted) & Counter(expected)).values())
    return _f1_from_overlap(overlap, len(predicted), len(expected))


def segment_zh(text: str) -> list[str]:
    """CMRC 2018's mixed segmentation, punctuation removed: each Chinese character is a segment, and
    runs of anything else are split into words."""
    segments: list[str] = []
    run = ""
    for ch in text.lower().strip():
        if ch in _ZH_PUNCTUATION:
            ch = " "  # removed, but it still ends a run of Latin text
        if _HAN.match(ch):
            segments.extend(_LATIN_WORD.findall(run))
            run = ""
            segments.append(ch)
        else:
            run += ch
    segments.extend(_LATIN_WORD.findall(run))
    return segments


def longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest contiguous run of segments that ``a`` and ``b`` share."""
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def f1_zh(prediction: str, gold: str) -> float:
    predicted, expected = segment_zh(prediction), segment_zh(gold)
    return _f1_from_overlap(longest_common_run(predicted, expected), len(predicted), len(expected))


def _strip_zh(text: str) -> str:
    return "".join(ch for ch in text.lower().strip() if ch not in _ZH_PUNCTUATION and not ch.isspace())


def exact_match(prediction: str, golds: Sequence[str], lang: str) -> float:
    if lang == "zh":
        return float(any(_strip_zh(prediction) == _strip_zh(g) for g in golds))
    return float(any(normalize_en(prediction) == normalize_en(g) for g in golds))


def f1(prediction: str, golds: Sequence[str], lang: str) -> float:
    score = f1_zh if lang == "zh" else f1_en
    return max((score(prediction, g) for g in golds), default=0.0)


def paired_bootstrap_ci(
    values: Sequence[float], baseline: Sequence[float], resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of mean(values − baseline), resampling questions with replacement."""
    if len(values) != len(baseline):
        raise ValueError("paired samples must have the same length")
    if not values:
        raise ValueError("no samples")
    diffs = np.asarray(values, dtype=float) - np.asarray(baseline, dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(diffs), size=(resamples, len(diffs)))
    means = diffs[picks].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_ci(values: Sequence[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of ``values``, resampling them with replacement."""
    if not values:
        raise ValueError("no samples")
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)
