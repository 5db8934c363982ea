"""The document registry's contract, run on its embedded (SQLite) and server (PostgreSQL) backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from indexing.registry import DELETING, INDEXED, PENDING, SqlRegistry
from rag.errors import StoreError
from rag.types import Chunk, DocumentRecord
from tests.conftest import reopener

RegistryOpener = Callable[[], SqlRegistry]


@pytest.fixture(params=["embedded", "postgres"])
def open_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryOpener]:
    """``open_registry()`` opens the same registry each call, as another process would (own writer id)."""
    yield from reopener(request, SqlRegistry, tmp_path / "registry.sqlite")


def document(document_id: str, tenant: str = "t1", content_hash: str | None = None, chunks: int = 3):
    record = DocumentRecord(
        document_id, tenant, f"{document_id}.md", "text/markdown", 100, content_hash or f"h-{document_id}", chunks,
        "2026-12-05T00:00:00+00:00",
    )
    parts = [
        Chunk(f"{document_id}-{i}", document_id, tenant, i, f"text {i}", i * 10, i * 10 + 6, "T", 2, "H", None)
        for i in range(chunks)
    ]
    return record, parts


def test_a_document_is_visible_only_once_committed(open_registry: RegistryOpener) -> None:
    registry = open_registry()
    record, chunks = document("d1")
    assert registry.begin(record, chunks)
    assert registry.get("t1", "d1") is None and registry.list("t1") == []
    assert registry.chunks([c.id for c in chunks]) == {}  # a pending document's chunks are not served
    assert registry.find_by_hash("t1", record.content_hash) == (record, PENDING, registry.writer_id)
    assert registry.unfinished() == [("t1", "d1", registry.writer_id)]
    registry.commit("d1")
    assert registry.get("t1", "d1") == record and registry.list("t1") == [record]
    assert registry.chunks([c.id for c in chunks] + ["unknown"]) == {c.id: c for c in chunks}
    assert registry.count_chunks() == registry.count_chunks("t1") == 3 and registry.count_chunks("t2") == 0
    assert registry.chunk_ids(document_id="d1") == [c.id for c in chunks]
    assert registry.unfinished() == [] and registry.census() == {("t1", "d1"): (INDEXED, 3)}


def test_the_same_document_is_claimed_once_and_tenants_are_apart(open_registry: RegistryOpener) -> None:
    first, second = open_registry(), open_registry()
    record, chunks = document("d1")
    assert first.begin(record, chunks)
    assert not second.begin(record, chunks)  # another writer's claim stands
    same_bytes = document("d2", content_hash=record.content_hash)
    assert not second.begin(*same_bytes)  # one tenant holds given bytes once
    other_tenant = document("d3", tenant="t2", content_hash=record.content_hash)
    assert second.begin(*other_tenant)
    first.commit("d1")
    second.commit("d3")
    assert first.get("t2", "d1") is None and first.get("t2", "d3") == other_tenant[0]
    with pytest.raises(StoreError, match="purged"):
        second.commit("d1")  # not this writer's pending document


def test_delete_marks_then_removes_everything(open_registry: RegistryOpener) -> None:
    registry = open_registry()
    registry.begin(*document("d1"))
    registry.commit("d1")
    registry.mark_deleting("d1")
    assert registry.get("t1", "d1") is None and registry.census() == {("t1", "d1"): (DELETING, 3)}
    registry.remove("d1")
    assert registry.census() == {} and registry.chunk_ids() == [] and registry.count_chunks() == 0


def test_many_chunks_are_read_in_batches(open_registry: RegistryOpener) -> None:
    registry = open_registry()
    record, chunks = document("big", chunks=2_000)  # more ids than one SQLite statement may bind
    registry.begin(record, chunks)
    registry.commit("big")
    assert len(registry.chunks([c.id for c in chunks])) == 2_000


def test_a_reopened_registry_holds_what_was_committed(open_registry: RegistryOpener) -> None:
    registry = open_registry()
    record, chunks = document("d1")
    registry.begin(record, chunks)
    registry.commit("d1")
    assert open_registry().list("t1") == [record]
