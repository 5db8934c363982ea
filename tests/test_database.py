"""Server mode's schema: `rag db upgrade` applies the migrations once (several workers may run it at once),
and the service refuses a database whose schema is older or newer than its code, saying what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from rag.database.pool import open_pool, redact
from rag.database.schema import MIGRATIONS, SchemaMismatch, require_current, state, upgrade
from rag.errors import StoreError
from rag.service import Service
from tests.conftest import REPO, fresh_database, make_settings

RAG = str(Path(sys.executable).with_name("rag"))


def _rag(*args: str, url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAG_DATABASE_URL": url}
    return subprocess.run([RAG, *args], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_rag_db_upgrade_brings_a_new_database_to_the_current_schema(postgres_server: str) -> None:
    url = fresh_database(postgres_server)
    status = _rag("db", "status", url=url)
    assert status.returncode == 1 and "rag db upgrade" in status.stderr
    first = _rag("db", "upgrade", url=url)
    assert first.returncode == 0 and "0001.usage-ledger" in first.stdout, first.stderr
    again = _rag("db", "upgrade", url=url)
    assert again.returncode == 0 and "applied 0 migration(s)" in again.stdout
    assert _rag("db", "status", url=url).returncode == 0
    require_current(url)


def test_workers_upgrading_at_once_apply_each_migration_once(postgres_server: str) -> None:
    url = fresh_database(postgres_server)
    with ThreadPoolExecutor(max_workers=3) as pool:
        applied = list(pool.map(upgrade, [url] * 3))
    migrations = [path for path in MIGRATIONS.glob("*.sql") if not path.name.endswith(".rollback.sql")]
    assert sorted(len(ids) for ids in applied) == [0, 0, len(migrations)]
    assert state(url).pending == () and state(url).unknown == ()


def test_the_service_refuses_a_database_it_does_not_know(postgres_server: str, tmp_path: Path) -> None:
    url = fresh_database(postgres_server)
    with pytest.raises(SchemaMismatch, match="run `rag db upgrade`"):
        Service.open(make_settings(tmp_path / "a", database_url=url))
    upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:  # as if a newer version had migrated it further
        conn.execute(
            "INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc) "
            "VALUES ('f' || repeat('0', 63), '0099.from-the-future', now())"
        )
    with pytest.raises(SchemaMismatch, match="newer version"):
        Service.open(make_settings(tmp_path / "b", database_url=url))


def test_an_unreachable_database_is_a_clear_error_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://rag:secret@/nowhere?host={tmp_path}&connect_timeout=2"
    with pytest.raises(StoreError) as refused:
        open_pool(url)
    assert "secret" not in refused.value.message and "rag:***@" in refused.value.message
    assert redact("postgresql://u:p@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql://postgres:@/postgres?host=/x") == "postgresql://postgres:***@/postgres?host=/x"
