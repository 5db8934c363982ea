"""The embedded ledger store: the counters in ``usage.sqlite`` in the data dir (WAL, one process)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path

from rag.sqlite_util import transaction
from rag.usage.ledger import by_tenant

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage_counters (
    tenant TEXT NOT NULL,
    hour INTEGER NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (tenant, hour, metric)
);
CREATE TABLE IF NOT EXISTS usage_meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""


class SqliteLedgerStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: the day's spend is what the budget refuses on; it must survive a power cut too.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def add(self, tenant: str, hour: int, counters: Mapping[str, float]) -> None:
        rows = [(tenant, hour, metric, float(value)) for metric, value in sorted(counters.items())]
        with self._lock, transaction(self._conn) as conn:
            conn.executemany(
                "INSERT INTO usage_counters (tenant, hour, metric, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (tenant, hour, metric) DO UPDATE SET value = usage_counters.value + excluded.value",
                rows,
            )

    def sums(self, tenant: str | None = None) -> dict[str, dict[str, float]]:
        where, params = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
        with self._lock:
            rows = self._conn.execute(
                f"SELECT tenant, metric, SUM(value) FROM usage_counters {where} GROUP BY tenant, metric", params
            ).fetchall()
        return by_tenant(rows)

    def metric_sum(self, tenant: str, metric: str, first_hour: int, end_hour: int) -> float:
        with self._lock:
            (value,) = self._conn.execute(
                "SELECT COALESCE(SUM(value), 0) FROM usage_counters "
                "WHERE tenant = ? AND metric = ? AND hour >= ? AND hour < ?",
                (tenant, metric, first_hour, end_hour),
            ).fetchone()
        return float(value)

    def started_at(self, now: float) -> float:
        with self._lock, transaction(self._conn) as conn:
            conn.execute("INSERT OR IGNORE INTO usage_meta (key, value) VALUES ('started_at', ?)", (now,))
            (value,) = conn.execute("SELECT value FROM usage_meta WHERE key = 'started_at'").fetchone()
        return value

    def close(self) -> None:
        with self._lock:
            self._conn.close()
