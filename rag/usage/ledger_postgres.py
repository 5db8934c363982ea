"""The server-mode ledger store: the counters in PostgreSQL, shared by every worker.

An answer's counters go in one transaction of upserts (``value = value + excluded.value``), so two
workers adding to one tenant's hour never lose an update. Rows are written in metric order, the same
order in every transaction, so that concurrent writers cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Mapping

from psycopg_pool import ConnectionPool

from rag.usage.ledger import by_tenant


class PostgresLedgerStore:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def add(self, tenant: str, hour: int, counters: Mapping[str, float]) -> None:
        rows = [(tenant, hour, metric, float(value)) for metric, value in sorted(counters.items())]
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO usage_counters (tenant, hour, metric, value) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (tenant, hour, metric) DO UPDATE SET value = usage_counters.value + excluded.value",
                rows,
            )

    def sums(self, tenant: str | None = None) -> dict[str, dict[str, float]]:
        where, params = ("WHERE tenant = %s", (tenant,)) if tenant is not None else ("", ())
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT tenant, metric, SUM(value) FROM usage_counters {where} GROUP BY tenant, metric", params
            ).fetchall()
        return by_tenant(rows)

    def metric_sum(self, tenant: str, metric: str, first_hour: int, end_hour: int) -> float:
        with self._pool.connection() as conn:
            (value,) = conn.execute(
                "SELECT COALESCE(SUM(value), 0) FROM usage_counters "
                "WHERE tenant = %s AND metric = %s AND hour >= %s AND hour < %s",
                (tenant, metric, first_hour, end_hour),
            ).fetchone()
        return float(value)

    def started_at(self, now: float) -> float:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO usage_meta (key, value) VALUES ('started_at', %s) ON CONFLICT (key) DO NOTHING", (now,)
            )
            (value,) = conn.execute("SELECT value FROM usage_meta WHERE key = 'started_at'").fetchone()
        return value

    def close(self) -> None:
        """The pool belongs to the service, which closes it."""
