"""Cache eval on question pairs, through the service's own matching code.

    rag eval cache --pairs ../shared/datasets/cache_pairs/qqp/pairs.jsonl --mode pairwise --out qqp.json

``pairwise``: for each pair, a cache holding only ``q1`` is asked ``q2``: the answer is the cache's
matching rule (``rag.cache.semantic.decide``: similarity threshold, hard guard, learned verifier) on the two
questions and their embeddings' similarity. A hit on a label-1 pair is correct, on a label-0 pair wrong. ``populated``: a real ``SemanticCache`` (the default
vector store) holds every ``q1`` at once, then every ``q2`` is looked up; a hit is correct only when it
returns that pair's own ``q1`` (by text: some ``q1`` texts occur in several pairs). ``--fill-to N`` adds other pair sets' questions as extra entries first,
so lookup latency is measured at N entries.

The operating point is the configured similarity threshold (``RAG_CACHE_THRESHOLD``) with the verifier's
fitted threshold (``rag/cache/params/cache_verifier.json``). ``curve`` varies the *verifier* threshold at that
similarity threshold; ``cosine_curve`` varies the similarity threshold for embedding similarity alone and
for the lexical guard without the verifier (the rule before it), for comparison. ``cosine_same_recall``
is the most precise cosine threshold whose recall is at least the operating point's.
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
from rag.cache.semantic import CachedAnswer, SemanticCache, decide, embedded_entries
from rag.cache.verifier import load_verifier
from rag.settings import Settings
from rag.types import DEFAULT_TENANT

THRESHOLDS = (0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)
VERIFIER_THRESHOLDS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


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


def _cosine_same_recall(
    similarity: np.ndarray,
    correct_if_hit: np.ndarray,
    positives: int,
    negatives: np.ndarray | None,
    recall: float | None,
) -> dict | None:
    """Embedding similarity alone: the most precise threshold whose recall reaches ``recall``."""
    if recall is None:
        return None
    best = None
    for t in np.arange(0.5, 1.0001, 0.0025):
        hit = similarity >= t
        row = _summary(
            int((hit & correct_if_hit).sum()),
            int(hit.sum()),
            positives,
            int((hit & negatives).sum()) if negatives is not None else 0,
            int(negatives.sum()) if negatives is not None else 0,
        )
        if (row["recall"] or 0) >= recall:
            best = {"threshold": round(float(t), 4), **row}
    return best


def pairwise(pairs: list[dict], embedder: SentenceTransformerEmbedder, threshold: float) -> dict:
    first = embedder.embed_documents([p["q1"] for p in pairs])
    second = embedder.embed_documents([p["q2"] for p in pairs])
    similarity = (first * second).sum(axis=1)
    labels = np.array([p["label"] for p in pairs])
    positives, negatives = int((labels == 1).sum()), int((labels == 0).sum())
    verifier = load_verifier()
    fitted = verifier.threshold
    timings, curve, cosine_curve = [], [], []

    def summary(hits: np.ndarray) -> dict:
        return _summary(
            int((hits & (labels == 1)).sum()),
            int(hits.sum()),
            positives,
            int((hits & (labels == 0)).sum()),
            negatives,
        )

    for v in sorted(set(VERIFIER_THRESHOLDS) | {fitted}):
        hits = np.zeros(len(pairs), bool)
        for i, pair in enumerate(pairs):
            started = time.perf_counter()
            hits[i] = decide(
                float(similarity[i]), pair["q2"], pair["q1"], threshold, verifier, verifier_threshold=v
            ).same
            if v == fitted:
                timings.append((time.perf_counter() - started) * 1000)
        curve.append({"verifier_threshold": v, **summary(hits)})
    for t in THRESHOLDS:
        guard = np.array(
            [decide(float(s), p["q2"], p["q1"], t, verifier=None).same for s, p in zip(similarity, pairs)]
        )
        cosine_curve.append(
            {"threshold": t, "cosine_only": summary(similarity >= t), "guard_only": summary(guard)}
        )
    at = next(row for row in curve if row["verifier_threshold"] == fitted)
    return {
        **{k: at[k] for k in ("hits", "precision", "recall", "false_hit_rate")},
        "verifier_threshold": fitted,
        "cosine_same_recall": _cosine_same_recall(
            similarity, labels == 1, positives, labels == 0, at["recall"]
        ),
        "curve": curve,
        "cosine_curve": cosine_curve,
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
        cache = SemanticCache(
            embedded_entries(Path(tmp) / "cache.sqlite"), index, threshold, max_entries=10**7, verifier=load_verifier()
        )
        try:
            entries = fill + [p["q1"] for p in pairs]
            vectors = embedder.embed_documents(entries)
            for start in tqdm(range(0, len(entries), 1000), desc="populate", unit="k", file=sys.stderr):
                batch = zip(entries[start : start + 1000], vectors[start : start + 1000])
                cache.store_many(DEFAULT_TENANT, [(q, v, CachedAnswer(q, ()), False) for q, v in batch])
            queries = embedder.embed_documents([p["q2"] for p in pairs])
            # Embedding similarity alone, for comparison: the nearest cached question, no guard.
            nearest = [cache.candidates(DEFAULT_TENANT, vector, 1) for vector in queries]
            fitted = cache.verifier.threshold if cache.verifier is not None else None
            timings, curve = [], []
            for v in sorted(set(VERIFIER_THRESHOLDS) | {fitted}):
                correct = hits = 0
                for pair, vector in zip(pairs, queries):
                    started = time.perf_counter()
                    result = cache.lookup(DEFAULT_TENANT, pair["q2"], vector, verifier_threshold=v)
                    if v == fitted:
                        timings.append((time.perf_counter() - started) * 1000)
                    if result.hit:
                        hits += 1
                        # Correct when it returns this pair's q1 (the set repeats some q1 texts verbatim).
                        correct += result.cached_question == pair["q1"]
                curve.append({"verifier_threshold": v, **_summary(correct, hits, len(pairs), 0, 0)})
            cosine_curve = []
            top = np.array([n[0].similarity if n else -1.0 for n in nearest])
            own = np.array([bool(n) and n[0].question == pair["q1"] for n, pair in zip(nearest, pairs)])
            for t in THRESHOLDS:
                hit = top >= t
                cosine_curve.append(
                    {
                        "threshold": t,
                        "cosine_only": _summary(int((hit & own).sum()), int(hit.sum()), len(pairs), 0, 0),
                    }
                )
            at = next(row for row in curve if row["verifier_threshold"] == fitted)
            same_recall = _cosine_same_recall(top, own, len(pairs), None, at["recall"])
            size = cache.count()
        finally:
            cache.close()
    return {
        **{k: at[k] for k in ("hits", "precision", "recall", "false_hit_rate")},
        "verifier_threshold": fitted,
        "cosine_same_recall": same_recall,
        "curve": curve,
        "cosine_curve": cosine_curve,
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
        "curve_over": "verifier_threshold (at the similarity threshold); cosine_curve: similarity threshold",
        **result,
        "lookup_ms_p50": round(percentile(timings, 50), 3),
        "lookup_ms_p99": round(percentile(timings, 99), 3),
    }


def print_report(report: dict) -> None:
    print(
        f"\n{report['pairs']} ({report['mode']}, n={report['n']}, similarity >= {report['threshold']}, "
        f"verifier >= {report['verifier_threshold']}"
        + (f", {report['entries']} entries" if "entries" in report else "")
        + ")"
    )
    print(
        f"  precision {report['precision']}  recall {report['recall']}  false-hit rate {report['false_hit_rate']}  "
        f"lookup p50 {report['lookup_ms_p50']} ms  p99 {report['lookup_ms_p99']} ms"
    )
    cos = report.get("cosine_same_recall") or {}
    print(
        f"  cosine alone at the same recall: threshold {cos.get('threshold')} precision {cos.get('precision')} recall {cos.get('recall')}"
    )
    print(f"  {'verifier':>9} {'hits':>6} {'precision':>9} {'recall':>7} {'false hits':>10}")
    for row in report["curve"]:
        print(
            f"  {row['verifier_threshold']:>9} {row['hits']:>6} {row['precision']!s:>9} {row['recall']!s:>7} "
            f"{row['false_hit_rate']!s:>10}"
        )
    print(
        f"  {'cosine':>9}   cosine only: precision recall"
        + ("   guard, no verifier: precision recall" if report["mode"] == "pairwise" else "")
    )
    for row in report["cosine_curve"]:
        cos, guard = row["cosine_only"], row.get("guard_only")
        print(
            f"  {row['threshold']:>9}   {cos['precision']!s:>9} {cos['recall']!s:>7}"
            + (f"   {guard['precision']!s:>9} {guard['recall']!s:>7}" if guard else "")
        )
