"""Dense store on PostgreSQL + pgvector (server mode): every worker searches the same vectors.

One table holds every collection (``dense_vectors``, from the migrations); each collection gets its own
HNSW index, an expression index on ``embedding::vector(dim)`` partial on the collection, built with
pgvector's default m / ef_construction and searched as wide as the Qdrant stores search. The collection's
name is written into the SQL as a literal (a constant of the code, checked here) so that the planner can
match the partial index.

pgvector before 0.8 filters HNSW results after the scan, so a tenant holding a small share of a
collection can get fewer than ``top_k`` hits from the index; when that happens the tenant's rows are
searched exactly instead (few rows, by definition). On pgvector ≥ 0.8 the scan is iterative as well.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool

from indexing.stores.dense_edge import HnswParams, check_vectors
from rag.errors import StoreError
from rag.types import Chunk, ScoredId

_NAME = re.compile(r"[a-z][a-z0-9_]{0,49}")  # the index name adds 11 characters; PostgreSQL allows 63
# pgvector caps hnsw.ef_search at 1000.
MAX_EF_SEARCH = 1000
# pgvector's own build defaults (m 16, ef_construction 64), with the Qdrant stores' wide search (ef 512):
# pgvector inserts into the graph row by row, and m 32 / ef_construction 256 made each insert ~5x slower.
PGVECTOR_HNSW = HnswParams(m=16, ef_construct=64, ef=512)


class PgVectorDenseStore:
    """``DenseStore`` on one collection of ``dense_vectors``. The pool's connections must have the pgvector
    type registered (``rag.database.pool.open_pool`` does)."""

    def __init__(
        self, pool: ConnectionPool, collection: str, dim: int, hnsw: HnswParams = PGVECTOR_HNSW
    ) -> None:
        if not _NAME.fullmatch(collection):
            raise ValueError(f"collection name {collection!r}: lower-case letters, digits and _ only")
        self.dim = dim
        self._pool = pool
        self._collection = collection
        self._hnsw = hnsw
        self._typed = f"embedding::vector({dim})"  # the indexed expression
        self._where = f"collection = '{collection}'"
        with self._pool.connection() as conn, conn.transaction():
            self._ensure_collection(conn)
            self._iterative = self._has_iterative_scan(conn)

    def _ensure_collection(self, conn: psycopg.Connection) -> None:
        # One worker at a time builds the index; the others then find it.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"dense_vectors:{self._collection}",))
        conn.execute(
            "INSERT INTO dense_collections (name, dim) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
            (self._collection, self.dim),
        )
        (held,) = conn.execute("SELECT dim FROM dense_collections WHERE name = %s", (self._collection,)).fetchone()
        if held != self.dim:
            raise StoreError(f"dense collection {self._collection!r} holds {held}-dim vectors, expected {self.dim}")
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS dense_hnsw_{self._collection} ON dense_vectors "
            f"USING hnsw (({self._typed}) vector_cosine_ops) "
            f"WITH (m = {self._hnsw.m}, ef_construction = {self._hnsw.ef_construct}) WHERE {self._where}"
        )

    @staticmethod
    def _has_iterative_scan(conn: psycopg.Connection) -> bool:
        (version,) = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        return tuple(int(part) for part in version.split(".")[:2]) >= (0, 8)

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        check_vectors(vectors, len(chunks), self.dim)
        if not chunks:
            return
        rows = [
            (self._collection, chunk.id, chunk.tenant, chunk.document_id, np.asarray(vector, dtype=np.float32))
            for chunk, vector in zip(chunks, vectors)
        ]
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO dense_vectors (collection, id, tenant, document_id, embedding) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (collection, id) DO UPDATE SET "
                "tenant = excluded.tenant, document_id = excluded.document_id, embedding = excluded.embedding",
                rows,
            )

    def delete_document(self, tenant: str, document_id: str) -> int:
        with self._pool.connection() as conn:
            cursor = conn.execute(
                f"DELETE FROM dense_vectors WHERE {self._where} AND tenant = %s AND document_id = %s",
                (tenant, document_id),
            )
            return cursor.rowcount

    def search(self, tenant: str, vector: np.ndarray, top_k: int) -> list[ScoredId]:
        check_vectors(np.atleast_2d(vector), 1, self.dim)
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(f"SET LOCAL hnsw.ef_search = {min(max(self._hnsw.ef, top_k), MAX_EF_SEARCH)}")
            if self._iterative:
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            hits = self._nearest(conn, self._typed, tenant, query, top_k)
            if len(hits) < top_k:  # the index's post-filter left too few: the tenant's rows, exactly
                hits = self._nearest(conn, "embedding", tenant, query, top_k)
        return hits

    def _nearest(
        self, conn: psycopg.Connection, expression: str, tenant: str, query: np.ndarray, top_k: int
    ) -> list[ScoredId]:
        """``expression``: the indexed one (HNSW) or the bare column (an exact scan of the tenant's rows)."""
        rows = conn.execute(
            f"SELECT id, {expression} <=> %s AS distance FROM dense_vectors "
            f"WHERE {self._where} AND tenant = %s ORDER BY distance LIMIT %s",
            (query, tenant, top_k),
        ).fetchall()
        return sorted((ScoredId(chunk_id, 1.0 - distance) for chunk_id, distance in rows), key=lambda h: -h.score)

    def score(self, tenant: str, vector: np.ndarray, chunk_ids: Sequence[str]) -> dict[str, float]:
        check_vectors(np.atleast_2d(vector), 1, self.dim)
        if not chunk_ids:
            return {}
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT id, embedding <=> %s FROM dense_vectors WHERE {self._where} AND tenant = %s AND id = ANY(%s)",
                (query, tenant, list(chunk_ids)),
            ).fetchall()
        return {chunk_id: 1.0 - distance for chunk_id, distance in rows}

    def count(self, tenant: str | None = None, document_id: str | None = None) -> int:
        given = {column: value for column, value in (("tenant", tenant), ("document_id", document_id)) if value is not None}
        where = "".join(f" AND {column} = %s" for column in given)
        with self._pool.connection() as conn:
            (n,) = conn.execute(
                f"SELECT COUNT(*) FROM dense_vectors WHERE {self._where}{where}", list(given.values())
            ).fetchone()
        return n

    def documents(self) -> dict[tuple[str, str], int]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT tenant, document_id, COUNT(*) FROM dense_vectors WHERE {self._where} "
                "GROUP BY tenant, document_id"
            ).fetchall()
        return {(tenant, document_id): n for tenant, document_id, n in rows}

    def close(self) -> None:
        """The pool belongs to the service, which closes it."""
