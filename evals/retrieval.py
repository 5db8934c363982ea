"""Retrieval eval: every method on one dataset, in one process, through the service's own retriever.

    rag eval retrieval --dataset ../shared/datasets/scifact [--limit N] --out scifact.json

Methods: ``bm25``, ``dense``, ``rrf`` (equal weights), ``cc_0.3``/``cc_0.5``/``cc_0.7`` (fixed convex
combinations of min-max normalized scores, the number being the weight on dense), ``hybrid`` (per-query
weighted), ``oracle`` (per query the better of bm25 and dense by nDCG@10), ``hybrid_rerank`` (adaptive
depth), ``hybrid_rerank_d20`` (the same rerank at a fixed depth of 20) and ``hybrid_rerank_trim``
(``hybrid_rerank`` trimmed to a token budget), ``hybrid_kg`` (the fusion with the knowledge graph's list
as a third one, ``HybridRetriever.with_graph``) and ``hybrid_kg_rerank``. ``all_gold@10`` is the share
of questions whose every gold document is in the top 10 documents. Metrics are on documents: a document ranks where its best
chunk does; ``gold_doc_ids`` are the relevant ones. nDCG@10, Recall@5, Recall@20 and MRR@10 come from
ir-measures.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import ir_measures
from ir_measures import RR, R, nDCG
from tqdm import tqdm

from evals.bench import percentile
from evals.corpus_index import document_ids_by_corpus_id, indexed_corpus
from evals.datasets import Dataset, Query, load_dataset
from rag.service import Service
from rag.settings import Settings
from rag.tokens import count_tokens
from rag.types import DEFAULT_TENANT, Chunk, ScoredId
from retrieval.budget import TrimParams
from retrieval.fusion import convex_combination, reciprocal_rank_fusion
from retrieval.hybrid import Candidates, HybridRetriever

MEASURES = {"ndcg@10": nDCG @ 10, "recall@5": R @ 5, "recall@20": R @ 20, "mrr@10": RR @ 10}
FIXED_DENSE_WEIGHTS = (0.3, 0.5, 0.7)
TRIM_TOP_K = 10
DEFAULT_BUDGET = 1000


def doc_run(ranking: Iterable[ScoredId], doc_of: dict[str, str]) -> dict[str, float]:
    """A chunk ranking as a document run: each document at its best chunk's rank (scores strictly
    decreasing, so ir-measures never breaks a tie by document id)."""
    run: dict[str, float] = {}
    for hit in ranking:
        doc = doc_of.get(hit.chunk_id)
        if doc is not None and doc not in run:
            run[doc] = float(-len(run))
    return run


def all_gold_at(run: dict[str, float], gold: Sequence[str], k: int) -> float:
    """1 when every gold document is among the run's top ``k`` documents (what a multi-hop question
    needs: both halves of its evidence), else 0."""
    top = set(sorted(run, key=lambda doc: -run[doc])[:k])
    return float(bool(gold) and set(gold) <= top)


def per_query_measures(qrels: dict, runs: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``{query id: {metric: value}}``; a query with an empty run scores 0 on every metric."""
    names = {str(m): name for name, m in MEASURES.items()}
    out = {qid: {name: 0.0 for name in MEASURES} for qid in runs}
    nonempty = {qid: run for qid, run in runs.items() if run}
    for metric in ir_measures.iter_calc(list(MEASURES.values()), qrels, nonempty):
        out[metric.query_id][names[str(metric.measure)]] = metric.value
    return out


@dataclass
class MethodResult:
    runs: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_ms: list[float] = field(default_factory=list)
    pairs: list[int] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)


def trim_stats(
    retriever: HybridRetriever,
    candidates: Candidates,
    ranking: Sequence[ScoredId],
    chunks: dict[str, Chunk],
    doc_of: dict[str, str],
    query: Query,
    budget: int,
    params: TrimParams | None = None,
) -> dict[str, float]:
    """Tokens and gold documents (and, where the dataset has them, answer strings) in the untrimmed top 10
    and in what the trim keeps of it."""
    top = [chunks[h.chunk_id] for h in ranking[:TRIM_TOP_K] if h.chunk_id in chunks]
    kept = retriever.trim(candidates, ranking, chunks, TRIM_TOP_K, budget, params)
    gold = set(query.gold_doc_ids)
    gold_top = {doc_of[c.id] for c in top} & gold
    gold_kept = {doc_of[p.chunk.id] for p in kept} & gold
    stats = {
        "tokens_top10": float(sum(count_tokens(c.text) for c in top)),
        "tokens_kept": float(sum(count_tokens(p.text) for p in kept)),
        "gold_in_top10": float(len(gold_top)),
        "gold_kept": float(len(gold_kept & gold_top)),
    }
    if query.answers:
        context_top = "\n".join(c.text for c in top)
        context_kept = "\n".join(p.text for p in kept)
        if any(a in context_top for a in query.answers):
            stats["answer_in_top10"] = 1.0
            stats["answer_kept"] = float(any(a in context_kept for a in query.answers))
    return stats


def evaluate(
    service: Service,
    dataset: Dataset,
    limit: int | None = None,
    budget: int = DEFAULT_BUDGET,
    dump: Path | None = None,
) -> dict:
    retriever = service.retriever
    corpus_of = document_ids_by_corpus_id(service)
    all_chunks = service.registry.chunks(service.registry.chunk_ids(DEFAULT_TENANT))
    doc_of = {cid: corpus_of[c.document_id] for cid, c in all_chunks.items()}
    queries = dataset.queries[:limit] if limit else dataset.queries
    qrels = {q.id: {doc: 1 for doc in q.gold_doc_ids} for q in queries}
    methods: dict[str, MethodResult] = {}
    fixed20 = replace(retriever.rerank_params, max_pairs=20, stop_rank=10**6, min_fused=0.0)
    dump_handle = dump.open("w") if dump else None

    def record(name: str, qid: str, ranking: Iterable[ScoredId], ms: float, pairs: int | None = None) -> None:
        result = methods.setdefault(name, MethodResult())
        result.runs[qid] = doc_run(ranking, doc_of)
        result.latency_ms.append(ms)
        if pairs is not None:
            result.pairs.append(pairs)

    model = service.reranker
    overhead: list[tuple[float, float]] = []  # (rerank stage s, of which inside the ONNX model s)
    for query in tqdm(queries, unit="q", desc=f"eval {dataset.name}", file=sys.stderr):
        qid = query.id
        candidates = retriever.candidates(DEFAULT_TENANT, query.question)
        record("bm25", qid, candidates.lexical, candidates.stage_ms["bm25"])
        record("dense", qid, candidates.dense, candidates.stage_ms["dense"])
        retrieve_ms = sum(candidates.stage_ms.values())
        started = time.perf_counter()
        rrf = reciprocal_rank_fusion([candidates.lexical, candidates.dense])
        record("rrf", qid, rrf, retrieve_ms + (time.perf_counter() - started) * 1000)
        for w in FIXED_DENSE_WEIGHTS:
            started = time.perf_counter()
            fused = convex_combination([candidates.lexical, candidates.dense], [1 - w, w])
            record(f"cc_{w}", qid, fused, retrieve_ms + (time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        weights = retriever.weigh(candidates)
        fused = retriever.fuse(candidates, weights)
        hybrid_ms = retrieve_ms + (time.perf_counter() - started) * 1000
        record("hybrid", qid, fused, hybrid_ms)
        chunks = {h.chunk_id: all_chunks[h.chunk_id] for h in fused if h.chunk_id in all_chunks}

        started = time.perf_counter()
        kg_fused, _ = retriever.with_graph(candidates, fused, weights)
        kg_ms = hybrid_ms + (time.perf_counter() - started) * 1000
        record("hybrid_kg", qid, kg_fused, kg_ms)
        kg_chunks = {h.chunk_id: all_chunks[h.chunk_id] for h in kg_fused if h.chunk_id in all_chunks}
        started = time.perf_counter()
        kg_reranked = retriever.rerank(candidates, kg_fused, kg_chunks, weights)
        record(
            "hybrid_kg_rerank", qid, kg_reranked.ranking, kg_ms + (time.perf_counter() - started) * 1000, kg_reranked.pairs
        )

        model_before = model.model_seconds if model else 0.0
        started = time.perf_counter()
        reranked = retriever.rerank(candidates, fused, chunks, weights)
        rerank_s = time.perf_counter() - started
        if reranked.pairs:
            overhead.append((rerank_s, (model.model_seconds if model else 0.0) - model_before))
        record("hybrid_rerank", qid, reranked.ranking, hybrid_ms + rerank_s * 1000, reranked.pairs)
        methods["hybrid_rerank"].extra.setdefault("rerank_ms", []).append(rerank_s * 1000)

        started = time.perf_counter()
        deep = retriever.rerank(candidates, fused, chunks, weights, fixed20)
        record(
            "hybrid_rerank_d20",
            qid,
            deep.ranking,
            hybrid_ms + (time.perf_counter() - started) * 1000,
            deep.pairs,
        )

        started = time.perf_counter()
        stats = trim_stats(retriever, candidates, reranked.ranking, chunks, doc_of, query, budget)
        trim_ms = (time.perf_counter() - started) * 1000
        record(
            "hybrid_rerank_trim", qid, reranked.ranking, hybrid_ms + rerank_s * 1000 + trim_ms, reranked.pairs
        )
        for key, value in stats.items():
            methods["hybrid_rerank_trim"].extra.setdefault(key, []).append(value)

        if dump_handle:
            dump_handle.write(json.dumps(_dump_row(query, candidates, deep.logits, doc_of)) + "\n")
    if dump_handle:
        dump_handle.close()
    return _report(dataset, queries, qrels, methods, overhead, budget)


def _dump_row(
    query: Query, candidates: Candidates, deep_logits: dict[str, float], doc_of: dict[str, str]
) -> dict:
    """What ``evals/fit_weighting.py`` needs to refit offline with the service's own code: both
    retrievers' lists and complete score maps, and the cross-encoder's logits for the fused top 20."""
    return {
        "id": query.id,
        "question": query.question,
        "gold": list(query.gold_doc_ids),
        "lexical": [[h.chunk_id, h.score] for h in candidates.lexical],
        "dense": [[h.chunk_id, h.score] for h in candidates.dense],
        "lexical_scores": candidates.lexical_scores,
        "dense_scores": candidates.dense_scores,
        "doc_of": {c: doc_of.get(c) for c in candidates.lexical_scores},
        "rerank_logits": deep_logits,
    }


def _report(dataset, queries, qrels, methods, overhead, budget) -> dict:
    per_method = {name: per_query_measures(qrels, result.runs) for name, result in methods.items()}
    # The oracle picks, per query, whichever single retriever has the better nDCG@10.
    oracle_runs = {
        q.id: methods[
            "bm25" if per_method["bm25"][q.id]["ndcg@10"] >= per_method["dense"][q.id]["ndcg@10"] else "dense"
        ].runs[q.id]
        for q in queries
    }
    per_method["oracle"] = per_query_measures(qrels, oracle_runs)
    report: dict = {"dataset": dataset.name, "n_queries": len(queries), "token_budget": budget, "methods": {}}
    order = [
        "bm25",
        "dense",
        "rrf",
        *(f"cc_{w}" for w in FIXED_DENSE_WEIGHTS),
        "hybrid",
        "oracle",
        "hybrid_rerank",
        "hybrid_rerank_d20",
        "hybrid_rerank_trim",
        "hybrid_kg",
        "hybrid_kg_rerank",
    ]
    for name in order:
        values = per_method[name]
        row = {metric: round(statistics.mean(v[metric] for v in values.values()), 4) for metric in MEASURES}
        runs = oracle_runs if name == "oracle" else methods[name].runs
        row["all_gold@10"] = round(statistics.mean(all_gold_at(runs[q.id], q.gold_doc_ids, 10) for q in queries), 4)
        result = methods.get(name)
        if result is not None:
            row["latency_ms_p50"] = round(percentile(result.latency_ms, 50), 2)
            row["latency_ms_p95"] = round(percentile(result.latency_ms, 95), 2)
            if result.pairs:
                row["pairs_scored_mean"] = round(statistics.mean(result.pairs), 2)
            if "rerank_ms" in result.extra:
                row["rerank_ms_p50"] = round(percentile(result.extra["rerank_ms"], 50), 2)
        report["methods"][name] = row
    extra = methods["hybrid_rerank_trim"].extra
    trim = report["methods"]["hybrid_rerank_trim"]
    gold_top = sum(extra["gold_in_top10"])
    trim["gold_kept_share"] = round(sum(extra["gold_kept"]) / gold_top, 4) if gold_top else None
    trim["tokens_kept_mean"] = round(statistics.mean(extra["tokens_kept"]), 1)
    trim["tokens_top10_mean"] = round(statistics.mean(extra["tokens_top10"]), 1)
    trim["token_share"] = round(sum(extra["tokens_kept"]) / max(1.0, sum(extra["tokens_top10"])), 4)
    if extra.get("answer_in_top10"):
        trim["answer_kept_share"] = round(sum(extra["answer_kept"]) / len(extra["answer_in_top10"]), 4)
    if overhead:
        stage_s, model_s = (sum(col) for col in zip(*overhead))
        report["rerank_overhead"] = {
            "stage_over_model": round(stage_s / model_s, 3) if model_s else None,
            "queries_reranked": len(overhead),
        }
    return report


def print_table(report: dict) -> None:
    print(
        f"\n{report['dataset']}: {report['n_queries']} queries (trim budget {report['token_budget']} tokens)"
    )
    head = (
        f"  {'method':20} {'nDCG@10':>8} {'R@5':>7} {'R@20':>7} {'MRR@10':>7} {'AllG@10':>7} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'pairs':>6}"
    )
    print(head)
    for name, row in report["methods"].items():
        pairs = row.get("pairs_scored_mean")
        print(
            f"  {name:20} {row['ndcg@10']:>8.4f} {row['recall@5']:>7.4f} {row['recall@20']:>7.4f} "
            f"{row['mrr@10']:>7.4f} {row['all_gold@10']:>7.4f} {row.get('latency_ms_p50', float('nan')):>8.1f} "
            f"{row.get('latency_ms_p95', float('nan')):>8.1f} {'' if pairs is None else pairs:>6}"
        )
    trim = report["methods"]["hybrid_rerank_trim"]
    print(
        f"  trim: gold documents kept {trim['gold_kept_share']} of those in the untrimmed top-10; "
        f"tokens {trim['tokens_kept_mean']} of {trim['tokens_top10_mean']} ({trim['token_share']:.1%})"
        + (f"; answer string kept {trim['answer_kept_share']}" if "answer_kept_share" in trim else "")
    )
    if "rerank_overhead" in report:
        print(f"  rerank stage / bare ONNX model time: {report['rerank_overhead']['stage_over_model']}")


def run(
    dataset_dir: Path,
    index_root: Path,
    settings: Settings,
    limit: int | None = None,
    budget: int = DEFAULT_BUDGET,
    dump: Path | None = None,
) -> dict:
    dataset = load_dataset(dataset_dir)
    with indexed_corpus(dataset, index_root, settings) as service:
        return evaluate(service, dataset, limit, budget, dump)
