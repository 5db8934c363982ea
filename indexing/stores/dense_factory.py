"""The one place that picks the dense store: embedded qdrant-edge by default, a Qdrant server when configured."""

from __future__ import annotations

from pathlib import Path

from qdrant_client import QdrantClient

from indexing.stores.base import DenseStore
from indexing.stores.dense_edge import EdgeDenseStore
from indexing.stores.dense_qdrant import QdrantDenseStore


def open_dense_store(
    data_dir: Path, name: str, dim: int, qdrant_url: str | None, qdrant_api_key: str | None
) -> DenseStore:
    """``name`` is the shard directory under ``data_dir/dense`` or the server collection."""
    if not qdrant_url:
        return EdgeDenseStore(data_dir / "dense" / name, dim)
    return QdrantDenseStore(QdrantClient(url=qdrant_url, api_key=qdrant_api_key), name, dim)
