"""Rank fusion of several retrievers' lists."""

from __future__ import annotations

from collections.abc import Sequence

from rag.types import ScoredId

RRF_K = 60


def _check_weights(rankings: Sequence[object], weights: Sequence[float] | None) -> Sequence[float]:
    weights = weights if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking (or score map) is required")
    if any(w < 0 for w in weights):
        raise ValueError("weights must not be negative")
    return weights


def _ordered(scores: dict[str, float]) -> list[ScoredId]:
    # sorted() is stable, so ties keep first-seen order
    return [ScoredId(chunk_id, score) for chunk_id, score in sorted(scores.items(), key=lambda kv: -kv[1])]


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[ScoredId]], weights: Sequence[float] | None = None, k: int = RRF_K
) -> list[ScoredId]:
    """Weighted RRF: score(d) = sum_i w_i / (k + rank_i(d)), ranks from 1; ties keep first-seen order."""
    weights = _check_weights(rankings, weights)
    if k <= 0:
        raise ValueError("k must be positive")
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + weight / (k + rank)
    return _ordered(scores)


def min_max(ranking: Sequence[ScoredId]) -> dict[str, float]:
    """Scores mapped to [0, 1] within the list (best → 1, worst → 0; a flat list → all 1)."""
    return _rescale({hit.chunk_id: hit.score for hit in ranking})


def _rescale(scores: dict[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    return {chunk_id: (score - low) / span if span > 0 else 1.0 for chunk_id, score in scores.items()}


def convex_combination(
    rankings: Sequence[Sequence[ScoredId]], weights: Sequence[float] | None = None
) -> list[ScoredId]:
    """score(d) = sum_i w_i * minmax_i(d), a chunk missing from a list scoring 0 there. With weights
    that sum to 1 the fused scores stay in [0, 1]."""
    weights = _check_weights(rankings, weights)
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for chunk_id, value in min_max(ranking).items():
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight * value
    return _ordered(scores)


def standardized_combination(
    score_maps: Sequence[dict[str, float]], weights: Sequence[float]
) -> list[ScoredId]:
    """For score maps that cover the same candidates (every retriever scored every candidate, as
    ``HybridRetriever.candidates`` ensures): score(d) = sum_i w_i * z_i(d), each retriever's scores
    standardized over the candidates, then mapped to [0, 1] (order unchanged) so that later stages can
    mix the fused score with a bounded one. Unlike min-max over truncated lists, a chunk that one
    retriever missed is scored by it rather than given its minimum, and one outlying score does not
    squash all the others."""
    weights = _check_weights(score_maps, weights)
    ids = list(dict.fromkeys(chunk_id for scores in score_maps for chunk_id in scores))
    combined = dict.fromkeys(ids, 0.0)
    for scores, weight in zip(score_maps, weights):
        if not scores:
            continue
        values = list(scores.values())
        mean = sum(values) / len(values)
        spread = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        low = min(values)
        for chunk_id in ids:
            z = (scores.get(chunk_id, low) - mean) / spread if spread > 0 else 0.0
            combined[chunk_id] += weight * z
    return _ordered(_rescale(combined))
