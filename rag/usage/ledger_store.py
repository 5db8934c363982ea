"""The ledger's store: counters per (tenant, UTC hour, metric) in SQL, added to by upserts.

The same code runs on ``usage.sqlite`` in the data dir (embedded) and on PostgreSQL (server mode, the
schema from ``rag/database/migrations``). An answer's counters go in one transaction of upserts
(``value = value + excluded.value``), so two workers adding to one tenant's hour never lose an update;
rows go in metric order, the same in every transaction, so concurrent writers cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from rag.database.sql import Sql, SqliteSql

K = TypeVar("K")

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage_counters (
    tenant TEXT NOT NULL,
    hour INTEGER NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (tenant, hour, metric)
);
CREATE TABLE IF NOT EXISTS usage_meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""


class SqlLedgerStore:
    def __init__(self, sql: Sql) -> None:
        self._sql = sql

    @classmethod
    def embedded(cls, path: Path) -> SqlLedgerStore:
        return cls(SqliteSql(path, SQLITE_SCHEMA))

    def add(self, tenant: str, hour: int, counters: Mapping[str, float]) -> None:
        rows = [(tenant, hour, metric, float(value)) for metric, value in sorted(counters.items())]
        with self._sql.transaction() as sql:
            sql.executemany(
                "INSERT INTO usage_counters (tenant, hour, metric, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (tenant, hour, metric) DO UPDATE SET value = usage_counters.value + excluded.value",
                rows,
            )

    def sums(self, tenant: str | None = None) -> dict[str, dict[str, float]]:
        where, params = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
        return _fold(
            self._sql.query(
                f"SELECT tenant, metric, SUM(value) FROM usage_counters {where} GROUP BY tenant, metric", params
            )
        )

    def hourly(self, tenant: str, first_hour: int, end_hour: int) -> dict[int, dict[str, float]]:
        return _fold(
            self._sql.query(
                "SELECT hour, metric, value FROM usage_counters WHERE tenant = ? AND hour >= ? AND hour < ?",
                (tenant, first_hour, end_hour),
            )
        )

    def metric_sum(self, tenant: str, metric: str, first_hour: int, end_hour: int) -> float:
        [(value,)] = self._sql.query(
            "SELECT COALESCE(SUM(value), 0) FROM usage_counters "
            "WHERE tenant = ? AND metric = ? AND hour >= ? AND hour < ?",
            (tenant, metric, first_hour, end_hour),
        )
        return float(value)

    def started_at(self, now: float) -> float:
        with self._sql.transaction() as sql:
            sql.execute(
                "INSERT INTO usage_meta (key, value) VALUES ('started_at', ?) ON CONFLICT (key) DO NOTHING", (now,)
            )
            [(value,)] = sql.query("SELECT value FROM usage_meta WHERE key = 'started_at'")
        return float(value)

    def close(self) -> None:
        self._sql.close()


def _fold(rows: Iterable[tuple[K, str, float]]) -> dict[K, dict[str, float]]:
    """(key, metric, value) rows as key → metric → value: per tenant, or per hour."""
    out: dict[K, dict[str, float]] = {}
    for key, metric, value in rows:
        out.setdefault(key, {})[metric] = float(value)
    return out
