"""Store protocols. Callers depend on these only; configuration picks the implementation.

Every store keys its entries by chunk id and records each entry's tenant and document id, so that a
search is confined to one tenant and a document can be removed from every store by its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from rag.types import Chunk, ScoredId


@runtime_checkable
class DenseStore(Protocol):
    """Nearest-neighbour search over chunk embeddings (cosine on L2-normalized vectors)."""

    dim: int

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Insert or replace one vector per chunk; durable when this returns."""

    def delete_document(self, tenant: str, document_id: str) -> int:
        """Remove every entry of the document; returns how many were removed."""

    def search(self, tenant: str, vector: np.ndarray, top_k: int) -> list[ScoredId]:
        """Best ``top_k`` chunks of the tenant by cosine similarity, best first."""

    def score(self, tenant: str, vector: np.ndarray, chunk_ids: Sequence[str]) -> dict[str, float]:
        """Exact cosine similarity of the given chunks of the tenant (unknown ids are left out), so that
        fusion can score a chunk that only the other retriever found."""

    def count(self, tenant: str | None = None, document_id: str | None = None) -> int: ...

    def documents(self) -> dict[tuple[str, str], int]:
        """(tenant, document id) → entries held, for the consistency check (``rag check``)."""

    def close(self) -> None: ...


@runtime_checkable
class LexicalStore(Protocol):
    """BM25 search over chunk texts."""

    def add(self, chunks: Sequence[Chunk], texts: Sequence[str]) -> None:
        """Index ``texts[i]`` under ``chunks[i]``; durable when this returns."""

    def delete_document(self, tenant: str, document_id: str) -> int: ...

    def search(self, tenant: str, query: str, top_k: int) -> list[ScoredId]: ...

    def score(self, tenant: str, query: str, chunk_ids: Sequence[str]) -> dict[str, float]:
        """BM25 score of the given chunks of the tenant (0 when no term matches; unknown ids left out)."""

    def count(self, tenant: str | None = None, document_id: str | None = None) -> int: ...

    def documents(self) -> dict[tuple[str, str], int]:
        """(tenant, document id) → entries held, for the consistency check (``rag check``)."""

    def close(self) -> None: ...


class GraphStore(Protocol):
    """The knowledge graph's write side (``kg.graph.KnowledgeGraph``): each chunk's entities and
    relations, added with the chunk and removed with its document."""

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Extract and record the chunks' contributions; durable when this returns."""

    def rows_expected(self, chunks: Sequence[Chunk]) -> int:
        """How many rows ``add(chunks)`` records: zero for chunks that name no entity."""

    def delete_document(self, tenant: str, document_id: str) -> int: ...

    def count(self, tenant: str | None = None, document_id: str | None = None) -> int: ...

    def documents(self) -> dict[tuple[str, str], int]:
        """(tenant, document id) → entries held, for the consistency check (``rag check``)."""

    def close(self) -> None: ...
