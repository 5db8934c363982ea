"""The one filtered row count every SQLite-backed store answers ``count(tenant, document_id)`` with."""

from __future__ import annotations

import sqlite3


def count_rows(conn: sqlite3.Connection, table: str, tenant: str | None, document_id: str | None) -> int:
    """Rows of ``table`` (which has ``tenant`` and ``document_id`` columns), filtered by those given.
    ``table`` is the caller's constant, never user input."""
    filters = {"tenant": tenant, "document_id": document_id}
    given = {column: value for column, value in filters.items() if value is not None}
    where = " WHERE " + " AND ".join(f"{column} = ?" for column in given) if given else ""
    return conn.execute(f"SELECT COUNT(*) FROM {table}{where}", list(given.values())).fetchone()[0]
