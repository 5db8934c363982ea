"""The usage ledger and the daily budget outlive the process: a reopened ledger reads the same totals,
a ledger killed with SIGKILL mid-stream keeps every answer it acknowledged, two workers on one
PostgreSQL database count into one budget, and `/v1/usage` over HTTP reads the same after a restart."""

from __future__ import annotations

import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import pytest

from rag.database.pool import open_pool
from rag.database.sql import PostgresSql
from rag.types import TierUsage, Usage
from rag.usage.accounting import total_usage
from rag.usage.ledger import LedgerStore, UsageLedger
from rag.usage.ledger_store import SqlLedgerStore
from tests.conftest import REPO, LiveServer, make_settings

HOUR = 3600.0


def _usage(prompt_tokens: int = 100, cost: float = 0.001) -> Usage:
    return total_usage([TierUsage("strong", "m", prompt_tokens, 5, cost)])


def _reopen(store: LedgerStore, tmp_path: Path) -> LedgerStore:
    """The same ledger as a new process sees it (closing a SQLite store twice is harmless)."""
    path = tmp_path / "usage.sqlite"
    if path.exists():
        store.close()
        return SqlLedgerStore.embedded(path)
    return store  # PostgreSQL: every call already reads the database, not this process


def test_a_reopened_ledger_reads_the_same_totals_and_the_same_days_spend(
    tmp_path: Path, ledger_store: LedgerStore
) -> None:
    now = [1_700_000_000.0]
    ledger = UsageLedger(ledger_store, clock=lambda: now[0])
    for hour in range(3):  # 22:13, 23:13 and 00:13 UTC: the last answer is on the next day
        now[0] = 1_700_000_000.0 + hour * HOUR
        ledger.record("a", _usage(), cache_hit=False, escalated=True)
        ledger.record("b", _usage(cost=0.002), cache_hit=hour == 1, escalated=False)
    before = (ledger.totals(), ledger.tenants(), ledger.spent_today("a"), ledger.started_at)
    again = UsageLedger(_reopen(ledger_store, tmp_path), clock=lambda: now[0] + 60)
    assert (again.totals(), again.tenants(), again.spent_today("a"), again.started_at) == before
    assert before[0].queries == 6 and before[0].cache_hits == 1 and before[0].escalations == 3
    assert before[0].tiers["strong"].prompt_tokens == 600 and before[1]["b"].cost_usd == pytest.approx(0.006)
    assert before[2] == pytest.approx(0.001)  # tenant a's spend since 00:00 UTC
    again.close()


WRITER = """
import sys
from rag.types import TierUsage
from rag.usage.accounting import total_usage
from rag.usage.ledger import UsageLedger
from rag.usage.ledger_store import SqlLedgerStore
kind, where = sys.argv[1], sys.argv[2]
if kind == "sqlite":
    from pathlib import Path
    store = SqlLedgerStore.embedded(Path(where))
else:
    from rag.database.pool import open_pool
    from rag.database.sql import PostgresSql
    store = SqlLedgerStore(PostgresSql(open_pool(where)))
ledger = UsageLedger(store)
n = 0
while True:
    ledger.record("a", total_usage([TierUsage("strong", "m", 100, 5, 0.001)]), cache_hit=False, escalated=False)
    n += 1
    print(n, flush=True)  # acknowledged: the answer would now be returned
"""


def _writer(kind: str, where: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, kind, where], cwd=REPO, stdout=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_sigkill_loses_no_acknowledged_answer(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    where = str(tmp_path / "usage.sqlite") if kind == "sqlite" else request.getfixturevalue("postgres_url")
    writer = _writer(kind, where)
    acknowledged = 0
    assert writer.stdout is not None
    for line in writer.stdout:
        acknowledged = int(line)
        if acknowledged >= 200:
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    pool = open_pool(where) if kind == "postgres" else None
    store = SqlLedgerStore.embedded(Path(where)) if pool is None else SqlLedgerStore(PostgresSql(pool))
    try:
        queries = UsageLedger(store).totals().queries
    finally:
        store.close()
        if pool is not None:
            pool.close()
    # Every acknowledged answer is counted; at most the one in flight when the signal came may be too.
    assert acknowledged <= queries <= acknowledged + 1


def _record_many(url: str, answers: int) -> None:
    pool = open_pool(url, max_size=2)
    try:
        ledger = UsageLedger(SqlLedgerStore(PostgresSql(pool)))
        for _ in range(answers):
            ledger.record("a", _usage(), cache_hit=False, escalated=False)
    finally:
        pool.close()


def test_workers_on_one_database_count_into_one_total_and_one_budget(postgres_url: str) -> None:
    with ProcessPoolExecutor(max_workers=3) as workers:
        list(workers.map(_record_many, [postgres_url] * 3, [150] * 3))  # concurrent upserts on the same rows
    pool = open_pool(postgres_url)
    try:
        ledger = UsageLedger(SqlLedgerStore(PostgresSql(pool)))
        assert ledger.totals().queries == 450
        assert ledger.spent_today("a") == pytest.approx(0.45)
        # another worker's budget check sees that spend: past a 0.40 USD limit it refuses
        with pytest.raises(Exception, match="daily budget"):
            ledger.admit("a", limit_usd=0.40, cheap_only_from=0.8)
    finally:
        pool.close()


def _usage_report(server: LiveServer) -> dict:
    return httpx.get(f"{server.url}/v1/usage", headers=server.auth_headers, timeout=30).json()


def _post(server: LiveServer, path: str, **kwargs: object) -> None:
    httpx.post(f"{server.url}{path}", headers=server.auth_headers, timeout=300, **kwargs).raise_for_status()


def test_v1_usage_reads_the_same_after_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", routing="fixed", default_tier="cheap", cache_enabled=False)
    document = b"# Normans\n\nRollo led the Norse raiders to Normandy in 911.\n"
    with LiveServer(settings) as server:
        _post(server, "/v1/documents", files={"files": ("n.md", document, "text/markdown")})
        _post(server, "/v1/query", json={"question": "Who led the Norse raiders?"})
        _post(server, "/v1/query", json={"question": "When did they reach Normandy?"})
        before = _usage_report(server)
    assert before["total"]["queries"] == 2 and before["total"]["cost_usd"] > 0
    with LiveServer(settings) as server:
        assert _usage_report(server) == before
