"""Hybrid retrieval: BM25 and dense lists, fused, hydrated from the registry, trimmed to the budget."""

from __future__ import annotations

import time
from typing import Protocol, Sequence

from indexing.embedding import Embedder
from indexing.stores.base import DenseStore, LexicalStore
from rag.types import Chunk, Passage, Retrieval
from retrieval.budget import trim_to_budget
from retrieval.fusion import reciprocal_rank_fusion

# Each retriever's list is this many times deeper than what is kept, so fusion has overlap to work on.
CANDIDATE_FACTOR = 4
MIN_CANDIDATES = 20


class ChunkSource(Protocol):
    def chunks(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]: ...


class HybridRetriever:
    def __init__(
        self, embedder: Embedder, dense: DenseStore, lexical: LexicalStore, chunk_source: ChunkSource
    ) -> None:
        self._embedder = embedder
        self._dense = dense
        self._lexical = lexical
        self._chunks = chunk_source

    def retrieve(self, tenant: str, question: str, top_k: int, token_budget: int) -> Retrieval:
        depth = max(MIN_CANDIDATES, top_k * CANDIDATE_FACTOR)
        started = time.perf_counter()
        lexical_hits = self._lexical.search(tenant, question, depth)
        after_bm25 = time.perf_counter()
        dense_hits = self._dense.search(tenant, self._embedder.embed_query(question), depth)
        after_dense = time.perf_counter()
        fused = reciprocal_rank_fusion([lexical_hits, dense_hits])
        chunks = self._chunks.chunks([hit.chunk_id for hit in fused[: top_k * 2]])
        ranked = [Passage(chunks[hit.chunk_id], hit.score) for hit in fused if hit.chunk_id in chunks][:top_k]
        passages = trim_to_budget(ranked, token_budget)
        done = time.perf_counter()
        return Retrieval(
            passages=tuple(passages),
            stage_ms={
                "bm25": (after_bm25 - started) * 1000,
                "dense": (after_dense - after_bm25) * 1000,
                "fuse_trim": (done - after_dense) * 1000,
            },
        )
