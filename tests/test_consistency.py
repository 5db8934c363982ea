"""`rag check`: the stores compared with the registry, each kind of difference found and repaired."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from indexing.indexer import Upload, indexed_text
from rag.service import Service
from rag.types import DEFAULT_TENANT, Chunk, DocumentRecord, utc_now
from tests.conftest import MODEL_DIR, REPO, make_settings

RAG = str(Path(sys.executable).with_name("rag"))
DOC = Upload("normans.md", b"# Normans\n\nThe Normans were the people who gave their name to Normandy, a region in France.")
OTHER = Upload("panthers.txt", b"The Panthers defense gave up just 308 points, ranking sixth in the league.")


@pytest.fixture()
def service(tmp_path: Path):
    opened = Service.open(make_settings(tmp_path / "data"))
    opened.warm_up(generation=False)
    yield opened
    opened.close()


def _problems(service: Service) -> set[tuple[str, str, str]]:
    return {(d.store, d.document_id, d.problem) for d in service.indexer.check()}


def test_agreeing_stores_report_nothing_and_each_difference_is_found_and_repaired(service: Service) -> None:
    doc = service.indexer.add(DOC, DEFAULT_TENANT).document
    other = service.indexer.add(OTHER, DEFAULT_TENANT).document
    assert service.indexer.check() == []

    service.dense.delete_document(DEFAULT_TENANT, doc.id)  # an acknowledged document lost its vectors
    service.graph.delete_document(DEFAULT_TENANT, other.id)  # and another its graph rows
    stray = Chunk("stray-chunk", "stray-doc", DEFAULT_TENANT, 0, "stray text", 0, 10, "Stray", 3)
    service.lexical.add([stray], [indexed_text(stray)])  # a store holds what the registry never had
    pending = DocumentRecord("pending-doc", DEFAULT_TENANT, "p.md", "text/markdown", 1, "h", 0, utc_now())
    service.registry.begin(pending, [])  # a write that never finished
    assert _problems(service) == {
        ("dense", doc.id, "missing"),
        ("graph", other.id, "missing"),
        ("bm25", "stray-doc", "orphan"),
        ("registry", "pending-doc", "unfinished"),
    }

    service.indexer.repair(service.indexer.check())
    assert service.indexer.check() == []
    assert service.dense.count(document_id=doc.id) == doc.chunk_count
    assert service.lexical.count(document_id="stray-doc") == 0 and service.registry.unfinished() == []
    hits = service.retriever.retrieve(DEFAULT_TENANT, "Who gave their name to Normandy?", 1, 1000).passages
    assert hits[0].chunk.document_id == doc.id


def test_a_partial_store_is_found_by_its_count(service: Service) -> None:
    doc = service.indexer.add(Upload("long.txt", b"Sentence about rivers and boats. " * 400), DEFAULT_TENANT).document
    assert doc.chunk_count > 1
    first = service.registry.chunk_ids(document_id=doc.id)[:1]
    service.dense.delete_document(DEFAULT_TENANT, doc.id)
    chunks = list(service.registry.chunks(first).values())
    service.dense.upsert(chunks, service.embedder.embed_documents([indexed_text(c) for c in chunks]))
    (difference,) = service.indexer.check()
    assert (difference.store, difference.problem, difference.expected, difference.found) == (
        "dense", "partial", doc.chunk_count, 1,
    )
    service.indexer.repair([difference])
    assert service.indexer.check() == []


def test_rag_check_exits_1_on_a_difference_and_repairs_with_repair(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    service = Service.open(make_settings(data_dir))
    service.warm_up(generation=False)
    doc = service.indexer.add(DOC, DEFAULT_TENANT).document
    service.lexical.delete_document(DEFAULT_TENANT, doc.id)
    service.close()

    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "RAG_MODEL_DIR": str(MODEL_DIR)}
    run = lambda *args: subprocess.run([RAG, "check", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    found = run()
    assert found.returncode == 1 and f"bm25: default/{doc.id}: indexed, but none of its" in found.stdout
    repaired = run("--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "consistent: 1 documents" in repaired.stdout
    assert run().returncode == 0
