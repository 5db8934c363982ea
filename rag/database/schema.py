"""The database's schema version: applied by ``rag db upgrade``, checked before a service uses it.

yoyo-migrations keeps the applied migrations in its own table and takes a lock while it applies them,
so several workers starting at once cannot apply one twice. The service itself never migrates: it
refuses to start on a schema older or newer than its code, and says which command to run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yoyo import get_backend, read_migrations

from rag.database.pool import redact
from rag.errors import StoreError

MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaMismatch(StoreError):
    """The database's schema is not the one this code was written for."""


@dataclass(frozen=True)
class SchemaState:
    pending: tuple[str, ...]  # migrations this code has and the database lacks
    unknown: tuple[str, ...]  # migrations the database has and this code does not know (newer code ran)


def _yoyo_url(url: str) -> str:
    """yoyo picks its driver from the scheme: psycopg 3, the one the stores use."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def state(url: str) -> SchemaState:
    backend = get_backend(_yoyo_url(url))
    try:
        migrations = read_migrations(str(MIGRATIONS))
        applied = backend.get_applied_migration_hashes()
        pending = tuple(m.id for m in backend.to_apply(migrations))
        known = {m.hash for m in migrations}
        unknown = tuple(sorted(h for h in applied if h not in known))
        return SchemaState(pending, unknown)
    finally:
        backend.connection.close()


def upgrade(url: str) -> tuple[str, ...]:
    """Apply the pending migrations (under yoyo's lock); the ids applied."""
    backend = get_backend(_yoyo_url(url))
    try:
        migrations = read_migrations(str(MIGRATIONS))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return tuple(m.id for m in pending)
    finally:
        backend.connection.close()


def require_current(url: str) -> None:
    """Raise ``SchemaMismatch`` unless every migration of this code, and no other, is applied."""
    found = state(url)
    if found.unknown:
        raise SchemaMismatch(
            f"the database at {redact(url)} has {len(found.unknown)} migration(s) this version does not know: "
            "it was upgraded by a newer version of the service; run that version"
        )
    if found.pending:
        raise SchemaMismatch(
            f"the database at {redact(url)} lacks migration(s) {', '.join(found.pending)}: "
            "run `rag db upgrade` (with the same RAG_DATABASE_URL), then start the service again"
        )
