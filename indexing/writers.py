"""Which writers are alive: recovery purges only the unfinished writes of processes that are gone.

A document being indexed is ``pending`` in the registry under its writer's id. At start-up (and when the
same bytes come again) a pending document is purged as the trace of a crash, unless its writer is still
running: in server mode another worker may be indexing it right now.
"""

from __future__ import annotations

import threading
from typing import Protocol

import psycopg

# The first key of every writer's advisory lock: keeps them apart from any other use of advisory locks.
LOCK_NAMESPACE = 0x52414721


class WriterLiveness(Protocol):
    def alive(self, writer_id: str | None) -> bool: ...

    def close(self) -> None: ...


class SoleWriter:
    """The embedded mode: the data-dir lock makes this process the only writer, so any other writer id
    belongs to a process that has stopped."""

    def __init__(self, writer_id: str) -> None:
        self._writer_id = writer_id

    def alive(self, writer_id: str | None) -> bool:
        return writer_id == self._writer_id

    def close(self) -> None:
        """Nothing held."""


class AdvisoryLockWriters:
    """Server mode: each process holds a PostgreSQL advisory lock named by its writer id, on a connection
    of its own, for as long as it runs. The server releases a session's locks when its connection ends,
    crash or SIGKILL included, so a writer whose lock can be taken is gone."""

    def __init__(self, url: str, writer_id: str) -> None:
        self._writer_id = writer_id
        self._lock = threading.Lock()
        self._conn = psycopg.connect(url, autocommit=True)
        self._conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (LOCK_NAMESPACE, writer_id))

    def alive(self, writer_id: str | None) -> bool:
        if writer_id is None:
            return False
        if writer_id == self._writer_id:
            return True
        with self._lock:
            key = (LOCK_NAMESPACE, writer_id)
            [(taken,)] = self._conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", key).fetchall()
            if taken:
                self._conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)
        return not taken

    def close(self) -> None:
        with self._lock:
            self._conn.close()
