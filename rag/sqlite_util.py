"""What every SQLite-backed store shares: one transaction shape and one filtered row count."""

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
