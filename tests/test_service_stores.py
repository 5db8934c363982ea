"""The indexer against the real stores: rollback on failure, recovery after a crash, restart, one owner;
each in the embedded mode and in server mode (the stores that live in PostgreSQL there, on a real one)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from indexing.indexer import Upload, indexed_text
from rag.errors import StoreError
from rag.service import Service
from rag.settings import Settings
from rag.types import DEFAULT_TENANT
from tests.conftest import make_settings

DOC = Upload("normans.md", b"# Normans\n\nThe Normans were the people who gave their name to Normandy, a region in France.")
OTHER = Upload("panthers.txt", b"The Panthers defense gave up just 308 points, ranking sixth in the league.")


def counts(service: Service) -> tuple[int, int, int]:
    return service.dense.count(), service.lexical.count(), service.registry.count_chunks()


SettingsFor = Callable[..., Settings]


@pytest.fixture(params=["embedded", "server"])
def settings_for(request: pytest.FixtureRequest) -> SettingsFor:
    """``settings_for(data_dir, **overrides)``: the mode's settings; server mode gets a fresh database."""
    database = {"database_url": request.getfixturevalue("postgres_url")} if request.param == "server" else {}
    return lambda data_dir, **overrides: make_settings(data_dir, **database, **overrides)


@pytest.fixture()
def service(tmp_path: Path, settings_for: SettingsFor):
    opened = Service.open(settings_for(tmp_path / "data"))
    yield opened
    opened.close()


class FailingDense:
    """Wraps the real dense store and fails its write, as a full disk or a lost server would."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.dim = inner.dim

    def upsert(self, chunks, vectors) -> None:
        raise OSError("disk full")

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_a_failed_write_is_rolled_back_from_every_store(service: Service) -> None:
    service.indexer.add(OTHER, DEFAULT_TENANT)
    before = counts(service)
    service.indexer._dense = FailingDense(service.dense)
    outcome = service.indexer.add(DOC, DEFAULT_TENANT)
    assert outcome.status == "rejected" and isinstance(outcome.error, StoreError)
    assert "disk full" in outcome.error.message
    assert counts(service) == before
    assert service.registry.unfinished() == []
    service.indexer._dense = service.dense
    assert service.indexer.add(DOC, DEFAULT_TENANT).status == "indexed"


def test_a_crash_mid_write_is_purged_at_the_next_start(tmp_path: Path, settings_for: SettingsFor) -> None:
    settings = settings_for(tmp_path / "data")
    service = Service.open(settings)
    indexer = service.indexer
    prepared = indexer._prepare(DOC, DEFAULT_TENANT)
    # The process dies after the registry and BM25 writes, before the dense write and the commit.
    service.registry.begin(prepared.record, prepared.chunks)
    service.lexical.add(prepared.chunks, [indexed_text(c) for c in prepared.chunks])
    assert service.lexical.count() == len(prepared.chunks)
    service.close()

    reopened = Service.open(settings)
    try:
        assert counts(reopened) == (0, 0, 0)
        assert reopened.registry.unfinished() == []
        assert reopened.indexer.add(DOC, DEFAULT_TENANT).status == "indexed"
    finally:
        reopened.close()


def test_everything_survives_a_restart(tmp_path: Path, settings_for: SettingsFor) -> None:
    settings = settings_for(tmp_path / "data")
    service = Service.open(settings)
    record = service.indexer.add(DOC, DEFAULT_TENANT).document
    service.indexer.add(OTHER, DEFAULT_TENANT)
    question = "Which region is named after the Normans?"
    first = service.retriever.retrieve(DEFAULT_TENANT, question, 2, 1000)
    before = counts(service)
    service.close()

    reopened = Service.open(settings)
    try:
        assert counts(reopened) == before
        listed = reopened.registry.list(DEFAULT_TENANT)
        assert len(listed) == 2 and record in listed
        again = reopened.retriever.retrieve(DEFAULT_TENANT, question, 2, 1000)
        assert [p.chunk.id for p in again.passages] == [p.chunk.id for p in first.passages]
        assert again.passages[0].chunk.document_id == record.id
        vector = reopened.embedder.embed_query(question)
        assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-4)
    finally:
        reopened.close()


def test_a_data_dir_indexed_without_the_graph_gets_one_at_the_next_start(tmp_path: Path, settings_for: SettingsFor) -> None:
    service = Service.open(settings_for(tmp_path / "data", kg_enabled=False))
    service.indexer.add(DOC, DEFAULT_TENANT)
    assert service.graph is None
    service.close()
    reopened = Service.open(settings_for(tmp_path / "data"))
    try:
        assert reopened.graph.count() > 0
        assert [e.name for e in reopened.graph.entities(DEFAULT_TENANT, "norman")][:1] == ["normans"]
        # A failed write leaves nothing in the graph either.
        reopened.indexer._dense = FailingDense(reopened.dense)
        before = reopened.graph.count()
        assert reopened.indexer.add(OTHER, DEFAULT_TENANT).status == "rejected"
        assert reopened.graph.count() == before
    finally:
        reopened.close()


def test_a_second_process_on_an_embedded_data_dir_gets_a_clear_error(tmp_path: Path) -> None:
    service = Service.open(make_settings(tmp_path / "data"))
    try:
        with pytest.raises(StoreError, match="in use by another process"):
            Service.open(service.settings)
    finally:
        service.close()


def test_two_workers_on_one_database_see_each_others_uploads_and_deletes(tmp_path: Path, postgres_url: str) -> None:
    """Server mode: a second process on the same database (and even the same data dir) is a second
    worker. An upload through one is retrievable through the other; a delete through the other is gone
    from the first's registry, lexical and dense search and graph."""
    settings = make_settings(tmp_path / "data", database_url=postgres_url)
    first, second = Service.open(settings), Service.open(settings)
    question = "Which region is named after the Normans?"
    try:
        record = first.indexer.add(DOC, DEFAULT_TENANT).document
        assert second.retriever.retrieve(DEFAULT_TENANT, question, 2, 1000).passages[0].chunk.document_id == record.id
        assert second.indexer.add(DOC, DEFAULT_TENANT).status == "duplicate"
        assert second.graph.count(DEFAULT_TENANT) > 0 and second.graph.entities(DEFAULT_TENANT, "norman")
        assert second.indexer.delete(DEFAULT_TENANT, record.id)
        assert first.registry.get(DEFAULT_TENANT, record.id) is None
        assert first.lexical.search(DEFAULT_TENANT, "Normans Normandy", 5) == []
        assert first.dense.count(tenant=DEFAULT_TENANT) == 0
        assert first.graph.entities(DEFAULT_TENANT, "norman") == []
        assert first.indexer.check() == []
    finally:
        second.close()
        first.close()


def test_recovery_leaves_a_live_workers_write_and_purges_a_stopped_ones(tmp_path: Path, postgres_url: str) -> None:
    settings = make_settings(tmp_path / "data", database_url=postgres_url)
    writer = Service.open(settings)
    prepared = writer.indexer._prepare(DOC, DEFAULT_TENANT)
    assert writer.registry.begin(prepared.record, prepared.chunks)  # mid-write: pending, under its id
    other = Service.open(settings)  # its start-up recovery runs now
    try:
        assert [d for _, d, _ in other.registry.unfinished()] == [prepared.record.id]
        assert other.indexer.add(DOC, DEFAULT_TENANT).status == "duplicate"  # being indexed by the writer
        writer.close()  # the writer stops before it finishes: its lock goes with its connection
        assert other.indexer.recover() == 1 and other.registry.unfinished() == []
        assert other.indexer.add(DOC, DEFAULT_TENANT).status == "indexed"
    finally:
        other.close()


def test_same_bytes_twice_in_one_request_index_once(service: Service) -> None:
    outcomes = service.indexer.add_many([DOC, Upload("copy.md", DOC.content)], DEFAULT_TENANT)
    assert [o.status for o in outcomes] == ["indexed", "duplicate"]
    assert outcomes[0].document.id == outcomes[1].document.id
    assert len(service.registry.list(DEFAULT_TENANT)) == 1


def test_a_write_purged_by_another_workers_recovery_is_not_acknowledged(tmp_path: Path, service: Service) -> None:
    prepared = service.indexer._prepare(DOC, DEFAULT_TENANT)
    assert service.registry.begin(prepared.record, prepared.chunks)
    service.registry.remove(prepared.record.id)  # as a recovery that took this writer for dead would
    with pytest.raises(StoreError, match="purged while it was being indexed"):
        service.registry.commit(prepared.record.id)
