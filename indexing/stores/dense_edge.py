"""Embedded dense store: a qdrant-edge shard in this process, on local disk, no server.

Edge has no background optimizer: points land in an appendable segment that is searched by brute force
until ``EdgeShard.optimize()`` builds HNSW for it. ``optimize()`` only does work once a segment's
vectors exceed ``indexing_threshold_kb`` (or deletions pass the vacuum threshold) and is a ~10 us no-op
otherwise, so every write ends with it. The price is a write that crosses the threshold: it blocks for
the index build (1-8 s per ~6.5k new points at 100k MiniLM-like points on 2 idle cores, 13 s on busy
ones) and edge holds the GIL while it runs, so the whole process pauses, not only the writer.

The shard's write-ahead log (64 MB preallocated) is locked by the process that opens it: one
``EdgeDenseStore`` per path, in one process, at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeVectorParams,
    FacetRequest,
    FieldCondition,
    Filter,
    HasIdCondition,
    HnswIndexConfig,
    KeywordIndexParams,
    MatchValue,
    Point,
    Query,
    QueryRequest,
    SearchParams,
    UpdateOperation,
)

from rag.errors import StoreError
from rag.types import Chunk, ScoredId


@dataclass(frozen=True)
class HnswParams:
    """HNSW settings shared by the edge and the server store, so both return the same neighbours.

    m/ef_construct/ef keep top-10 agreement with exact search >= 0.99 at 100k points drawn like MiniLM
    embeddings (m=16, ef=128 gave 0.87 there); see ``scripts/bench_dense_store.py``. A segment smaller
    than ``full_scan_threshold_kb``, or a tenant with fewer vectors than that, is searched exactly.
    """

    m: int = 32
    ef_construct: int = 256
    ef: int = 512
    indexing_threshold_kb: int = 10_000
    full_scan_threshold_kb: int = 10_000


DEFAULT_HNSW = HnswParams()


def check_vectors(vectors: np.ndarray, rows: int, dim: int) -> None:
    """Reject a batch that does not hold one ``dim``-wide vector per chunk, before anything is written."""
    if vectors.shape != (rows, dim):
        raise ValueError(f"expected vectors of shape ({rows}, {dim}), got {vectors.shape}")


def _filter(tenant: str | None, document_id: str | None = None) -> Filter | None:
    conditions = [
        FieldCondition(key=key, match=MatchValue(value))
        for key, value in (("tenant", tenant), ("document_id", document_id))
        if value is not None
    ]
    return Filter(must=conditions) if conditions else None


class EdgeDenseStore:
    """``DenseStore`` on a qdrant-edge shard at ``path``: created when the path is new, else loaded."""

    def __init__(self, path: Path, dim: int, hnsw: HnswParams = DEFAULT_HNSW) -> None:
        self.dim = dim
        self._hnsw = hnsw
        self._shard = self._open(path)
        self._index_payload()

    def _config(self) -> EdgeConfig:
        return EdgeConfig(
            vectors=EdgeVectorParams(size=self.dim, distance=Distance.Cosine),
            hnsw_config=HnswIndexConfig(
                m=self._hnsw.m,
                ef_construct=self._hnsw.ef_construct,
                full_scan_threshold=self._hnsw.full_scan_threshold_kb,
            ),
            optimizers=EdgeOptimizersConfig(indexing_threshold=self._hnsw.indexing_threshold_kb),
        )

    def _open(self, path: Path) -> EdgeShard:
        """Loading with a config checks the stored vector size against ``dim`` and adopts new HNSW settings."""
        try:
            if path.is_dir() and any(path.iterdir()):
                return EdgeShard.load(str(path), self._config())
            return EdgeShard.create(str(path), self._config())
        except Exception as exc:  # edge raises bare Exception for every runtime error
            hint = " (open in another process or store?)" if "WouldBlock" in str(exc) else ""
            raise StoreError(f"cannot open dense store {path} with dim {self.dim}{hint}: {exc}") from exc

    def _index_payload(self) -> None:
        """Keyword indexes make the tenant filter and delete-by-document lookups instead of scans."""
        indexed = self._shard.info().payload_schema
        for field, is_tenant in (("tenant", True), ("document_id", False)):
            if field not in indexed:
                self._shard.update(
                    UpdateOperation.create_field_index(field, KeywordIndexParams(is_tenant=is_tenant))
                )

    def _commit(self) -> None:
        """Flush first, so the write is durable even if the index build that follows is interrupted."""
        self._shard.flush()
        self._shard.optimize()

    @property
    def indexed_vectors(self) -> int:
        """Vectors held in HNSW segments; the rest are brute-forced. For health checks and benchmarks."""
        return self._shard.info().indexed_vectors_count

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        check_vectors(vectors, len(chunks), self.dim)
        if not chunks:
            return
        points = [
            Point(
                id=chunk.id,
                vector=vector.tolist(),
                payload={"chunk_id": chunk.id, "document_id": chunk.document_id, "tenant": chunk.tenant},
            )
            for chunk, vector in zip(chunks, vectors)
        ]
        self._shard.update(UpdateOperation.upsert_points(points))
        self._commit()

    def delete_document(self, tenant: str, document_id: str) -> int:
        doc_filter = _filter(tenant, document_id)
        removed = self._shard.count(CountRequest(exact=True, filter=doc_filter))
        if removed:
            self._shard.update(UpdateOperation.delete_points_by_filter(doc_filter))
            self._commit()
        return removed

    def search(self, tenant: str, vector: np.ndarray, top_k: int) -> list[ScoredId]:
        """Ids come from the payload: edge hands point ids back as ``uuid.UUID``, not the string we stored."""
        check_vectors(np.atleast_2d(vector), 1, self.dim)
        hits = self._shard.query(
            QueryRequest(
                limit=top_k,
                query=Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
                filter=_filter(tenant),
                with_payload=["chunk_id"],
                params=SearchParams(hnsw_ef=max(self._hnsw.ef, top_k)),
            )
        )
        return [ScoredId(hit.payload["chunk_id"], float(hit.score)) for hit in hits]

    def score(self, tenant: str, vector: np.ndarray, chunk_ids: Sequence[str]) -> dict[str, float]:
        check_vectors(np.atleast_2d(vector), 1, self.dim)
        if not chunk_ids:
            return {}
        hits = self._shard.query(
            QueryRequest(
                limit=len(chunk_ids),
                query=Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
                filter=Filter(must=[FieldCondition(key="tenant", match=MatchValue(tenant)), HasIdCondition(set(chunk_ids))]),
                with_payload=["chunk_id"],
                params=SearchParams(exact=True),
            )
        )
        return {hit.payload["chunk_id"]: float(hit.score) for hit in hits}

    def count(self, tenant: str | None = None, document_id: str | None = None) -> int:
        return self._shard.count(CountRequest(exact=True, filter=_filter(tenant, document_id)))

    def documents(self) -> dict[tuple[str, str], int]:
        """Facet counts: tenants first, then each tenant's document ids (ids are unique per tenant)."""
        total = self.count()
        held: dict[tuple[str, str], int] = {}
        for tenant_hit in self._shard.facet(FacetRequest(key="tenant", limit=max(total, 1), exact=True)).hits:
            request = FacetRequest(
                key="document_id", limit=max(tenant_hit.count, 1), exact=True, filter=_filter(tenant_hit.value)
            )
            held.update({(tenant_hit.value, hit.value): hit.count for hit in self._shard.facet(request).hits})
        return held

    def close(self) -> None:
        self._shard.close()
