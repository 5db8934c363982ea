"""Cache eval on question pairs, through the service's own matching code.

    rag eval cache --pairs ../shared/datasets/cache_pairs/qqp/pairs.jsonl --mode pairwise --out qqp.json

``pairwise``: for each pair, a cache holding only ``q1`` is asked ``q2``: the answer is the cache's
matching rule (``rag.cache.decide``) on the two questions and their embeddings' similarity. A hit on a
label-1 pair is correct, on a label-0 pair wrong. ``populated``: a real ``SemanticCache`` (the default
vector store) holds every ``q1`` at once, then every ``q2`` is looked up; a hit is correct only when it
returns that pair's own ``q1`` (by text: some ``q1`` texts occur in several pairs). ``--fill-to N`` adds other pair sets' questions as extra entries first,
so lookup latency is measured at N entries.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evals.bench import percentile
from indexing.embedding import SentenceTransformerEmbedder
from indexing.stores.dense_factory import open_dense_store
from rag.cache import CachedAnswer, SemanticCache, decide
from rag.settings import Settings
from rag.types import DEFAULT_TENANT

THRESHOLDS = (0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)


def load_pairs(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _summary(correct: int, hits: int, positives: int, wrong_negative: int, negatives: int) -> dict:
    return {
        "hits": hits,
        "precision": round(correct / hits, 4) if hits else None,
        "recall": round(correct / positives, 4) if positives else None,
        "false_hit_rate": round(wrong_negative / negatives, 4) if negatives else None,
    }


def pairwise(pairs: list[dict], embedder: SentenceTransformerEmbedder, threshold: float) -> dict:
    first = embedder.embed_documents([p["q1"] for p in pairs])
    second = embedder.embed_documents([p["q2"] for p in pairs])
    similarity = (first * second).sum(axis=1)
    labels = np.array([p["label"] for p in pairs])
    timings, curve = [], []
    decisions = {}
    for t in THRESHOLDS + ((threshold,) if threshold not in THRESHOLDS else ()):
        hits = np.zeros(len(pairs), bool)
        for i, pair in enumerate(pairs):
            started = time.perf_counter()
            hits[i] = decide(float(similarity[i]), pair["q2"], pair["q1"], t).same
            if t == threshold:
                timings.append((time.perf_counter() - started) * 1000)
        decisions[t] = hits
        row = _summary(
            int((hits & (labels == 1)).sum()),
            int(hits.sum()),
            int((labels == 1).sum()),
            int((hits & (labels == 0)).sum()),
            int((labels == 0).sum()),
        )
        curve.append(
            {
                "threshold": t,
                **row,
                "cosine_only": _summary(
                    int(((similarity >= t) & (labels == 1)).sum()),
                    int((similarity >= t).sum()),
                    int((labels == 1).sum()),
                    int(((similarity >= t) & (labels == 0)).sum()),
                    int((labels == 0).sum()),
                ),
            }
        )
    at = next(row for row in curve if row["threshold"] == threshold)
    return {
        **{k: at[k] for k in ("precision", "recall", "false_hit_rate")},
        "curve": curve,
        "timings": timings,
    }


def populated(
    pairs: list[dict],
    embedder: SentenceTransformerEmbedder,
    settings: Settings,
    fill: list[str],
    threshold: float,
) -> dict:
    with tempfile.TemporaryDirectory(prefix="rag-cache-eval-") as tmp:
        index = open_dense_store(Path(tmp), "answer_cache", embedder.dim, None, None)
        cache = SemanticCache(Path(tmp) / "cache.sqlite", index, threshold, max_entries=10**7)
        try:
            entries = fill + [p["q1"] for p in pairs]
            vectors = embedder.embed_documents(entries)
            for question, vector in tqdm(list(zip(entries, vectors)), desc="populate", file=sys.stderr):
                cache.store(DEFAULT_TENANT, question, vector, CachedAnswer(question, ()), abstained=False)
            queries = embedder.embed_documents([p["q2"] for p in pairs])
            # Embedding similarity alone, for comparison: the nearest cached question, no guard.
            nearest = [cache.candidates(DEFAULT_TENANT, vector, 1) for vector in queries]
            timings, curve = [], []
            for t in THRESHOLDS + ((threshold,) if threshold not in THRESHOLDS else ()):
                correct = hits = 0
                for i, (pair, vector) in enumerate(zip(pairs, queries)):
                    started = time.perf_counter()
                    result = cache.lookup(DEFAULT_TENANT, pair["q2"], vector, threshold=t)
                    if t == threshold:
                        timings.append((time.perf_counter() - started) * 1000)
                    if result.hit:
                        hits += 1
                        # Correct when it returns this pair's q1 (the set repeats some q1 texts verbatim).
                        correct += result.cached_question == pair["q1"]
                near = [(n[0].similarity >= t, n[0].question == pair["q1"]) for n, pair in zip(nearest, pairs) if n]
                cosine = _summary(sum(hit and own for hit, own in near), sum(hit for hit, _ in near), len(pairs), 0, 0)
                curve.append({"threshold": t, **_summary(correct, hits, len(pairs), 0, 0), "cosine_only": cosine})
            size = cache.count()
        finally:
            cache.close()
    at = next(row for row in curve if row["threshold"] == threshold)
    return {
        "precision": at["precision"],
        "recall": at["recall"],
        "false_hit_rate": None,
        "curve": curve,
        "timings": timings,
        "entries": size,
    }


def run(pairs_path: Path, mode: str, settings: Settings, fill_to: int = 0) -> dict:
    pairs = load_pairs(pairs_path)
    embedder = SentenceTransformerEmbedder(
        settings.embedding_model, settings.embedding_batch_size, settings.llm_threads
    )
    embedder.warm_up()
    if mode == "pairwise":
        result = pairwise(pairs, embedder, settings.cache_threshold)
    else:
        own = {p["q1"] for p in pairs} | {p["q2"] for p in pairs}
        fill = []
        for other in sorted(pairs_path.parent.parent.glob("*/pairs.jsonl")):
            for pair in load_pairs(other):
                for q in (pair["q1"], pair["q2"]):
                    if len(fill) < max(0, fill_to - len(pairs)) and q not in own:
                        fill.append(q)
                        own.add(q)
        result = populated(pairs, embedder, settings, fill, settings.cache_threshold)
    timings = result.pop("timings")
    return {
        "pairs": pairs_path.parent.name,
        "mode": mode,
        "n": len(pairs),
        "threshold": settings.cache_threshold,
        **result,
        "lookup_ms_p50": round(percentile(timings, 50), 3),
        "lookup_ms_p99": round(percentile(timings, 99), 3),
    }


def print_report(report: dict) -> None:
    print(
        f"\n{report['pairs']} ({report['mode']}, n={report['n']}, threshold {report['threshold']}"
        + (f", {report['entries']} entries" if "entries" in report else "")
        + ")"
    )
    print(
        f"  precision {report['precision']}  recall {report['recall']}  false-hit rate {report['false_hit_rate']}  "
        f"lookup p50 {report['lookup_ms_p50']} ms  p99 {report['lookup_ms_p99']} ms"
    )
    print(
        f"  {'threshold':>9} {'hits':>6} {'precision':>9} {'recall':>7} {'false hits':>10}   cosine only: precision recall"
    )
    for row in report["curve"]:
        cos = row.get("cosine_only") or {}
        print(
            f"  {row['threshold']:>9} {row['hits']:>6} {row['precision']!s:>9} {row['recall']!s:>7} "
            f"{row['false_hit_rate']!s:>10}   {cos.get('precision')!s:>9} {cos.get('recall')!s:>7}"
        )
