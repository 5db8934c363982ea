"""The one place that picks the dense store: a Qdrant server when configured, else PostgreSQL + pgvector in
server mode, else the embedded qdrant-edge shard."""

from __future__ import annotations

from pathlib import Path

from psycopg_pool import ConnectionPool
from qdrant_client import QdrantClient

from indexing.stores.base import DenseStore
from indexing.stores.dense_edge import EdgeDenseStore
from indexing.stores.dense_pgvector import PgVectorDenseStore
from indexing.stores.dense_qdrant import QdrantDenseStore


def open_dense_store(
    data_dir: Path,
    name: str,
    dim: int,
    qdrant_url: str | None,
    qdrant_api_key: str | None,
    database: ConnectionPool | None = None,
) -> DenseStore:
    """``name`` is the shard directory under ``data_dir/dense``, the server collection, or the pgvector
    collection. A Qdrant server wins over the database: it is there for vector counts one PostgreSQL
    should not hold."""
    if qdrant_url:
        return QdrantDenseStore(QdrantClient(url=qdrant_url, api_key=qdrant_api_key), name, dim)
    if database is not None:
        return PgVectorDenseStore(database, name, dim)
    return EdgeDenseStore(data_dir / "dense" / name, dim)
