"""Per-query fusion weight: how much to trust the dense list against BM25 for *this* question.

A fixed weight is wrong for some queries (and for whole languages: the packaged encoder is English-only),
so the weight is computed from cheap evidence available at query time — the query's script, its length,
digits and quoted phrases, the shape of each retriever's score list and how much the two lists agree —
through a logistic model whose few parameters were fitted on the DEV data by ``evals/fit_weighting.py``
and are stored in ``retrieval/params/fitted.json``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from rag.types import ScoredId

SHAPE_DEPTH = 10  # the top of each list that its shape and the lists' agreement are read from

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_WORD_CHAR = re.compile(r"\w", re.UNICODE)
_DIGIT = re.compile(r"\d")
_QUOTED = re.compile(r"[\"“”「」『』].+?[\"“”「」『』]")


@dataclass(frozen=True)
class QueryEvidence:
    """The features the weight is computed from; all cheap, all known before any model but the encoder."""

    cjk_share: float  # share of the query's word characters in CJK scripts (the encoder is English-only)
    log_terms: float  # log(1 + number of BM25 terms of the query)
    has_digits: float
    has_quotes: float
    bm25_gap: float  # (top - 10th) / top of the BM25 scores: a peaked list means an exact-term hit
    bm25_per_term: float  # top BM25 score per query term: how strongly the terms matched
    dense_top: float  # best cosine similarity
    dense_gap: float  # best - 10th cosine: a flat list means the encoder saw nothing special
    overlap: float  # share of the top-10 chunks the two lists have in common
    bm25_top_in_dense: float  # 1 / (1 + rank in the dense list of BM25's best chunk); 0 if absent
    dense_top_in_bm25: float  # the same for the dense list's best chunk in the BM25 list
    bm25_lead: float  # (top - 2nd) / top of the BM25 scores: one chunk stands out
    dense_lead: float  # best - 2nd cosine

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def query_evidence(
    question: str, n_terms: int, lexical: Sequence[ScoredId], dense: Sequence[ScoredId]
) -> QueryEvidence:
    word_chars = len(_WORD_CHAR.findall(question)) or 1
    lex = [hit.score for hit in lexical[:SHAPE_DEPTH]]
    den = [hit.score for hit in dense[:SHAPE_DEPTH]]
    lex_ids = {hit.chunk_id for hit in lexical[:SHAPE_DEPTH]}
    den_ids = {hit.chunk_id for hit in dense[:SHAPE_DEPTH]}
    return QueryEvidence(
        cjk_share=min(1.0, len(_CJK.findall(question)) / word_chars),
        log_terms=math.log1p(n_terms),
        has_digits=float(bool(_DIGIT.search(question))),
        has_quotes=float(bool(_QUOTED.search(question))),
        bm25_gap=(lex[0] - lex[-1]) / lex[0] if lex and lex[0] > 0 else 0.0,
        bm25_per_term=lex[0] / n_terms if lex and n_terms else 0.0,
        dense_top=den[0] if den else 0.0,
        dense_gap=den[0] - den[-1] if den else 0.0,
        overlap=len(lex_ids & den_ids) / SHAPE_DEPTH,
        bm25_top_in_dense=_reciprocal_rank(lexical[0].chunk_id, dense) if lexical else 0.0,
        dense_top_in_bm25=_reciprocal_rank(dense[0].chunk_id, lexical) if dense else 0.0,
        bm25_lead=(lex[0] - lex[1]) / lex[0] if len(lex) > 1 and lex[0] > 0 else 0.0,
        dense_lead=den[0] - den[1] if len(den) > 1 else 0.0,
    )


def _reciprocal_rank(chunk_id: str, ranking: Sequence[ScoredId]) -> float:
    for rank, hit in enumerate(ranking):
        if hit.chunk_id == chunk_id:
            return 1.0 / (1 + rank)
    return 0.0


@dataclass(frozen=True)
class WeightingParams:
    """w_dense = w_min + (w_max - w_min) * sigmoid(bias + sum_i coef_i * (x_i - mean_i) / scale_i)."""

    bias: float
    coefficients: Mapping[str, float]
    means: Mapping[str, float]
    scales: Mapping[str, float]
    w_min: float = 0.0
    w_max: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.w_min <= self.w_max <= 1.0:
            raise ValueError("weight bounds must satisfy 0 <= w_min <= w_max <= 1")
        fields = set(QueryEvidence.__dataclass_fields__)
        unknown = set(self.coefficients) - fields
        if unknown:
            raise ValueError(f"unknown evidence features {sorted(unknown)}")
        if any(self.scales.get(name, 1.0) <= 0 for name in self.coefficients):
            raise ValueError("feature scales must be positive")


@dataclass(frozen=True)
class FusionWeights:
    dense: float
    bm25: float
    reason: str
    evidence: QueryEvidence


class QueryWeigher:
    def __init__(self, params: WeightingParams) -> None:
        self._params = params

    def contributions(self, evidence: QueryEvidence) -> dict[str, float]:
        p = self._params
        values = asdict(evidence)
        return {
            name: coef * (values[name] - p.means.get(name, 0.0)) / p.scales.get(name, 1.0)
            for name, coef in p.coefficients.items()
        }

    def weigh(self, evidence: QueryEvidence) -> FusionWeights:
        p = self._params
        parts = self.contributions(evidence)
        logit = p.bias + sum(parts.values())
        w_dense = p.w_min + (p.w_max - p.w_min) / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))
        top = sorted(parts.items(), key=lambda kv: -abs(kv[1]))[:3]
        reason = ", ".join(
            f"{name}={getattr(evidence, name):.2f} {'→dense' if value > 0 else '→bm25'} ({value:+.2f})"
            for name, value in top
            if abs(value) >= 0.05
        )
        return FusionWeights(
            dense=w_dense,
            bm25=1.0 - w_dense,
            reason=reason or "no strong evidence: the fitted base weight",
            evidence=evidence,
        )
