"""Document registry: which documents exist, their chunks, and their indexing state (SQLite or PostgreSQL).

A document is ``pending`` while its chunks are written to the other stores and ``indexed`` once all of
them are durable; only ``indexed`` documents are visible. A ``pending`` or ``deleting`` row found at
start-up is the trace of an interrupted write, and the indexer purges it from every store.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from rag.database.sql import Sql, SqliteSql
from rag.errors import StoreError
from rag.types import Chunk, DocumentRecord

PENDING, INDEXED, DELETING = "pending", "indexed", "deleting"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    chunk_count INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    state TEXT NOT NULL,
    writer TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS documents_tenant_hash ON documents(tenant, content_hash);
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY,
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    start INTEGER NOT NULL,
    end_ INTEGER NOT NULL,
    title TEXT NOT NULL,
    token_count INTEGER NOT NULL,
    heading TEXT,
    page INTEGER
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
"""

_DOC_COLUMNS = "id, tenant, name, media_type, size_bytes, content_hash, chunk_count, created_at"
# SQLite caps the parameters of one statement (32,766 since 3.32, 999 before).
_MAX_PARAMS = 900
_CHUNK_COLUMNS = "id, document_id, tenant, idx, text, start, end_, title, token_count, heading, page"


class DocumentRegistry(Protocol):
    writer_id: str

    def begin(self, record: DocumentRecord, chunks: Sequence[Chunk]) -> bool: ...

    def commit(self, document_id: str) -> None: ...

    def mark_deleting(self, document_id: str) -> None: ...

    def remove(self, document_id: str) -> None: ...

    def get(self, tenant: str, document_id: str) -> DocumentRecord | None: ...

    def find_by_hash(self, tenant: str, content_hash: str) -> tuple[DocumentRecord, str, str | None] | None: ...

    def list(self, tenant: str) -> list[DocumentRecord]: ...

    def chunks(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]: ...

    def count_chunks(self, tenant: str | None = None) -> int: ...

    def chunk_ids(self, tenant: str | None = None, document_id: str | None = None) -> list[str]: ...

    def unfinished(self) -> list[tuple[str, str, str | None]]: ...

    def census(self) -> dict[tuple[str, str], tuple[str, int]]: ...

    def close(self) -> None: ...


class SqlRegistry:
    """The registry in SQL: ``registry.sqlite`` in the data dir (embedded), or the server-mode database
    (the same tables, from ``rag/database/migrations``)."""

    def __init__(self, sql: Sql, writer_id: str | None = None) -> None:
        self._sql = sql
        # Marks this process's unfinished writes, so that recovery elsewhere can tell a live writer's
        # pending document from a crashed one's (``indexing.writers``).
        self.writer_id = writer_id or uuid.uuid4().hex

    @classmethod
    def embedded(cls, path: Path) -> SqlRegistry:
        sql = SqliteSql(path, _SCHEMA)
        if "writer" not in {row[1] for row in sql.query("PRAGMA table_info(documents)")}:
            with sql.transaction() as writer:  # a registry written before writers were recorded
                writer.execute("ALTER TABLE documents ADD COLUMN writer TEXT")
        return cls(sql)

    def begin(self, record: DocumentRecord, chunks: Sequence[Chunk]) -> bool:
        """Record a document as pending, with its chunks, before any other store is written. False (and
        nothing written) when the document's row exists already: another writer got there first."""
        with self._sql.transaction() as sql:
            created = sql.execute(
                f"INSERT INTO documents ({_DOC_COLUMNS}, state, writer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (
                    record.id,
                    record.tenant,
                    record.name,
                    record.media_type,
                    record.size_bytes,
                    record.content_hash,
                    record.chunk_count,
                    record.created_at,
                    PENDING,
                    self.writer_id,
                ),
            )
            if not created:
                return False
            sql.executemany(
                f"INSERT INTO chunks ({_CHUNK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (c.id, c.document_id, c.tenant, c.index, c.text, c.start, c.end, c.title, c.token_count,
                     c.heading, c.page)
                    for c in chunks
                ],
            )
        return True

    def _set_state(self, document_id: str, state: str) -> None:
        with self._sql.transaction() as sql:
            sql.execute("UPDATE documents SET state = ?, writer = ? WHERE id = ?", (state, self.writer_id, document_id))

    def commit(self, document_id: str) -> None:
        """Mark this writer's pending document indexed. ``StoreError`` if it is no longer this writer's
        pending document (another worker's recovery took this writer for dead and purged it), so that
        the upload is reported failed rather than acknowledged and lost."""
        with self._sql.transaction() as sql:
            updated = sql.execute(
                "UPDATE documents SET state = ?, writer = NULL WHERE id = ? AND state = ? AND writer = ?",
                (INDEXED, document_id, PENDING, self.writer_id),
            )
        if updated != 1:
            raise StoreError(f"document {document_id} was purged while it was being indexed; upload it again")

    def mark_deleting(self, document_id: str) -> None:
        self._set_state(document_id, DELETING)

    def remove(self, document_id: str) -> None:
        with self._sql.transaction() as sql:
            sql.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
            sql.execute("DELETE FROM documents WHERE id = ?", (document_id,))

    def get(self, tenant: str, document_id: str) -> DocumentRecord | None:
        rows = self._sql.query(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE id = ? AND tenant = ? AND state = ?",
            (document_id, tenant, INDEXED),
        )
        return DocumentRecord(*rows[0]) if rows else None

    def find_by_hash(self, tenant: str, content_hash: str) -> tuple[DocumentRecord, str, str | None] | None:
        """The document with these bytes in any state, with its state and its writer."""
        rows = self._sql.query(
            f"SELECT {_DOC_COLUMNS}, state, writer FROM documents WHERE tenant = ? AND content_hash = ?",
            (tenant, content_hash),
        )
        return (DocumentRecord(*rows[0][:-2]), rows[0][-2], rows[0][-1]) if rows else None

    def list(self, tenant: str) -> list[DocumentRecord]:
        rows = self._sql.query(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE tenant = ? AND state = ? ORDER BY created_at, name",
            (tenant, INDEXED),
        )
        return [DocumentRecord(*row) for row in rows]

    def chunks(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]:
        """Chunks of indexed documents by id; ids of pending or deleted documents are left out."""
        found: dict[str, Chunk] = {}
        for start in range(0, len(chunk_ids), _MAX_PARAMS):
            found.update(self._chunk_batch(chunk_ids[start : start + _MAX_PARAMS]))
        return found

    def _chunk_batch(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]:
        marks = ",".join("?" * len(chunk_ids))
        rows = self._sql.query(
            f"SELECT {', '.join('c.' + col for col in _CHUNK_COLUMNS.split(', '))} FROM chunks c "
            f"JOIN documents d ON d.id = c.document_id WHERE c.id IN ({marks}) AND d.state = ?",
            (*chunk_ids, INDEXED),
        )
        return {
            row[0]: Chunk(
                id=row[0], document_id=row[1], tenant=row[2], index=row[3], text=row[4], start=row[5],
                end=row[6], title=row[7], token_count=row[8], heading=row[9], page=row[10],
            )
            for row in rows
        }

    def count_chunks(self, tenant: str | None = None) -> int:
        statement = "SELECT COUNT(*) FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.state = ?"
        params: tuple = (INDEXED,)
        if tenant is not None:
            statement += " AND c.tenant = ?"
            params += (tenant,)
        return self._sql.query(statement, params)[0][0]

    def chunk_ids(self, tenant: str | None = None, document_id: str | None = None) -> list[str]:
        """Ids of every chunk row, whatever its document's state: for consistency checks and benchmarks."""
        filters = {"tenant": tenant, "document_id": document_id}
        where = " AND ".join(f"{column} = ?" for column, value in filters.items() if value is not None)
        statement = "SELECT id FROM chunks" + (f" WHERE {where}" if where else "") + " ORDER BY document_id, idx"
        return [row[0] for row in self._sql.query(statement, [v for v in filters.values() if v is not None])]

    def unfinished(self) -> list[tuple[str, str, str | None]]:
        """(tenant, document id, writer id) of every write not finished: interrupted, or still going on."""
        rows = self._sql.query("SELECT tenant, id, writer FROM documents WHERE state != ?", (INDEXED,))
        return [(tenant, document_id, writer) for tenant, document_id, writer in rows]

    def census(self) -> dict[tuple[str, str], tuple[str, int]]:
        """(tenant, document id) → (state, chunk rows) of every document: what the stores must agree with."""
        rows = self._sql.query(
            "SELECT d.tenant, d.id, d.state, COUNT(c.id) FROM documents d LEFT JOIN chunks c"
            " ON c.document_id = d.id GROUP BY d.id",
            (),
        )
        return {(tenant, document_id): (state, chunks) for tenant, document_id, state, chunks in rows}

    def close(self) -> None:
        self._sql.close()
