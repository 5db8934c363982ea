"""One connection pool per process for ``RAG_DATABASE_URL``; every server-mode store borrows from it."""

from __future__ import annotations

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from rag.errors import StoreError


def open_pool(url: str, max_size: int = 8) -> ConnectionPool:
    """A pool of autocommit connections (stores open their own transactions), each knowing pgvector's
    types (the schema's first migrations create the extension). Any libpq URL works,
    the unix-socket form ``postgresql://user:@/db?host=/dir`` included. Fails at once, with the reason,
    when the server cannot be reached."""
    try:  # one direct connection first: the pool would only time out, this says why
        psycopg.connect(url, connect_timeout=10).close()
    except psycopg.Error as error:
        raise StoreError(f"cannot connect to the database at {redact(url)}: {error}") from error
    pool = ConnectionPool(
        url, min_size=1, max_size=max_size, kwargs={"autocommit": True}, configure=register_vector, open=False
    )
    pool.open(wait=True, timeout=30)
    return pool


def redact(url: str) -> str:
    """``url`` with its password replaced, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{location}"
