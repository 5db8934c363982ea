"""Hybrid retrieval: BM25 and dense lists → per-query weighted fusion → adaptive cross-encoder rerank →
sentence-level token-budget trim.

Each stage is a public method so that the eval harness drives this very code, one stage at a time,
when it compares methods (``bm25``, ``dense``, fixed fusions, ``hybrid``, ``hybrid_rerank``, …).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np

from indexing.embedding import Embedder
from indexing.indexer import indexed_text
from indexing.stores.base import DenseStore, LexicalStore
from rag.sentences import sentence_spans
from rag.tokens import count_tokens, token_prefix
from rag.types import Chunk, Passage, Retrieval, ScoredId
from retrieval.budget import TrimParams, trim_to_budget
from retrieval.fusion import standardized_combination
from retrieval.linking import LinkParams, linked_passages
from retrieval.question_form import is_question
from retrieval.rerank import Reranked, Reranker, RerankParams, adaptive_rerank
from retrieval.tokenize import tokenize
from retrieval.weighting import FusionWeights, QueryWeigher, query_evidence

# Chunks read from each retriever. The fusion's min-max normalization depends on it, so the eval and
# the service use the same depth.
CANDIDATE_DEPTH = 50
# The reference every answer's saving is counted against: the strong tier over this many whole chunks of
# the same ranking (what an untuned stack sends).
REFERENCE_TOP_K = 10


class GraphExpander(Protocol):
    """Query-time graph expansion (``kg.expand.GraphExpander``)."""

    def question_entities(self, tenant: str, question: str) -> list[str]: ...

    def titles_among(self, tenant: str, entities: Sequence[str]) -> list[str]: ...

    def expand(
        self, tenant: str, question: str, seed_chunk_ids: Sequence[str] = (), hops: int = 2, limit: int = 50
    ) -> list[ScoredId]: ...


@dataclass(frozen=True)
class GraphParams:
    """The graph's list joins the fusion when the query is a question naming at least ``min_entities``
    graph entities, or names a document's title; the expansion starts from them and the ``seeds`` best
    fused chunks. Its weight is ``weight`` for a question in Latin script and ``cjk_weight`` for one
    in Han characters (interpolated by the question's CJK share, as the reranker's weight is): jieba's
    proper nouns, without new-word guessing, link fewer and vaguer entities than the Latin rules, and
    on CMRC 2018 a weight of 0.8 cost nDCG@10 (0.9918 at 0.3 → 0.9845) where on MuSiQue and HotpotQA it
    is the second hop's main way in (``weight`` chosen by a two-fold split of MuSiQue's DEV questions)."""

    weight: float = 0.3
    min_entities: int = 1
    seeds: int = 3
    depth: int = 30
    cjk_weight: float = 0.3

    def __post_init__(self) -> None:
        if not (0.0 <= self.weight <= 1.0 and 0.0 <= self.cjk_weight <= 1.0):
            raise ValueError("graph weights must be within [0, 1]")

    def weight_for(self, cjk_share: float) -> float:
        """The graph list's share of the fusion for a question with this share of CJK characters."""
        share = min(1.0, max(0.0, cjk_share))
        return self.weight * (1.0 - share) + self.cjk_weight * share


class ChunkSource(Protocol):
    def chunks(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]: ...


@dataclass(frozen=True)
class Candidates:
    """Each retriever's list, and both retrievers' scores for every chunk either list holds."""

    question: str
    terms: list[str]
    lexical: list[ScoredId]
    dense: list[ScoredId]
    lexical_scores: dict[str, float]
    dense_scores: dict[str, float]
    stage_ms: dict[str, float] = field(default_factory=dict)
    tenant: str = ""
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class Ranked:
    """One question's ranking before the trim: what ``retrieve`` trims, and what an eval trims several
    ways (``evals/fit_trim.py``) without repeating the stages."""

    candidates: Candidates
    weights: FusionWeights
    graph_debug: dict[str, object]
    chunks: dict[str, Chunk]
    reranked: Reranked
    stage_ms: dict[str, float]


class HybridRetriever:
    def __init__(
        self,
        embedder: Embedder,
        dense: DenseStore,
        lexical: LexicalStore,
        chunk_source: ChunkSource,
        weigher: QueryWeigher,
        reranker: Reranker | None,
        rerank_params: RerankParams,
        trim_params: TrimParams,
        mode: Literal["hybrid", "dense"] = "hybrid",
        trim: bool = True,
        expander: GraphExpander | None = None,
        graph_params: GraphParams = GraphParams(),
        link_params: LinkParams | None = None,
    ) -> None:
        """``mode="dense"`` with no reranker and ``trim=False`` is the naive baseline (dense top-k, whole
        chunks) that the eval harness compares against, run by this same class."""
        if mode == "dense" and reranker is not None:
            raise ValueError("the dense-only mode is the unreranked baseline: pass reranker=None")
        self.mode = mode
        self.trim_enabled = trim
        self._expander = expander
        self.graph_params = graph_params
        self._embedder = embedder
        self._dense = dense
        self._lexical = lexical
        self._chunks = chunk_source
        self._weigher = weigher
        self._reranker = reranker
        self.rerank_params = rerank_params
        self.trim_params = trim_params
        self.link_params = link_params or LinkParams()

    # -- stages -------------------------------------------------------------------------------------

    def candidates(
        self, tenant: str, question: str, depth: int = CANDIDATE_DEPTH, query_vector: np.ndarray | None = None
    ) -> Candidates:
        """``query_vector``: the question's embedding when the caller already has it (the pipeline
        embeds once for the answer cache and for this search)."""
        started = time.perf_counter()
        terms = tokenize(question)
        lexical_hits = self._lexical.search(tenant, question, depth)
        after_bm25 = time.perf_counter()
        vector = self._embedder.embed_query(question) if query_vector is None else query_vector
        dense_hits = self._dense.search(tenant, vector, depth)
        after_dense = time.perf_counter()
        lexical_scores = {hit.chunk_id: hit.score for hit in lexical_hits}
        dense_scores = {hit.chunk_id: hit.score for hit in dense_hits}
        # Complete both score maps over the union, so fusion never has to guess a missing score.
        lexical_scores.update(
            self._lexical.score(tenant, question, [c for c in dense_scores if c not in lexical_scores])
        )
        dense_scores.update(
            self._dense.score(tenant, vector, [c for c in lexical_scores if c not in dense_scores])
        )
        done = time.perf_counter()
        return Candidates(
            question,
            terms,
            lexical_hits,
            dense_hits,
            lexical_scores,
            dense_scores,
            {
                "bm25": (after_bm25 - started) * 1000,
                "dense": (after_dense - after_bm25) * 1000,
                "complete": (done - after_dense) * 1000,
            },
            tenant,
            vector,
        )

    def weigh(self, candidates: Candidates) -> FusionWeights:
        evidence = query_evidence(
            candidates.question, len(candidates.terms), candidates.lexical, candidates.dense
        )
        return self._weigher.weigh(evidence)

    @staticmethod
    def fuse(candidates: Candidates, weights: FusionWeights) -> list[ScoredId]:
        return standardized_combination(
            [candidates.lexical_scores, candidates.dense_scores], [weights.bm25, weights.dense]
        )

    def with_graph(
        self,
        candidates: Candidates,
        fused: Sequence[ScoredId],
        weights: FusionWeights,
        params: GraphParams | None = None,
    ) -> tuple[list[ScoredId], dict[str, object]]:
        """The fusion again with a third list, the chunks the knowledge graph reaches from the question's
        entities and the best fused chunks (the second hop of a multi-hop question); a question that
        names no graph entity keeps the fused list."""
        p = params or self.graph_params
        g = p.weight_for(weights.evidence.cjk_share)
        if self._expander is None or g == 0.0:
            return list(fused), {"weight": 0.0, "reason": "no graph"}
        tenant, question = candidates.tenant, candidates.question
        entities = self._expander.question_entities(tenant, question)
        named = is_question(question) and len(entities) >= p.min_entities
        if not named and not self._expander.titles_among(tenant, entities):
            return list(fused), {
                "weight": 0.0,
                "reason": "neither a question naming a graph entity nor a title",
            }
        seeds = [hit.chunk_id for hit in fused[: p.seeds]]
        reached = self._expander.expand(tenant, question, seeds, limit=p.depth)
        if not reached:
            return list(fused), {"weight": 0.0, "reason": "the graph reached no chunk"}
        lexical, dense = dict(candidates.lexical_scores), dict(candidates.dense_scores)
        new = [hit.chunk_id for hit in reached if hit.chunk_id not in lexical]
        if new:
            lexical.update(self._lexical.score(tenant, question, new))
            vector = (
                candidates.vector if candidates.vector is not None else self._embedder.embed_query(question)
            )
            dense.update(self._dense.score(tenant, vector, new))
        graph = dict.fromkeys(lexical, 0.0) | {hit.chunk_id: hit.score for hit in reached}
        ranking = standardized_combination(
            [lexical, dense, graph], [weights.bm25 * (1 - g), weights.dense * (1 - g), g]
        )
        return ranking, {
            "weight": round(g, 4),
            "entities": entities[:10],
            "reached": len(reached),
            "new": len(new),
        }

    def hydrate(self, ranking: Sequence[ScoredId], n: int) -> dict[str, Chunk]:
        return self._chunks.chunks([hit.chunk_id for hit in ranking[:n]])

    def rerank(
        self,
        candidates: Candidates,
        fused: Sequence[ScoredId],
        chunks: dict[str, Chunk],
        weights: FusionWeights,
        params: RerankParams | None = None,
    ) -> Reranked:
        """Buy cross-encoder scores for the best fused candidates, only as many as can change the top."""
        p = params or self.rerank_params
        fused = [hit for hit in fused if hit.chunk_id in chunks]
        weight = p.weight_for(weights.evidence.cjk_share)
        if self._reranker is None or weight == 0.0:
            return Reranked(list(fused), 0, 0.0)
        reranker = self._reranker
        question_tokens = count_tokens(candidates.question)
        read = 0

        def score(batch: Sequence[ScoredId]) -> Sequence[float]:
            nonlocal read
            windows = [
                rerank_window(chunks[hit.chunk_id], candidates.terms, p.window_tokens) for hit in batch
            ]
            read += sum(question_tokens + count_tokens(window) for window in windows)
            return [float(x) for x in reranker.score(candidates.question, windows)]

        return replace(adaptive_rerank(fused, score, weight, p), tokens=read)

    def _hydrate_depth(self, top_k: int) -> int:
        """How many fused chunks the service reads: all the reranker may score, and the reference top 10."""
        return max(self.rerank_params.max_pairs, top_k * 2, REFERENCE_TOP_K)

    def trim(
        self,
        candidates: Candidates,
        ranking: Sequence[ScoredId],
        chunks: dict[str, Chunk],
        top_k: int,
        token_budget: int,
        params: TrimParams | None = None,
    ) -> list[Passage]:
        return self.select(candidates, ranking, chunks, top_k, token_budget, params)[0]

    def select(
        self,
        candidates: Candidates,
        ranking: Sequence[ScoredId],
        chunks: dict[str, Chunk],
        top_k: int,
        token_budget: int,
        params: TrimParams | None = None,
    ) -> tuple[list[Passage], bool]:
        """The prompt's passages, and whether linking chose them: the linked ones when the best passage
        names other documents (``retrieval/linking.py``; kept whole while the budget allows, since their
        sentences rarely share the question's words), else the top ``top_k`` trimmed at the floor."""
        params = params or self.trim_params
        pool = _whole(ranking, chunks, max(top_k, self.link_params.pool))
        linked = linked_passages(pool, candidates.question, top_k, self.link_params)
        if linked is not None:
            params = replace(params, floor=0.0, focus_max_passages=0)
        passages = trim_to_budget(linked or pool[:top_k], token_budget, candidates.terms, tokenize, params)
        return passages, linked is not None

    # -- the service's path -------------------------------------------------------------------------

    def rank(self, tenant: str, question: str, top_k: int, query_vector: np.ndarray | None = None) -> Ranked:
        """Every stage up to the trim (candidates → weigh → graph → hydrate → rerank), timed."""
        started = time.perf_counter()
        candidates = self.candidates(tenant, question, query_vector=query_vector)
        weights = self.weigh(candidates)
        fused, graph_debug = self.with_graph(candidates, self.fuse(candidates, weights), weights)
        chunks = self.hydrate(fused, self._hydrate_depth(top_k))
        after_fuse = time.perf_counter()
        reranked = self.rerank(candidates, fused, chunks, weights)
        after_rerank = time.perf_counter()
        stage_ms = {
            **candidates.stage_ms,
            "fuse": (after_fuse - started) * 1000 - sum(candidates.stage_ms.values()),
            "rerank": (after_rerank - after_fuse) * 1000,
        }
        return Ranked(candidates, weights, graph_debug, chunks, reranked, stage_ms)

    def retrieve(
        self,
        tenant: str,
        question: str,
        top_k: int,
        token_budget: int,
        query_vector: np.ndarray | None = None,
    ) -> Retrieval:
        if self.mode == "dense":
            return self._retrieve_dense(tenant, question, top_k, query_vector)
        ranked = self.rank(tenant, question, top_k, query_vector)
        started = time.perf_counter()
        weights, chunks, reranked = ranked.weights, ranked.chunks, ranked.reranked
        linked = False
        if self.trim_enabled:
            passages, linked = self.select(ranked.candidates, reranked.ranking, chunks, top_k, token_budget)
        else:
            passages = _whole(reranked.ranking, chunks, top_k)
        reference = _whole(reranked.ranking, chunks, REFERENCE_TOP_K)
        done = time.perf_counter()
        untrimmed = [chunks[h.chunk_id].token_count for h in reranked.ranking[:top_k] if h.chunk_id in chunks]
        best_logit = max(reranked.logits.values()) if reranked.logits else None
        return Retrieval(
            passages=tuple(passages),
            reference_passages=tuple(reference),
            rerank_tokens=reranked.tokens,
            stage_ms={**ranked.stage_ms, "trim": (done - started) * 1000},
            best_relevance=best_logit,
            linked=linked,
            debug={
                "mode": "hybrid",
                "weights": {"bm25": round(weights.bm25, 4), "dense": round(weights.dense, 4)},
                "reason": weights.reason,
                "evidence": weights.evidence.as_dict(),
                "graph": ranked.graph_debug,
                "rerank": {
                    "pairs": reranked.pairs,
                    "weight": round(reranked.weight, 4),
                    "best_logit": None if best_logit is None else round(best_logit, 3),
                },
                "trim": {
                    "enabled": self.trim_enabled,
                    "tokens_top_k": sum(untrimmed),
                    "tokens_kept": sum(count_tokens(p.text) for p in passages),
                    "passages_kept": len(passages),
                    "linked": linked,
                },
                "passages": _passage_refs(passages),
            },
        )

    def _retrieve_dense(
        self, tenant: str, question: str, top_k: int, query_vector: np.ndarray | None
    ) -> Retrieval:
        started = time.perf_counter()
        vector = self._embedder.embed_query(question) if query_vector is None else query_vector
        hits = self._dense.search(tenant, vector, max(top_k, REFERENCE_TOP_K))
        chunks = self.hydrate(hits, max(top_k, REFERENCE_TOP_K))
        passages = _whole(hits, chunks, top_k)
        done = time.perf_counter()
        return Retrieval(
            passages=tuple(passages),
            reference_passages=tuple(_whole(hits, chunks, REFERENCE_TOP_K)),
            stage_ms={"dense": (done - started) * 1000},
            debug={"mode": "dense", "passages": _passage_refs(passages)},
        )


def _whole(ranking: Sequence[ScoredId], chunks: dict[str, Chunk], top_k: int) -> list[Passage]:
    """The first ``top_k`` ranked chunks, untrimmed."""
    return [Passage(chunks[h.chunk_id], max(0.0, h.score)) for h in ranking if h.chunk_id in chunks][:top_k]


def _passage_refs(passages: Sequence[Passage]) -> list[dict[str, str]]:
    """Which chunks the prompt holds, so a caller (the eval harness over HTTP) can see the context."""
    return [{"document_id": p.chunk.document_id, "chunk_id": p.chunk.id} for p in passages]


def rerank_window(chunk: Chunk, terms: Sequence[str], window_tokens: int) -> str:
    """The chunk's title and its run of sentences, at most ``window_tokens`` long, that covers the most
    distinct query terms (the whole chunk when it fits): the cross-encoder's cost grows with length."""
    if chunk.token_count <= window_tokens:
        return indexed_text(chunk)
    pieces = [chunk.text[a:b] for a, b in sentence_spans(chunk.text)]
    lengths = [count_tokens(piece) for piece in pieces]
    wanted = set(terms)
    matched = [set(tokenize(piece)) & wanted for piece in pieces]
    best, best_key = (0, 1), (-1, 0)
    for start in range(len(pieces)):
        covered: set[str] = set()
        used, end = 0, start
        while end < len(pieces) and (used + lengths[end] <= window_tokens or end == start):
            covered |= matched[end]
            used += lengths[end]
            end += 1
        key = (len(covered), -start)
        if key > best_key:
            best, best_key = (start, end), key
    # token_prefix only cuts when one sentence alone is longer than the window
    return f"{chunk.title}\n{token_prefix(' '.join(pieces[best[0] : best[1]]), window_tokens)}"
