"""Dense store on qdrant-client: a Qdrant server (``url=``) or the client's local mode (``path=``).

Local mode is an exact numpy search over points kept in memory and pickled to SQLite; it ignores HNSW
settings and payload indexes, which is why the embedded default is ``EdgeDenseStore`` and local mode
serves only to test this class without a server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from indexing.stores.dense_edge import DEFAULT_HNSW, HnswParams, check_vectors
from rag.errors import StoreError
from rag.types import Chunk, ScoredId


@contextlib.contextmanager
def _server_errors(collection: str) -> Iterator[None]:
    """An unreachable or failing server is a 503 for the caller, not a bug."""
    try:
        yield
    except (UnexpectedResponse, ResponseHandlingException) as exc:
        raise StoreError(f"qdrant collection {collection!r}: {exc}") from exc


def _filter(tenant: str | None, document_id: str | None = None) -> models.Filter | None:
    conditions: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchValue(value=value))
        for key, value in (("tenant", tenant), ("document_id", document_id))
        if value is not None
    ]
    return models.Filter(must=conditions) if conditions else None


def _is_local(client: QdrantClient) -> bool:
    options = client.init_options
    return options.get("path") is not None or options.get("location") == ":memory:"


class QdrantDenseStore:
    """``DenseStore`` on one collection; creates it (cosine) when missing. Owns ``client``: ``close`` closes it."""

    def __init__(
        self, client: QdrantClient, collection: str, dim: int, hnsw: HnswParams = DEFAULT_HNSW
    ) -> None:
        self.dim = dim
        self._client = client
        self._collection = collection
        self._hnsw = hnsw
        self._local = _is_local(client)
        with _server_errors(collection):
            self._ensure_collection()

    def _ensure_collection(self) -> None:
        if not self._client.collection_exists(self._collection):
            self._client.create_collection(
                self._collection,
                vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE),
                hnsw_config=models.HnswConfigDiff(
                    m=self._hnsw.m,
                    ef_construct=self._hnsw.ef_construct,
                    full_scan_threshold=self._hnsw.full_scan_threshold_kb,
                ),
                optimizers_config=models.OptimizersConfigDiff(
                    indexing_threshold=self._hnsw.indexing_threshold_kb
                ),
            )
        info = self._client.get_collection(self._collection)
        size = info.config.params.vectors.size
        if size != self.dim:
            raise StoreError(
                f"qdrant collection {self._collection!r} holds {size}-dim vectors, expected {self.dim}"
            )
        if self._local:
            return  # local mode keeps no payload indexes, and warns when asked for one
        for field, is_tenant in (("tenant", True), ("document_id", False)):
            if field not in info.payload_schema:
                self._client.create_payload_index(
                    self._collection,
                    field,
                    models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=is_tenant),
                    wait=True,
                )

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        check_vectors(vectors, len(chunks), self.dim)
        if not chunks:
            return
        points = [
            models.PointStruct(
                id=chunk.id,
                vector=vector.tolist(),
                payload={"chunk_id": chunk.id, "document_id": chunk.document_id, "tenant": chunk.tenant},
            )
            for chunk, vector in zip(chunks, vectors)
        ]
        with _server_errors(self._collection):
            self._client.upsert(self._collection, points, wait=True)

    def delete_document(self, tenant: str, document_id: str) -> int:
        """Count, then delete: the server does not report how many points a filtered delete removed."""
        doc_filter = _filter(tenant, document_id)
        with _server_errors(self._collection):
            removed = self._client.count(self._collection, count_filter=doc_filter, exact=True).count
            if removed:
                self._client.delete(self._collection, models.FilterSelector(filter=doc_filter), wait=True)
        return removed

    def search(self, tenant: str, vector: np.ndarray, top_k: int) -> list[ScoredId]:
        """Ids come from the payload: Qdrant returns UUID ids re-formatted (lower case, hyphenated)."""
        check_vectors(np.atleast_2d(vector), 1, self.dim)
        with _server_errors(self._collection):
            hits = self._client.query_points(
                self._collection,
                query=np.asarray(vector, dtype=np.float32).tolist(),
                query_filter=_filter(tenant),
                limit=top_k,
                with_payload=["chunk_id"],
                search_params=None if self._local else models.SearchParams(hnsw_ef=max(self._hnsw.ef, top_k)),
            ).points
        return [ScoredId(hit.payload["chunk_id"], float(hit.score)) for hit in hits]

    def score(self, tenant: str, vector: np.ndarray, chunk_ids: Sequence[str]) -> dict[str, float]:
        check_vectors(np.atleast_2d(vector), 1, self.dim)
        if not chunk_ids:
            return {}
        id_filter = models.Filter(
            must=[
                models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant)),
                models.HasIdCondition(has_id=list(chunk_ids)),
            ]
        )
        with _server_errors(self._collection):
            hits = self._client.query_points(
                self._collection,
                query=np.asarray(vector, dtype=np.float32).tolist(),
                query_filter=id_filter,
                limit=len(chunk_ids),
                with_payload=["chunk_id"],
                search_params=None if self._local else models.SearchParams(exact=True),
            ).points
        return {hit.payload["chunk_id"]: float(hit.score) for hit in hits}

    def count(self, tenant: str | None = None, document_id: str | None = None) -> int:
        with _server_errors(self._collection):
            return self._client.count(
                self._collection, count_filter=_filter(tenant, document_id), exact=True
            ).count

    def documents(self) -> dict[tuple[str, str], int]:
        """Facet counts: tenants first, then each tenant's document ids (ids are unique per tenant)."""
        with _server_errors(self._collection):
            total = self.count()
            tenants = self._client.facet(self._collection, "tenant", limit=max(total, 1), exact=True).hits
            held: dict[tuple[str, str], int] = {}
            for tenant_hit in tenants:
                hits = self._client.facet(
                    self._collection,
                    "document_id",
                    facet_filter=_filter(tenant_hit.value),
                    limit=max(tenant_hit.count, 1),
                    exact=True,
                ).hits
                held.update({(tenant_hit.value, hit.value): hit.count for hit in hits})
        return held

    def close(self) -> None:
        self._client.close()
