"""One SQL surface over SQLite (embedded) and PostgreSQL (server mode), so that a store is written once.

Stores write their SQL with ``?`` placeholders and portable syntax (``ON CONFLICT … DO UPDATE``, ``IN``
lists, joins); ``PostgresSql`` turns the placeholders into psycopg's ``%s``. The embedded backend keeps
the house's SQLite shape: one connection serialized by a lock, WAL, ``synchronous=FULL``.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import psycopg
from psycopg_pool import ConnectionPool

Params = Sequence[object]


class SqlWriter(Protocol):
    """What a store may do inside a transaction."""

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the rows it changed."""
        ...

    def executemany(self, sql: str, rows: Sequence[Params]) -> None: ...

    def query(self, sql: str, params: Params = ()) -> list[tuple]: ...


class Sql(Protocol):
    def transaction(self) -> Iterator[SqlWriter]:
        """A context manager: everything written in it commits together, or not at all."""
        ...

    def query(self, sql: str, params: Params = ()) -> list[tuple]: ...

    def close(self) -> None: ...


@contextmanager
def _sqlite_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK if anything (even an interrupt) escapes. The connection is in
    autocommit mode (``isolation_level=None``); the caller holds its lock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class _SqliteWriter:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        self._conn.executemany(sql, rows)

    def query(self, sql: str, params: Params = ()) -> list[tuple]:
        return self._conn.execute(sql, params).fetchall()


class SqliteSql:
    """A SQLite file with ``schema`` applied (``CREATE … IF NOT EXISTS``: the embedded stores' schemas are
    additive and need no migration tool)."""

    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # timeout: another process (the CLI beside a running service) may hold the write lock briefly
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: what a store acknowledged must survive a power cut, not only a process crash.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(schema)
        self._lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[SqlWriter]:
        with self._lock, _sqlite_transaction(self._conn) as conn:
            yield _SqliteWriter(conn)

    def query(self, sql: str, params: Params = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


_PLACEHOLDER = re.compile(r"\?")


def _psycopg(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (the stores' SQL holds no other ``?`` and no ``%``)."""
    return _PLACEHOLDER.sub("%s", sql)


class _PostgresWriter:
    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._conn.execute(_psycopg(sql), params).rowcount

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        if rows:
            with self._conn.cursor() as cursor:
                cursor.executemany(_psycopg(sql), rows)

    def query(self, sql: str, params: Params = ()) -> list[tuple]:
        return self._conn.execute(_psycopg(sql), params).fetchall()


class PostgresSql:
    """The server-mode database through a pool; the schema comes from the migrations. The pool is
    usually the service's, which closes it; ``owns_pool`` makes ``close`` close it (a command-line
    tool's own small pool)."""

    def __init__(self, pool: ConnectionPool, owns_pool: bool = False) -> None:
        self._pool = pool
        self._owns_pool = owns_pool

    @contextmanager
    def transaction(self) -> Iterator[SqlWriter]:
        with self._pool.connection() as conn, conn.transaction():
            yield _PostgresWriter(conn)

    def query(self, sql: str, params: Params = ()) -> list[tuple]:
        with self._pool.connection() as conn:
            return conn.execute(_psycopg(sql), params).fetchall()

    def close(self) -> None:
        if self._owns_pool:
            self._pool.close()


def count_rows(sql: Sql, table: str, tenant: str | None, document_id: str | None) -> int:
    """Rows of ``table`` (which has ``tenant`` and ``document_id`` columns), filtered by those given.
    ``table`` is the caller's constant, never user input."""
    given = {column: value for column, value in (("tenant", tenant), ("document_id", document_id)) if value is not None}
    where = " WHERE " + " AND ".join(f"{column} = ?" for column in given) if given else ""
    return sql.query(f"SELECT COUNT(*) FROM {table}{where}", list(given.values()))[0][0]


def rows_per_document(sql: Sql, table: str) -> dict[tuple[str, str], int]:
    """(tenant, document id) → rows of ``table``: what a consistency check compares across stores."""
    rows = sql.query(f"SELECT tenant, document_id, COUNT(*) FROM {table} GROUP BY tenant, document_id")
    return {(tenant, document_id): count for tenant, document_id, count in rows}
