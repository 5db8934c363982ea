"""API keys: who is calling, as which tenant.

A key is 256 random bits shown once; only its SHA-256 digest is stored (keys.sqlite in the data dir, the
server-mode database, or given hashed-in-memory from configuration). A fast digest is enough for keys
of this entropy: there is nothing to brute-force that a slow hash would protect. The store is read on
every request, so `rag keys create` may add a key while the service runs (SQLite in WAL mode, or
PostgreSQL), and every worker sees it on the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from rag.database.pool import open_pool
from rag.database.schema import require_current
from rag.database.sql import PostgresSql, Sql, SqliteSql
from rag.errors import InvalidRequest, Unauthorized
from rag.types import utc_now

KEY_PREFIX = "rag_"
KEYS_FILE = "keys.sqlite"
# Where the command line and the eval harness read the key they send to a running service.
API_KEY_ENV = "RAG_API_KEY"
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    digest TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


def check_tenant_name(tenant: str) -> str:
    if not _TENANT.fullmatch(tenant):
        raise InvalidRequest(
            f"tenant name {tenant!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return tenant


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: never the key itself, only the first characters that name it."""

    tenant: str
    label: str
    created_at: str


class KeyStore:
    """The persisted keys: of one data dir, or of the server-mode database."""

    def __init__(self, sql: Sql) -> None:
        self._sql = sql

    @classmethod
    def embedded(cls, path: Path) -> KeyStore:
        return cls(SqliteSql(path, _SCHEMA))

    def create(self, tenant: str) -> str:
        """A new key for the tenant; the only time the key exists in clear."""
        check_tenant_name(tenant)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._sql.transaction() as sql:
            sql.execute(
                "INSERT INTO api_keys (digest, tenant, label, created_at) VALUES (?, ?, ?, ?)",
                (digest(key), tenant, key[: len(KEY_PREFIX) + 6], utc_now()),
            )
        return key

    def tenant_of(self, key_digest: str) -> str | None:
        rows = self._sql.query("SELECT tenant FROM api_keys WHERE digest = ?", (key_digest,))
        return rows[0][0] if rows else None

    def list(self) -> list[KeyInfo]:
        rows = self._sql.query("SELECT tenant, label, created_at FROM api_keys ORDER BY created_at")
        return [KeyInfo(*row) for row in rows]

    def revoke(self, label: str) -> int:
        """Remove the keys whose label (the key's first characters) is given; returns how many."""
        with self._sql.transaction() as sql:
            return sql.execute("DELETE FROM api_keys WHERE label = ?", (label,))

    def count(self) -> int:
        return self._sql.query("SELECT COUNT(*) FROM api_keys")[0][0]

    def close(self) -> None:
        self._sql.close()


def open_key_store(data_dir: Path, database_url: str | None) -> KeyStore:
    """The keys a command-line tool or a test reads beside a running service: in the data dir, or in the
    server-mode database through a small pool of its own."""
    if not database_url:
        return KeyStore.embedded(data_dir / KEYS_FILE)
    require_current(database_url)
    return KeyStore(PostgresSql(open_pool(database_url, max_size=1), owns_pool=True))


class Authenticator:
    """Maps a presented key to its tenant: configured keys first (held as digests), then the store."""

    def __init__(self, store: KeyStore, configured: Mapping[str, SecretStr]) -> None:
        self._store = store
        self._configured = {
            digest(key.get_secret_value()): check_tenant_name(tenant) for tenant, key in configured.items()
        }

    def tenant_for(self, key: str | None) -> str:
        if not key:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        presented = digest(key)
        for known, tenant in self._configured.items():
            if hmac.compare_digest(known, presented):
                return tenant
        tenant = self._store.tenant_of(presented)
        if tenant is None:
            raise Unauthorized("invalid API key")
        return tenant


def bearer_headers(key: str | None = None) -> dict[str, str]:
    """What a client of the HTTP API sends: the given key, else RAG_API_KEY from the environment."""
    key = key or os.environ.get(API_KEY_ENV)
    return {"Authorization": f"Bearer {key}"} if key else {}


def ensure_first_key(store: KeyStore, configured: Mapping[str, SecretStr], tenant: str) -> str | None:
    """On the first start with no key anywhere, create one for the tenant and return it (to be shown
    once); None when keys already exist."""
    if configured or store.count():
        return None
    return store.create(tenant)
