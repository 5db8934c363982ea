"""Composition root: settings in, one warm set of components out.

This is the only module of ``rag`` that names concrete implementations from ``indexing`` and
``retrieval``; the HTTP API, the CLI and the eval harness all start here, so they run the same code.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from psycopg_pool import ConnectionPool

from indexing.chunking import Chunker
from indexing.embedding import BatchedQueryEmbedder, Embedder, SentenceTransformerEmbedder
from indexing.indexer import Indexer
from indexing.registry import SqlRegistry
from indexing.stores.base import DenseStore, LexicalStore
from indexing.stores.bm25 import BM25Store
from indexing.stores.dense_factory import open_dense_store
from indexing.writers import AdvisoryLockWriters
from kg.expand import GraphExpander
from kg.graph import KnowledgeGraph
from rag.cache.semantic import SemanticCache, embedded_entries
from rag.cache.verifier import load_verifier
from rag.conversation.history import HistoryParams, HistoryWindow
from rag.conversation.rewriter import FollowUpRewriter
from rag.database.pool import open_pool
from rag.database.schema import require_current
from rag.database.sql import PostgresSql
from rag.errors import StoreError
from rag.generation.evidence import PairScorer
from rag.generation.gate import GenerationGate
from rag.generation.llm.base import LLM
from rag.generation.llm.factory import build_llm
from rag.generation.router import NO_SCORE_CHECK, CascadeRouter, load_routing, with_overrides
from rag.keys import KEYS_FILE, KeyStore
from rag.pipeline import QueryPipeline, Retriever
from rag.settings import Settings
from rag.usage.ledger import UsageLedger
from rag.usage.ledger_store import SqlLedgerStore
from retrieval.fitted import load_fitted
from retrieval.hybrid import HybridRetriever
from retrieval.linking import LinkParams
from retrieval.rerank import OnnxCrossEncoder, Reranker
from retrieval.tokenize import tokenize
from retrieval.weighting import QueryWeigher

log = logging.getLogger(__name__)

CHUNK_COLLECTION = "chunks"
CACHE_COLLECTION = "answer_cache"


def _lock_data_dir(data_dir: Path) -> IO[str]:
    """One process owns an embedded data dir; a second one gets a clear error instead of corruption."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / ".lock", "a+")  # noqa: SIM115 -- held open for the process: it is the lock
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise StoreError(
            f"data dir {data_dir} is in use by another process (pid {owner}); stop it, or send this "
            "command to the running service with --url"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


@dataclass
class Service:
    settings: Settings
    registry: SqlRegistry
    dense: DenseStore
    lexical: LexicalStore
    graph: KnowledgeGraph | None
    embedder: SentenceTransformerEmbedder
    reranker: OnnxCrossEncoder
    # What the query path embeds with: the same model behind the micro-batcher when batching is on.
    query_embedder: Embedder
    cache: SemanticCache | None
    llms: dict[str, LLM]
    ledger: UsageLedger
    # The API keys the service checks (None when auth is off).
    keys: KeyStore | None
    indexer: Indexer
    retriever: HybridRetriever
    pipeline: QueryPipeline
    # The strong tier on every question, same retrieval, keys and budgets, no answer cache (its entries may
    # come from the cheap tier): what a client asks for by the model name ``costrag-strong``.
    strong_pipeline: QueryPipeline
    # This worker's generation slots, shared by both pipelines (queue length and wait for /metrics).
    gate: GenerationGate
    # Embedded: the data dir's lock (one process owns it). Server mode: the shared database, and this
    # process's writer lock in it; workers may then share a data dir (it holds only derived files).
    _lock_handle: IO[str] | None
    _database: ConnectionPool | None = None
    _writers: AdvisoryLockWriters | None = None

    @classmethod
    def open(cls, settings: Settings) -> Service:
        """Open every store (cheap); models load in ``warm_up``."""
        if settings.database_url:
            require_current(settings.database_url)  # before anything is opened: a refusal leaves nothing behind
            lock, database = None, open_pool(settings.database_url)
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        else:
            lock, database = _lock_data_dir(settings.data_dir), None
        # Server mode's SQL surface, shared by every store that keeps rows; None: each its own SQLite file.
        shared = PostgresSql(database) if database is not None else None
        embedder = SentenceTransformerEmbedder(
            settings.embedding_model, batch_size=settings.embedding_batch_size, threads=settings.llm_threads
        )
        registry = SqlRegistry(shared) if shared else SqlRegistry.embedded(settings.data_dir / "registry.sqlite")
        dense = open_dense_store(
            settings.data_dir, CHUNK_COLLECTION, embedder.dim, settings.qdrant_url, settings.qdrant_key, database
        )
        # In server mode the rows are shared; the index derived from them is saved in this worker's data dir.
        lexical = BM25Store(settings.data_dir / "bm25", sql=shared)
        graph = None
        if settings.kg_enabled:
            graph = KnowledgeGraph(shared) if shared else KnowledgeGraph.embedded(settings.data_dir / "graph.sqlite")
        cache = None
        if settings.cache_enabled:
            cache = open_answer_cache(settings, settings.data_dir, embedder.dim, database)
        llms = {name: build_llm(tier, settings) for name, tier in settings.tiers.items()}
        writers = AdvisoryLockWriters(settings.database_url, registry.writer_id) if settings.database_url else None
        indexer = Indexer(
            writers=writers,
            registry=registry,
            dense=dense,
            lexical=lexical,
            embedder=embedder,
            chunker=Chunker(settings.chunk_tokens, settings.chunk_overlap_tokens),
            max_upload_bytes=settings.max_upload_bytes,
            listeners=[cache] if cache else [],
            graph=graph,
            concurrency=settings.indexing_concurrency,
        )
        # Loaded even when this configuration does not rerank, so that a variant (the eval harness's
        # rerank_trim) shares it; it costs nothing until warm_up.
        reranker = OnnxCrossEncoder(threads=settings.llm_threads)
        query_embedder: Embedder = embedder
        if settings.batching:
            query_embedder = BatchedQueryEmbedder(embedder, settings.batch_max_size, settings.batch_max_wait_ms)
        retriever = _retriever(settings, query_embedder, dense, lexical, registry, reranker, graph)
        ledger_rows = SqlLedgerStore(shared) if shared else SqlLedgerStore.embedded(settings.data_dir / "usage.sqlite")
        ledger = UsageLedger(ledger_rows)
        rewriter = follow_up_rewriter(settings, llms)
        # One gate for both pipelines: they share this worker's generation slots.
        gate = GenerationGate(settings.generation_slots, settings.admission_max_wait_seconds, settings.tenant_weights)
        keys = None
        if settings.auth == "api_keys":
            keys = KeyStore(shared) if shared else KeyStore.embedded(settings.data_dir / KEYS_FILE)
        service = cls(
            settings=settings,
            registry=registry,
            dense=dense,
            lexical=lexical,
            graph=graph,
            embedder=embedder,
            reranker=reranker,
            query_embedder=query_embedder,
            cache=cache,
            llms=llms,
            ledger=ledger,
            keys=keys,
            indexer=indexer,
            retriever=retriever,
            pipeline=QueryPipeline(
                settings,
                retriever,
                llms,
                query_embedder.embed_query,
                cache,
                router_for(settings, reranker),
                ledger,
                rewriter,
                gate,
                analyze=tokenize,
            ),
            strong_pipeline=QueryPipeline(
                settings.model_copy(update={"routing": "fixed"}),
                retriever,
                llms,
                query_embedder.embed_query,
                ledger=ledger,
                rewriter=rewriter,
                gate=gate,
                analyze=tokenize,
            ),
            gate=gate,
            _lock_handle=lock,
            _database=database,
            _writers=writers,
        )
        indexer.recover()
        return service

    def variant(
        self,
        settings: Settings,
        cache: SemanticCache | None = None,
        llms: Mapping[str, LLM] | None = None,
        retriever: Retriever | None = None,
    ) -> QueryPipeline:
        """A query pipeline for other settings over the same stores and warm models: how the eval harness
        runs each named configuration (naive top-k, hybrid, routed, …) through the service's own code.
        Only query-time settings take effect; the stores and the data dir stay this service's. ``llms``
        and ``retriever`` stand in front of the service's own (the eval's memo of generations, a
        retrieval recorded once for many configurations)."""
        if retriever is None:
            retriever = self.retriever_for(settings)
        return QueryPipeline(
            settings,
            retriever,
            llms if llms is not None else self.llms,
            self.query_embedder.embed_query,
            cache,
            router_for(settings, self.reranker),
            analyze=tokenize,
        )

    def retriever_for(self, settings: Settings) -> HybridRetriever:
        """The retriever ``settings`` configure, over this service's stores and warm models."""
        return _retriever(
            settings, self.query_embedder, self.dense, self.lexical, self.registry, self.reranker, self.graph
        )

    def warm_up(self, generation: bool = True) -> None:
        """Load the embedder, the reranker and the generation models once, before the first request."""
        self.embedder.warm_up()
        scores_grounding = with_overrides(load_routing(), self.settings.router).abstain_min_score > NO_SCORE_CHECK
        if self.settings.rerank or scores_grounding:
            self.reranker.warm_up()
        if generation:
            tiers = {self.settings.default_tier}
            if self.settings.routing == "cascade":
                tiers.add(self.settings.cheap_tier)
            for tier in sorted(tiers):
                self.llms[tier].warm_up()

    def close(self) -> None:
        if isinstance(self.query_embedder, BatchedQueryEmbedder):
            self.query_embedder.close()
        if self.cache is not None:
            self.cache.close()
        self.dense.close()
        self.lexical.close()
        if self.graph is not None:
            self.graph.close()
        self.registry.close()
        self.ledger.close()
        if self.keys is not None:
            self.keys.close()
        if self._database is not None:
            self._database.close()
        if self._writers is not None:
            self._writers.close()
        if self._lock_handle is not None:
            self._lock_handle.close()


def open_answer_cache(
    settings: Settings, directory: Path, dim: int, database: ConnectionPool | None = None
) -> SemanticCache:
    """The answer cache's entries and question index under ``directory``, or in the server-mode database
    (the index on the configured Qdrant server when there is one). The eval harness opens a fresh one per run, so runs
    never share answers."""
    index = open_dense_store(
        directory, CACHE_COLLECTION, dim, settings.qdrant_url, settings.qdrant_key, database
    )
    entries = PostgresSql(database) if database is not None else embedded_entries(directory / "cache.sqlite")
    return SemanticCache(
        entries,
        index,
        settings.cache_threshold,
        settings.cache_ttl_seconds,
        settings.cache_max_entries,
        verifier=load_verifier(),
    )


def router_for(settings: Settings, scorer: PairScorer | None = None) -> CascadeRouter:
    """The cascade's check and the grounding check: the fitted thresholds, with the settings' overrides.
    ``scorer`` (the cross-encoder) is handed over only when the grounding check scores sentences."""
    params = with_overrides(load_routing(), settings.router)
    return CascadeRouter(params, tokenize, scorer if params.abstain_min_score > NO_SCORE_CHECK else None)


def _retriever(
    settings: Settings,
    embedder: Embedder,
    dense: DenseStore,
    lexical: LexicalStore,
    registry: SqlRegistry,
    reranker: Reranker,
    graph: KnowledgeGraph | None,
) -> HybridRetriever:
    fitted = load_fitted()
    trim_params = fitted.trim if settings.trim_floor is None else replace(fitted.trim, floor=settings.trim_floor)
    return HybridRetriever(
        embedder,
        dense,
        lexical,
        registry,
        QueryWeigher(fitted.weighting),
        reranker if settings.rerank else None,
        fitted.rerank,
        trim_params,
        mode=settings.retrieval_mode,
        trim=settings.trim,
        expander=GraphExpander(graph) if graph is not None and settings.kg_enabled else None,
        graph_params=fitted.graph,
        link_params=LinkParams(enabled=settings.link_passages, keep_score=settings.link_keep_score),
    )


def follow_up_rewriter(settings: Settings, llms: Mapping[str, LLM]) -> FollowUpRewriter:
    """Follow-ups made standalone by the cheap tier, the history shown to it bounded by the settings."""
    tier = settings.tiers[settings.cheap_tier]
    params = HistoryParams(settings.conversation_history_tokens, settings.conversation_summary_tokens)
    window = HistoryWindow(llms[settings.cheap_tier], settings.cheap_tier, tier, params)
    return FollowUpRewriter(llms[settings.cheap_tier], settings.cheap_tier, tier, window, tokenize)
