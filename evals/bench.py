"""Benchmark: ingest throughput (with the bare embedder as its ceiling) and query latency by stage.

    python -m evals.bench --dataset ../shared/datasets/scifact [--generate 10] [--out bench.json]
    python -m evals.bench --dataset ../shared/datasets/scifact --database-url postgresql://… --generate 0

The corpus is ingested through the real indexer into a fresh data dir; questions go through the real
pipeline. Retrieval latency is measured on every question, generation on the first ``--generate``
(a local LLM on two cores takes seconds per answer). ``--database-url`` runs the same in server mode
on an empty PostgreSQL database (its schema is applied first), for the server-against-embedded ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from evals.corpus_index import corpus_uploads
from evals.datasets import load_dataset
from indexing.indexer import indexed_text
from rag.database.schema import upgrade
from rag.service import Service
from rag.settings import Settings
from rag.types import DEFAULT_TENANT


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _stage_table(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    stages = sorted({stage for row in rows for stage in row})
    return {
        stage: {
            "p50_ms": round(percentile([r[stage] for r in rows if stage in r], 50), 1),
            "p95_ms": round(percentile([r[stage] for r in rows if stage in r], 95), 1),
            "n": sum(stage in r for r in rows),
        }
        for stage in stages
    }


def run(
    dataset_dir: Path,
    data_dir: Path,
    generate: int,
    query_limit: int | None,
    model_dir: Path | None,
    database_url: str | None = None,
) -> dict:
    dataset = load_dataset(dataset_dir)
    if database_url:
        upgrade(database_url)
    settings = Settings(data_dir=data_dir, model_dir=model_dir, database_url=database_url)
    service = Service.open(settings)
    try:
        started = time.perf_counter()
        service.warm_up(generation=generate > 0)
        warm_s = time.perf_counter() - started

        uploads = corpus_uploads(dataset)
        with tqdm(total=len(dataset.corpus), unit="doc", desc="ingest", file=sys.stderr) as bar:
            started = time.perf_counter()
            outcomes = service.indexer.add_many(uploads, DEFAULT_TENANT, on_done=lambda _: bar.update(1))
            ingest_s = time.perf_counter() - started
        indexed = [o.document for o in outcomes if o.status == "indexed"]
        n_chunks = sum(d.chunk_count for d in indexed)

        # The ceiling: the bare embedding model encoding exactly the texts the indexer embedded.
        texts = [indexed_text(c) for c in service.registry.chunks(service.registry.chunk_ids()).values()]
        started = time.perf_counter()
        service.embedder.embed_documents(texts)
        encode_s = time.perf_counter() - started

        questions = dataset.queries[:query_limit] if query_limit else dataset.queries
        retrieval_rows = []
        for query in tqdm(questions, unit="q", desc="retrieve", file=sys.stderr):
            started = time.perf_counter()
            result = service.retriever.retrieve(
                DEFAULT_TENANT, query.question, settings.top_k, settings.token_budget
            )
            retrieval_rows.append({"retrieve": (time.perf_counter() - started) * 1000, **result.stage_ms})
        answer_rows = []
        for query in tqdm(questions[:generate], unit="q", desc="answer", file=sys.stderr):
            answer = service.pipeline.answer(query.question, DEFAULT_TENANT)
            answer_rows.append(
                {**answer.stage_ms, "total": answer.latency_ms, "prompt_tokens": answer.usage.prompt_tokens}
            )
    finally:
        service.close()

    return {
        "dataset": dataset.name,
        "mode": "server (PostgreSQL)" if database_url else "embedded",
        "documents": len(dataset.corpus),
        "documents_indexed": len(indexed),
        "chunks": n_chunks,
        "warm_up_s": round(warm_s, 2),
        "ingest": {
            "seconds": round(ingest_s, 1),
            "docs_per_s": round(len(indexed) / ingest_s, 1),
            "chunks_per_s": round(n_chunks / ingest_s, 1),
            "embedding_ceiling_chunks_per_s": round(len(texts) / encode_s, 1),
            "share_of_ceiling": round((n_chunks / ingest_s) / (len(texts) / encode_s), 3),
        },
        "retrieval": {"questions": len(retrieval_rows), "stages": _stage_table(retrieval_rows)},
        "answer": {
            "questions": len(answer_rows),
            "stages": _stage_table(
                [{k: v for k, v in r.items() if k != "prompt_tokens"} for r in answer_rows]
            ),
            "prompt_tokens_mean": round(statistics.mean(r["prompt_tokens"] for r in answer_rows), 1)
            if answer_rows
            else None,
        },
    }


def print_report(report: dict) -> None:
    ingest = report["ingest"]
    print(
        f"\n{report['dataset']} ({report['mode']}): {report['documents_indexed']}/{report['documents']} documents,"
        f" {report['chunks']} chunks"
    )
    print(f"warm-up (models loaded): {report['warm_up_s']} s")
    print(
        f"ingest: {ingest['seconds']} s, {ingest['docs_per_s']} docs/s, {ingest['chunks_per_s']} chunks/s "
        f"(bare embedder on the same chunks: {ingest['embedding_ceiling_chunks_per_s']} chunks/s; "
        f"{ingest['share_of_ceiling']:.0%} of the ceiling)"
    )
    for section in ("retrieval", "answer"):
        print(f"\n{section} latency over {report[section]['questions']} questions")
        print(f"  {'stage':24} {'p50 ms':>10} {'p95 ms':>10} {'n':>6}")
        for stage, row in report[section]["stages"].items():
            print(f"  {stage:24} {row['p50_ms']:>10} {row['p95_ms']:>10} {row['n']:>6}")
    if report["answer"]["prompt_tokens_mean"] is not None:
        print(f"  mean prompt tokens: {report['answer']['prompt_tokens_mean']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", type=Path, required=True, help="a folder in the shared dataset format")
    parser.add_argument("--generate", type=int, default=10, help="questions also answered by the LLM")
    parser.add_argument("--limit", type=int, default=None, help="at most this many questions")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a fresh temporary dir")
    parser.add_argument("--model-dir", type=Path, default=Path("data/models"), help="assembled GGUF files")
    parser.add_argument("--out", type=Path, default=None, help="also write the report as JSON")
    parser.add_argument("--database-url", default=None, help="server mode on this empty PostgreSQL database")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        report = run(
            args.dataset,
            args.data_dir or Path(tmp),
            args.generate,
            args.limit,
            args.model_dir.resolve(),
            args.database_url,
        )
    print_report(report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
