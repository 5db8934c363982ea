"""What every SQLite-backed store shares: one transaction shape, one filtered row count, one census."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def transaction(conn: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
    """``begin`` … COMMIT, or ROLLBACK if anything (even an interrupt) escapes. The connection must be in
    autocommit mode (``isolation_level=None``); the caller holds its own lock."""
    conn.execute(begin)
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def count_rows(conn: sqlite3.Connection, table: str, tenant: str | None, document_id: str | None) -> int:
    """Rows of ``table`` (which has ``tenant`` and ``document_id`` columns), filtered by those given.
    ``table`` is the caller's constant, never user input."""
    filters = {"tenant": tenant, "document_id": document_id}
    given = {column: value for column, value in filters.items() if value is not None}
    where = " WHERE " + " AND ".join(f"{column} = ?" for column in given) if given else ""
    return conn.execute(f"SELECT COUNT(*) FROM {table}{where}", list(given.values())).fetchone()[0]


def rows_per_document(conn: sqlite3.Connection, table: str) -> dict[tuple[str, str], int]:
    """(tenant, document id) → rows of ``table``: what a consistency check compares across stores."""
    rows = conn.execute(f"SELECT tenant, document_id, COUNT(*) FROM {table} GROUP BY tenant, document_id")
    return {(tenant, document_id): count for tenant, document_id, count in rows}
