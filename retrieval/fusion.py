"""Rank fusion of several retrievers' lists."""

from __future__ import annotations

from typing import Sequence

from rag.types import ScoredId

RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[ScoredId]], weights: Sequence[float] | None = None, k: int = RRF_K
) -> list[ScoredId]:
    """Weighted RRF: score(d) = sum_i w_i / (k + rank_i(d)), ranks from 1; ties keep first-seen order."""
    weights = weights if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking is required")
    if k <= 0:
        raise ValueError("k must be positive")
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + weight / (k + rank)
    return [ScoredId(chunk_id, score) for chunk_id, score in sorted(scores.items(), key=lambda kv: -kv[1])]
