"""Benchmark the BM25 analyzer and ``BM25Store``: tokenization, add, rebuild, search, load from disk.

Corpora are synthetic multiples of SciFact's abstracts (row ``i`` repeats abstract ``i % 5183`` under a new
chunk id), queried with SciFact's claims. Run: ``.venv/bin/python scripts/bench_bm25.py --sizes 5000 100000``.
``--database-url`` keeps the rows in PostgreSQL (server mode) instead of SQLite: use a scratch database,
its lexical tables are emptied before each size.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import bm25s
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexing.stores.bm25 import BM25Store
from rag.database.pool import open_pool
from rag.database.schema import upgrade
from rag.database.sql import PostgresSql, Sql
from rag.types import Chunk
from retrieval.tokenize import tokenize

DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


def load_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def bench_tokenize(english: list[str], chinese: list[str]) -> list[tuple[str, str]]:
    rows = []
    for name, texts in (("English (SciFact abstracts)", english), ("Chinese (CMRC 2018 passages)", chinese)):
        tokenize(texts[0])  # jieba loads on first Chinese text; not part of the throughput
        terms, seconds = timed(lambda batch: [tokenize(t) for t in batch], texts)
        chars = sum(map(len, texts))
        rate = (
            f"{len(texts)} texts in {seconds:.2f} s = {len(texts) / seconds:,.0f} texts/s, "
            f"{chars / seconds / 1e6:.2f} M chars/s, {sum(map(len, terms)) / seconds / 1e3:,.0f} k terms/s"
        )
        rows.append((f"tokenize {name}", rate))
    return rows


def bench_size(
    size: int, texts: list[str], queries: list[str], tenants: int, path: Path, rows_in: Sql | None
) -> list[tuple[str, str]]:
    chunks = [Chunk(f"c{i}", f"d{i}", f"t{i % tenants}", 0, "", 0, 0, "", 0) for i in range(size)]
    if rows_in is not None:
        with rows_in.transaction() as sql:
            sql.execute("DELETE FROM lexical_terms")
            sql.execute("DELETE FROM lexical_state")
    store = BM25Store(path, sql=rows_in)
    _, add_s = timed(store.add, chunks, [texts[i % len(texts)] for i in range(size)])
    _, first_s = timed(store.search, "t0", queries[0], 10)
    latencies = [timed(store.search, "t0", q, 10)[1] * 1e3 for q in queries]
    store.close()
    reopened, load_s = timed(lambda: BM25Store(path, sql=rows_in))
    assert reopened.loads == 1 and reopened.rebuilds == 0
    _, after_load_s = timed(reopened.search, "t0", queries[0], 10)
    reopened.close()

    # As the store's rebuild does: from one space-joined string per row, each split on its own.
    unique_rows = [" ".join(tokenize(t)) for t in texts]
    rows = [f"{unique_rows[i % len(texts)]} "[:-1] for i in range(size)]
    reference = bm25s.BM25(k1=1.2, b=0.75)
    _, ref_s = timed(lambda: reference.index([row.split() for row in rows], show_progress=False))
    index_mb = sum(f.stat().st_size for f in (path / "index").iterdir()) / 1e6
    return [
        (f"[{size:,}] add (tokenize + commit)", f"{add_s:.2f} s = {size / add_s:,.0f} chunks/s"),
        (f"[{size:,}] first search: read rows + build + save", f"{first_s:.2f} s"),
        (
            f"[{size:,}] search p50 / p95 ({len(queries)} queries, 1 of {tenants} tenants)",
            f"{np.percentile(latencies, 50):.2f} / {np.percentile(latencies, 95):.2f} ms",
        ),
        (
            f"[{size:,}] open with saved index (load from disk)",
            f"{load_s:.2f} s; next search {after_load_s * 1e3:.1f} ms",
        ),
        (f"[{size:,}] saved index size", f"{index_mb:.0f} MB"),
        (f"[{size:,}] reference: split rows + bm25s BM25.index()", f"{ref_s:.2f} s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 100_000])
    parser.add_argument("--tenants", type=int, default=1, help="chunks are spread round-robin over tenants")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--database-url", default=None, help="rows in this scratch PostgreSQL database")
    args = parser.parse_args()
    pool = None
    if args.database_url:
        upgrade(args.database_url)
        pool = open_pool(args.database_url)

    corpus = load_jsonl(DATASETS / "scifact" / "corpus.jsonl")
    english = [f"{d['title']}\n{d['text']}" for d in corpus]
    chinese = [f"{d['title']}\n{d['text']}" for d in load_jsonl(DATASETS / "cmrc2018" / "corpus.jsonl")]
    queries = [q["question"] for q in load_jsonl(DATASETS / "scifact" / "queries.jsonl")][: args.queries]

    rows = bench_tokenize(english, chinese)
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            rows += bench_size(size, english, queries, args.tenants, Path(tmp), PostgresSql(pool) if pool else None)
    rows.append(("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:,.0f} MB"))
    rows.append(("rows in", "PostgreSQL (server mode)" if pool else "SQLite (embedded)"))
    if pool is not None:
        pool.close()

    width = max(len(name) for name, _ in rows)
    print(f"{'measure'.ljust(width)} | result\n{'-' * width}-+-{'-' * 60}")
    for name, value in rows:
        print(f"{name.ljust(width)} | {value}")


if __name__ == "__main__":
    main()
