"""Fits the answer cache's verifier (``rag/cache/params/cache_verifier.json``) on the DEV question pairs.

    python -m evals.fit_cache [--pairs ../shared/datasets/cache_pairs] [--similarity 0.8] [--write]

Every pair of the three DEV sets (qqp, paws_wiki, gptcache_mock) goes through the cache's own rule
(``rag.cache.semantic.decide``'s steps): the same text after normalization is a hit; otherwise a pair is *scored*
only when its similarity reaches ``--similarity`` and ``rag.cache.guard.hard_guard`` passes, and the
verifier is fitted on those scored pairs (features from ``rag.cache.verifier.features``, the code the
service runs). gptcache_mock holds positives only (its q2 against its own q1); it teaches the model that
a rewritten sentence is still the same one, and its recall is a check, not a precision.

Cross-validation: ``--folds`` grouped folds, where a group is a connected component of pairs sharing a
(normalized) text, so no question sits on both sides of a split. The operating threshold is chosen on
the held-out (out-of-fold) probabilities: the highest threshold at which the human-labelled sets still
reach their recall targets plus ``--slack`` (qqp 0.30, paws_wiki 0.10, +0.02) — precision rises with the
threshold, so that is the most precise setting that keeps the hit rates the issue asks for. gptcache_mock
is checked as the populated eval runs it (nearest entry only, ambiguity margin, own q1 or wrong), and
the ambiguity margin (``--margin``, a populated cache's only extra rule) is set by hand from the sweep
printed last, on that set: the only DEV data with a populated cache. The final model is fitted on all
the pairs; the table shows its DEV (fitted) numbers beside the cross-validated ones.

The question embeddings are cached under ``data/cache_fit/`` (gitignored), keyed by the texts, so a
refit only recomputes features. Needs scikit-learn (installed with sentence-transformers) for fitting;
the service reads the JSON with no scikit-learn at all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from rag.cache.guard import hard_guard
from rag.cache.semantic import normalize
from rag.cache.verifier import FEATURES, VERIFIER_FILE, Verifier, features

SETS = ("qqp", "paws_wiki", "gptcache_mock")
RECALL_TARGETS = {"qqp": 0.30, "paws_wiki": 0.10, "gptcache_mock": 0.85}
# The threshold is chosen on the human-labelled sets; gptcache_mock (ChatGPT paraphrases, positives only)
# is reported beside. Asking it for 0.85 too left no threshold at all (see docs/results/cache.md).
CHOOSE_ON = ("qqp", "paws_wiki")
GRID = tuple(round(x, 3) for x in np.arange(0.05, 0.991, 0.01))
BAGS = 5
MODEL = {"n_estimators": 200, "max_depth": 3, "learning_rate": 0.1, "subsample": 0.8, "min_samples_leaf": 20}


def load_pairs(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def embeddings(name: str, texts: list[str], cache_dir: Path) -> dict[str, np.ndarray]:
    """Each text's embedding by the service's embedder, computed once and kept under ``cache_dir``."""
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache_dir / f"{name}-{key}.npy"
    if path.exists():
        vectors = np.load(path)
    else:
        from indexing.embedding import SentenceTransformerEmbedder
        from rag.settings import get_settings

        settings = get_settings()
        embedder = SentenceTransformerEmbedder(
            settings.embedding_model, settings.embedding_batch_size, settings.llm_threads
        )
        embedder.warm_up()
        vectors = embedder.embed_documents(texts).astype(np.float32)
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return dict(zip(texts, vectors))


def groups(pairs: list[dict]) -> np.ndarray:
    """Connected components of pairs that share a normalized text."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for pair in pairs:
        a, b = find(normalize(pair["q1"])), find(normalize(pair["q2"]))
        if a != b:
            parent[a] = b
    roots: dict[str, int] = {}
    return np.array([roots.setdefault(find(normalize(p["q1"])), len(roots)) for p in pairs])


def prepare(pairs_dir: Path, cache_dir: Path, similarity_threshold: float) -> dict[str, dict]:
    data = {}
    for name in SETS:
        pairs = load_pairs(pairs_dir / name / "pairs.jsonl")
        vectors = embeddings(name, sorted({p[k] for p in pairs for k in ("q1", "q2")}), cache_dir)
        # new question = q2, cached question = q1, as in ``rag eval cache``
        sim = np.array([float(vectors[p["q1"]] @ vectors[p["q2"]]) for p in pairs])
        exact = np.array([normalize(p["q1"]) == normalize(p["q2"]) for p in pairs])
        hard = np.array([hard_guard(p["q2"], p["q1"]).same for p in pairs])
        data[name] = {
            "pairs": pairs,
            "vectors": vectors,
            "y": np.array([p["label"] for p in pairs]),
            "sim": sim,
            "exact": exact,
            "scored": ~exact & hard & (sim >= similarity_threshold),
            "X": np.array([features(p["q2"], p["q1"], s) for p, s in zip(pairs, sim)]),
            "groups": groups(pairs),
        }
    return data


def export(model, base: float) -> Verifier:
    """scikit-learn's GradientBoostingClassifier as flat lists (regression trees on the log-odds)."""
    trees = []
    for estimator in model.estimators_[:, 0]:
        tree = estimator.tree_
        trees.append(
            {
                "feature": [int(f) if f >= 0 else 0 for f in tree.feature],
                "threshold": [round(float(t), 6) for t in tree.threshold],
                "left": [int(c) for c in tree.children_left],
                "right": [int(c) for c in tree.children_right],
                "value": [round(float(v), 6) for v in tree.value[:, 0, 0]],
            }
        )
    return Verifier(FEATURES, base, float(model.learning_rate), tuple(trees), 0.5)


def fit(X: np.ndarray, y: np.ndarray, weight: np.ndarray, seed: int = 0, bags: int = BAGS) -> Verifier:
    """``bags`` boosted models on different row subsamples, their log-odds averaged: one model's
    probability for a pair moved by up to 0.1 from seed to seed, enough to flip a hit near the threshold."""
    from sklearn.ensemble import GradientBoostingClassifier

    bases, trees, mean_raw = [], [], 0.0
    for bag in range(bags):
        model = GradientBoostingClassifier(random_state=seed * bags + bag, **MODEL)
        model.fit(X, y, sample_weight=weight)
        # The prior log-odds the trees start from, recovered exactly from scikit-learn's own decision.
        raw = model.decision_function(X[:1])[0]
        staged = sum(e.predict(X[:1])[0] for e in model.estimators_[:, 0]) * model.learning_rate
        single = export(model, float(raw - staged))
        bases.append(single.base)
        trees.extend({**tree, "value": [round(v / bags, 7) for v in tree["value"]]} for tree in single.trees)
        mean_raw += raw / bags
    verifier = Verifier(FEATURES, float(np.mean(bases)), float(MODEL["learning_rate"]), tuple(trees), 0.5)
    assert abs(verifier.probability(list(X[0])) - 1 / (1 + np.exp(-mean_raw))) < 1e-4
    return verifier


def metrics(hit: np.ndarray, y: np.ndarray) -> dict:
    hits, positives, negatives = int(hit.sum()), int((y == 1).sum()), int((y == 0).sum())
    correct = int((hit & (y == 1)).sum())
    return {
        "hits": hits,
        "precision": round(correct / hits, 4) if hits else None,
        "recall": round(correct / positives, 4) if positives else None,
        "false_hit_rate": round(int((hit & (y == 0)).sum()) / negatives, 4) if negatives else None,
    }


def decisions(d: dict, probability: np.ndarray, threshold: float) -> np.ndarray:
    return d["exact"] | (d["scored"] & (probability >= threshold))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=Path("../shared/datasets/cache_pairs"))
    parser.add_argument("--cache-dir", type=Path, default=Path("data/cache_fit"))
    parser.add_argument("--similarity", type=float, default=0.8, help="the cosine threshold the hit needs")
    parser.add_argument(
        "--margin",
        type=float,
        default=0.02,
        help="populated cache: the nearest must lead the next different question by this much",
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--trees", type=int, default=MODEL["n_estimators"])
    parser.add_argument("--depth", type=int, default=MODEL["max_depth"])
    parser.add_argument("--bags", type=int, default=BAGS, help="boosted models averaged into the verifier")
    parser.add_argument(
        "--slack", type=float, default=0.02, help="held-out recall must beat each target by this"
    )
    parser.add_argument(
        "--unweighted", action="store_true", help="every pair weighs the same (not every set)"
    )
    parser.add_argument("--write", action="store_true", help=f"write {VERIFIER_FILE}")
    args = parser.parse_args(argv)
    MODEL.update(n_estimators=args.trees, max_depth=args.depth)
    from sklearn.model_selection import GroupKFold

    started = time.perf_counter()
    data = prepare(args.pairs, args.cache_dir, args.similarity)
    print(
        f"features of {sum(len(d['y']) for d in data.values())} pairs in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    # One training table: the scored pairs of every set, each group kept whole within a fold.
    X = np.vstack([data[n]["X"][data[n]["scored"]] for n in SETS])
    y = np.concatenate([data[n]["y"][data[n]["scored"]] for n in SETS])
    g = np.concatenate([data[n]["groups"][data[n]["scored"]] + 10_000_000 * i for i, n in enumerate(SETS)])
    owner = np.concatenate([np.full(int(data[n]["scored"].sum()), i) for i, n in enumerate(SETS)])
    # Each set weighs the same in total (gptcache_mock has 500 pairs against qqp's 10,000).
    weight = (
        np.ones(len(y))
        if args.unweighted
        else np.array([len(y) / (len(SETS) * (owner == o).sum()) for o in owner])
    )
    oof = np.zeros(len(y))
    fold_models = []
    for fold, (train, test) in enumerate(GroupKFold(args.folds).split(X, y, g)):
        verifier = fit(X[train], y[train], weight[train], seed=fold, bags=args.bags)
        oof[test] = [verifier.probability(list(x)) for x in X[test]]
        fold_models.append(verifier)
    final = fit(X, y, weight, bags=args.bags)
    fitted = np.array([final.probability(list(x)) for x in X])
    for i, n in enumerate(SETS):
        d = data[n]
        for key, values in (("oof", oof), ("fitted", fitted)):
            d[key] = np.zeros(len(d["y"]))
            d[key][d["scored"]] = values[owner == i]

    # gptcache_mock as ``rag eval cache --mode populated`` runs it: every q1 cached at once, each q2 gets
    # its nearest entry only, ambiguous when the next one is within the margin, correct only if it is its
    # own q1. Probabilities come from the fold model that did not see the q2's group.
    d = data["gptcache_mock"]
    pairs = d["pairs"]
    entries = sorted(
        {p["q1"] for p in pairs}, key=lambda q: min(i for i, p in enumerate(pairs) if p["q1"] == q)
    )
    E = np.array([d["vectors"][q] for q in entries])
    Q = np.array([d["vectors"][p["q2"]] for p in pairs])
    S = Q @ E.T
    order = np.argsort(-S, axis=1)
    gpt_fold = np.full(len(pairs), -1)
    gpt_rows = np.flatnonzero(owner == SETS.index("gptcache_mock"))
    fold_of = np.zeros(len(y), int)
    for fold, (_, test) in enumerate(GroupKFold(args.folds).split(X, y, g)):
        fold_of[test] = fold
    scored_index = np.flatnonzero(d["scored"])
    for row, pair_index in zip(gpt_rows, scored_index):
        gpt_fold[pair_index] = fold_of[row]
    populated = {"oof": [], "fitted": [], "own": [], "exact": [], "scored": [], "gap": []}
    for i, pair in enumerate(pairs):
        best, second = order[i, 0], order[i, 1]
        cached, similarity = entries[best], float(S[i, best])
        exact = normalize(cached) == normalize(pair["q2"])
        populated["own"].append(cached == pair["q1"])
        populated["exact"].append(exact)
        populated["gap"].append(
            similarity - float(S[i, second]) if normalize(entries[second]) != normalize(cached) else 1.0
        )
        populated["scored"].append(
            not exact and similarity >= args.similarity and hard_guard(pair["q2"], cached).same
        )
        x = features(pair["q2"], cached, similarity)
        fold_model = fold_models[gpt_fold[i]] if gpt_fold[i] >= 0 else fold_models[i % args.folds]
        populated["oof"].append(fold_model.probability(x))
        populated["fitted"].append(final.probability(x))
    populated = {k: np.array(v) for k, v in populated.items()}

    def populated_metrics(p_key: str, t: float, margin: float | None = None) -> dict:
        ambiguous = populated["gap"] < (args.margin if margin is None else margin)
        hit = populated["exact"] | (populated["scored"] & ~ambiguous & (populated[p_key] >= t))
        correct = int((hit & populated["own"]).sum())
        return {
            "hits": int(hit.sum()),
            "precision": round(correct / hit.sum(), 4) if hit.sum() else None,
            "recall": round(correct / len(pairs), 4),
            "false_hit_rate": None,
        }

    def recall(n: str, p_key: str, t: float) -> float:
        if n == "gptcache_mock":
            return populated_metrics(p_key, t)["recall"]
        return metrics(decisions(data[n], data[n][p_key], t), data[n]["y"])["recall"] or 0.0

    def meets(p_key: str, t: float) -> bool:
        return all(recall(n, p_key, t) >= RECALL_TARGETS[n] + args.slack for n in CHOOSE_ON)

    feasible = [t for t in GRID if meets("oof", t)]
    if not feasible:
        raise SystemExit("no threshold keeps the recall targets on held-out folds")
    threshold = max(feasible)

    print(
        f"\nverifier over {len(FEATURES)} features, {len(final.trees)} trees; similarity >= {args.similarity}, "
        f"hard guard, probability >= {threshold} (chosen on held-out folds)"
    )
    print(f"{'set':<14} {'':<9} {'hits':>6} {'precision':>9} {'recall':>7} {'false hits':>10}")
    report = {}
    for n in SETS:
        d = data[n]
        rows = {
            "cv": metrics(decisions(d, d["oof"], threshold), d["y"]),
            "dev": metrics(decisions(d, d["fitted"], threshold), d["y"]),
            "guard_only": metrics(
                d["exact"] | ((d["sim"] >= 0.9) & (d["X"][:, FEATURES.index("guard")] > 0)), d["y"]
            ),
        }
        # cosine alone at the cross-validated recall: the most precise cosine threshold reaching it
        target = rows["cv"]["recall"] or 0
        best = None
        for t in np.arange(0.5, 1.0001, 0.0025):
            row = metrics(d["sim"] >= t, d["y"])
            if (row["recall"] or 0) >= target:
                best = {"threshold": round(float(t), 4), **row}
        rows["cosine_same_recall"] = best
        if n == "gptcache_mock":
            rows["populated_cv"] = populated_metrics("oof", threshold)
            rows["populated_dev"] = populated_metrics("fitted", threshold)
        report[n] = rows
        for label, row in rows.items():
            if row:
                print(
                    f"{n:<14} {label:<9} {row['hits']:>6} {row['precision']!s:>9} {row['recall']!s:>7} {row['false_hit_rate']!s:>10}"
                )
    print(
        "\nheld-out curve (threshold: qqp precision/recall, paws_wiki precision/recall, gptcache_mock pairwise recall, populated precision/recall)"
    )
    for t in sorted(set(GRID[::5]) | {threshold}):
        cells = [metrics(decisions(data[n], data[n]["oof"], t), data[n]["y"]) for n in SETS]
        gpt = populated_metrics("oof", t)
        print(
            f"  {t:.2f}  {cells[0]['precision']} / {cells[0]['recall']}   {cells[1]['precision']} / {cells[1]['recall']}"
            f"   {cells[2]['recall']}   populated {gpt['precision']} / {gpt['recall']}"
        )
    print(f"\ngptcache_mock populated at {threshold}, by ambiguity margin (held-out probabilities):")
    for margin in (0.0, 0.01, 0.02, 0.03, 0.05):
        row = populated_metrics("oof", threshold, margin)
        print(f"  margin {margin:.2f}  precision {row['precision']}  recall {row['recall']}")
    if args.write:
        params = {
            **Verifier(
                final.features,
                final.base,
                final.learning_rate,
                final.trees,
                threshold,
                args.similarity,
                args.margin,
            ).to_json(),
            "fitted_on": {n: int(data[n]["scored"].sum()) for n in SETS},
            "model": {**MODEL, "bags": args.bags},
            "cross_validated": report,
        }
        VERIFIER_FILE.write_text(json.dumps(params, separators=(",", ":")) + "\n", encoding="utf-8")
        print(f"wrote {VERIFIER_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()
