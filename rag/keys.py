"""API keys: who is calling, as which tenant.

A key is 256 random bits shown once; only its SHA-256 digest is stored (keys.sqlite in the data dir,
or given hashed-in-memory from configuration). A fast digest is enough for keys of this entropy: there
is nothing to brute-force that a slow hash would protect. The store is SQLite in WAL mode, so
`rag keys create` may add a key while the service runs, and the service sees it on the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from rag.errors import InvalidRequest, Unauthorized
from rag.sqlite_util import transaction
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
    """The persisted keys of one data dir."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def create(self, tenant: str) -> str:
        """A new key for the tenant; the only time the key exists in clear."""
        check_tenant_name(tenant)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._lock, transaction(self._db):
            self._db.execute(
                "INSERT INTO api_keys (digest, tenant, label, created_at) VALUES (?, ?, ?, ?)",
                (digest(key), tenant, key[: len(KEY_PREFIX) + 6], utc_now()),
            )
        return key

    def tenant_of(self, key_digest: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT tenant FROM api_keys WHERE digest = ?", (key_digest,)).fetchone()
        return row[0] if row else None

    def list(self) -> list[KeyInfo]:
        with self._lock:
            rows = self._db.execute("SELECT tenant, label, created_at FROM api_keys ORDER BY created_at").fetchall()
        return [KeyInfo(*row) for row in rows]

    def revoke(self, label: str) -> int:
        """Remove the keys whose label (the key's first characters) is given; returns how many."""
        with self._lock, transaction(self._db):
            return self._db.execute("DELETE FROM api_keys WHERE label = ?", (label,)).rowcount

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0]

    def close(self) -> None:
        self._db.close()


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
