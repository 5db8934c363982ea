"""Fit the retrieval parameters in ``retrieval/params/fitted.json`` from eval dumps of the DEV data.

    python -m evals.fit_weighting weighting --dumps dump_*.jsonl [--write]
    python -m evals.fit_weighting rerank --dumps dump_*.jsonl [--write]
    python -m evals.fit_weighting trim --dumps dump_*.jsonl [--write]

A dump is what ``rag eval retrieval --dump FILE`` writes per query: the query's evidence, the nDCG@10
of every fixed fusion weight, the two candidate lists and (with the reranker on) the cross-encoder's
logits for the fused top 20. Every dataset counts equally, and a dataset where the fit falls below its
best fixed fusion is penalized, because the target is to win on each one, not on average. A two-fold
split by query id reports how the fit does on the queries it was not fitted on.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from tqdm import tqdm

from evals.corpus_index import document_ids_by_corpus_id, indexed_corpus
from evals.datasets import load_dataset
from evals.retrieval import TRIM_TOP_K, doc_run, per_query_measures, trim_stats
from rag.settings import Settings
from rag.types import ScoredId
from retrieval.budget import TrimParams
from retrieval.fitted import FITTED_FILE, load_fitted, save_fitted
from retrieval.fusion import convex_combination, reciprocal_rank_fusion
from retrieval.hybrid import Candidates, HybridRetriever
from retrieval.rerank import RerankParams, adaptive_rerank
from retrieval.tokenize import tokenize
from retrieval.weighting import FusionWeights, QueryEvidence, QueryWeigher, WeightingParams, query_evidence

# Chosen by two-fold cross-validation on the DEV dumps among several subsets of QueryEvidence (all of
# them, agreement-only, lead-only, script-only, ...): this one closed the most of the gap to the oracle
# on the held-out halves.
FEATURES = ("cjk_share", "dense_top", "dense_gap", "bm25_gap", "bm25_per_term", "overlap")
FIXED = ("0.3", "0.5", "0.7")
WEIGHT_GRID = tuple(round(i / 20, 2) for i in range(21))
SHORTFALL_PENALTY = 20.0  # per point of nDCG@10 a dataset falls below its best fixed weight
L2 = 1e-4
POLICY_TOLERANCE = 0.005  # nDCG@10 an adaptive policy may lose against a fixed depth of 20, per dataset
TRIM_KEEP = (
    0.95  # share of gold documents and of answer strings in the top 10 the trim must keep, per dataset
)


def load_dumps(paths: list[Path]) -> dict[str, list[dict]]:
    out = {}
    for path in paths:
        rows = [json.loads(line) for line in path.open() if line.strip()]
        out[path.stem.removeprefix("dump_")] = rows
    return out


def candidates_of(row: dict) -> Candidates:
    return Candidates(
        row["question"],
        tokenize(row["question"]),
        [ScoredId(c, s) for c, s in row["lexical"]],
        [ScoredId(c, s) for c, s in row["dense"]],
        row["lexical_scores"],
        row["dense_scores"],
    )


def evidence_of(candidates: Candidates) -> QueryEvidence:
    """Recomputed from the dumped lists with the service's code, so a new feature needs no new dump."""
    return query_evidence(candidates.question, len(candidates.terms), candidates.lexical, candidates.dense)


def fixed_weight(w: float, candidates: Candidates) -> FusionWeights:
    return FusionWeights(dense=w, bm25=1 - w, reason="fixed", evidence=evidence_of(candidates))


def ndcg_per_query(rows: list[dict], rankings: dict[str, list[ScoredId]]) -> list[float]:
    """nDCG@10 of each row's chunk ranking, on documents, in row order (0 for an empty ranking)."""
    runs = {r["id"]: doc_run(rankings[r["id"]], r["doc_of"]) for r in rows}
    measures = per_query_measures(_qrels(rows), runs)
    return [measures[r["id"]]["ndcg@10"] for r in rows]


def ndcg_columns(rows: list[dict], fusions: Sequence[Callable[[Candidates], list[ScoredId]]]) -> np.ndarray:
    """nDCG@10 of each fusion (a column) for each row's query (a row); candidates built once per row."""
    candidates = {r["id"]: candidates_of(r) for r in rows}
    columns = [ndcg_per_query(rows, {qid: fuse(c) for qid, c in candidates.items()}) for fuse in fusions]
    return np.array(columns).T


def baseline_ndcg(rows: list[dict]) -> np.ndarray:
    """The fixed fusions the issue compares against: rrf, cc_0.3, cc_0.5, cc_0.7."""
    fusions = [lambda c: reciprocal_rank_fusion([c.lexical, c.dense])] + [
        (lambda c, w=float(w): convex_combination([c.lexical, c.dense], [1 - w, w])) for w in FIXED
    ]
    return ndcg_columns(rows, fusions)


def grid_ndcg(rows: list[dict]) -> np.ndarray:
    """The service's fusion at every weight of ``WEIGHT_GRID``."""
    fusions = [(lambda c, w=w: HybridRetriever.fuse(c, fixed_weight(w, c))) for w in WEIGHT_GRID]
    return ndcg_columns(rows, fusions)


def _fold(query_id: str) -> int:
    return hashlib.sha256(query_id.encode()).digest()[0] % 2


class WeightingProblem:
    """Per-query nDCG@10 as a piecewise-linear function of the dense weight, for every dataset."""

    def __init__(
        self, dumps: dict[str, list[dict]], features: tuple[str, ...] = FEATURES, l2: float = L2
    ) -> None:
        self.names = sorted(dumps)
        self.features = features
        self.l2 = l2
        self.grid = np.array(WEIGHT_GRID)
        evidence = {n: [asdict(evidence_of(candidates_of(r))) for r in rows] for n, rows in dumps.items()}
        self.x = {n: np.array([[e[f] for f in self.features] for e in evidence[n]]) for n in dumps}
        self.y = {n: grid_ndcg(rows) for n, rows in dumps.items()}
        self.baselines = {n: baseline_ndcg(rows) for n, rows in dumps.items()}
        self.folds = {n: np.array([_fold(r["id"]) for r in rows]) for n, rows in dumps.items()}
        all_x = np.vstack(list(self.x.values()))
        self.means = all_x.mean(axis=0)
        self.scales = np.where(all_x.std(axis=0) > 1e-9, all_x.std(axis=0), 1.0)

    def best_fixed(self, name: str, mask: np.ndarray) -> float:
        """The best of rrf, cc_0.3, cc_0.5 and cc_0.7 on these queries (chosen with hindsight)."""
        return float(self.baselines[name][mask].mean(axis=0).max())

    def weights(self, name: str, theta: np.ndarray, mask: np.ndarray) -> np.ndarray:
        z = (self.x[name][mask] - self.means) / self.scales
        return 1.0 / (1.0 + np.exp(-(theta[0] + z @ theta[1:])))

    def ndcg(self, name: str, theta: np.ndarray, mask: np.ndarray) -> float:
        w = self.weights(name, theta, mask)
        rows = self.y[name][mask]
        values = [np.interp(wi, self.grid, row) for wi, row in zip(w, rows)]
        return float(np.mean(values))

    def objective(self, theta: np.ndarray, fold: int | None) -> float:
        total = 0.0
        for name in self.names:
            mask = self.folds[name] != fold if fold is not None else np.ones(len(self.folds[name]), bool)
            score = self.ndcg(name, theta, mask)
            total += score - SHORTFALL_PENALTY * max(0.0, self.best_fixed(name, mask) - score)
        return -total / len(self.names) + self.l2 * float(theta[1:] @ theta[1:])

    def fit(self, fold: int | None = None) -> np.ndarray:
        """Powell from several starts (the objective is piecewise linear, with flat stretches), then
        Nelder-Mead from the best of them."""
        best = None
        script = self.features.index("cjk_share") + 1 if "cjk_share" in self.features else None
        for bias, script_coef in itertools.product((-1.0, 0.0, 1.0), (0.0, -1.0, -2.0)):
            start = np.zeros(len(self.features) + 1)
            start[0] = bias
            if script is not None:
                start[script] = script_coef
            result = minimize(
                self.objective, start, args=(fold,), method="Powell", options={"maxiter": 20000, "xtol": 1e-3}
            )
            if best is None or result.fun < best.fun:
                best = result
        polished = minimize(
            self.objective, best.x, args=(fold,), method="Nelder-Mead", options={"maxiter": 4000}
        )
        return polished.x if polished.fun < best.fun else best.x

    def to_params(self, theta: np.ndarray) -> WeightingParams:
        return WeightingParams(
            bias=round(float(theta[0]), 4),
            coefficients={f: round(float(c), 4) for f, c in zip(self.features, theta[1:])},
            means={f: round(float(m), 6) for f, m in zip(self.features, self.means)},
            scales={f: round(float(s), 6) for f, s in zip(self.features, self.scales)},
        )

    def table(self, theta: np.ndarray, title: str) -> None:
        print(f"\n{title}")
        print(f"  {'dataset':10} {'fold':>4} {'fitted':>8} {'best fixed':>10} {'oracle':>8}")
        for name in self.names:
            for fold in (0, 1, None):
                mask = self.folds[name] == fold if fold is not None else np.ones(len(self.folds[name]), bool)
                oracle = self.y[name][mask][:, [0, -1]].max(axis=1).mean()
                print(
                    f"  {name:10} {'all' if fold is None else fold:>4} {self.ndcg(name, theta, mask):>8.4f} "
                    f"{self.best_fixed(name, mask):>10.4f} {oracle:>8.4f}"
                )


def fit_weighting(dumps: dict[str, list[dict]]) -> WeightingParams:
    problem = WeightingProblem(dumps)
    for fold in (0, 1):
        theta = problem.fit(fold)
        problem.table(theta, f"fitted without fold {fold} (rows of fold {fold} are held out)")
    theta = problem.fit(None)
    problem.table(theta, "fitted on all DEV queries")
    return problem.to_params(theta)


def _qrels(rows: list[dict]) -> dict:
    return {r["id"]: {d: 1 for d in r["gold"]} for r in rows}


def replay(row: dict, weigher: QueryWeigher, params: RerankParams) -> tuple[Candidates, list[ScoredId], int]:
    """The query's candidates and final ranking, recomputed from a dump row with the service's own fusion
    and adaptive-rerank code; the cross-encoder's logits come from the dump instead of the model."""
    candidates = candidates_of(row)
    weights = weigher.weigh(evidence_of(candidates))
    fused = HybridRetriever.fuse(candidates, weights)
    logits = row.get("rerank_logits") or {}
    weight = params.weight_for(weights.evidence.cjk_share)
    if weight == 0.0 or not logits:
        return candidates, fused, 0
    missing = [h.chunk_id for h in fused[: params.max_pairs] if h.chunk_id not in logits]
    if missing:
        raise SystemExit(
            f"{row['id']}: the dump lacks logits for {missing[:3]}: re-run the eval with the current "
            "weighting and the reranker on"
        )
    result = adaptive_rerank(fused, lambda batch: [logits[h.chunk_id] for h in batch], weight, params)
    return candidates, result.ranking, result.pairs


def rerank_ndcg(
    dumps: dict[str, list[dict]], weighting: WeightingParams, params: RerankParams
) -> dict[str, tuple[float, float]]:
    """Per dataset: (nDCG@10, mean pairs scored) of the adaptive rerank, replayed on the dumped logits."""
    weigher = QueryWeigher(weighting)
    out = {}
    for name, rows in dumps.items():
        rankings, pairs = {}, []
        for r in rows:
            _, rankings[r["id"]], n = replay(r, weigher, params)
            pairs.append(n)
        values = ndcg_per_query(rows, rankings)
        out[name] = (float(np.mean(values)), float(np.mean(pairs)))
    return out


def fit_rerank(dumps: dict[str, list[dict]], weighting: WeightingParams, base: RerankParams) -> RerankParams:
    """Two steps. (1) The mix of fused and cross-encoder scores (weight, temperature) with the best mean
    nDCG@10 at a fixed depth of 20, among mixes that leave no dataset below fusion alone. (2) For that
    mix, the adaptive policy that scores the fewest pairs while every dataset stays within
    ``POLICY_TOLERANCE`` of the fixed depth of 20."""
    english = {n: rows for n, rows in dumps.items() if any(r.get("rerank_logits") for r in rows)}
    base = replace(base, min_fused=0.0, max_pairs=20, stop_rank=10**6)
    fusion = rerank_ndcg(english, weighting, replace(base, weight=0.0))
    print("fusion alone:", {n: round(v[0], 4) for n, v in fusion.items()})
    mixes = []
    for weight, temperature in itertools.product((0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8), (1.0, 2.0, 4.0, 8.0)):
        deep = replace(
            base, weight=weight, temperature=temperature, max_pairs=20, stop_rank=10**6, min_fused=0.0
        )
        scores = rerank_ndcg(english, weighting, deep)
        worst = min(scores[n][0] - fusion[n][0] for n in scores)
        mixes.append((statistics.mean(v[0] for v in scores.values()), worst, weight, temperature, scores))
    print(f"  {'weight':>6} {'temp':>5} {'mean nDCG@10':>12} {'worst vs fusion':>15}")
    for mean, worst, weight, temperature, _ in mixes:
        print(f"  {weight:>6} {temperature:>5} {mean:>12.4f} {worst:>+15.4f}")
    mean, worst, weight, temperature, deep_scores = max(
        [m for m in mixes if m[1] >= 0.0] or mixes, key=lambda m: m[0]
    )
    print(
        f"mix: weight {weight}, temperature {temperature}: depth-20 nDCG@10 "
        f"{ {n: round(v[0], 4) for n, v in deep_scores.items()} }"
    )
    policies = []
    grid = itertools.product(
        (3, 5, 10, 10**6), (2, 4, 6), (2, 4), (12, 16, 20), (0.0, 0.25, 0.3, 0.35, 0.4, 0.5)
    )
    for stop_rank, first_batch, batch, max_pairs, min_fused in grid:
        params = replace(
            base,
            weight=weight,
            temperature=temperature,
            stop_rank=stop_rank,
            first_batch=first_batch,
            batch=batch,
            max_pairs=max_pairs,
            min_fused=min_fused,
        )
        scores = rerank_ndcg(english, weighting, params)
        loss = max(deep_scores[n][0] - scores[n][0] for n in scores)
        policies.append((statistics.mean(v[1] for v in scores.values()), loss, params, scores))
    ok = [p for p in policies if p[1] <= POLICY_TOLERANCE]
    pairs, loss, params, scores = min(ok or policies, key=lambda p: (p[0], p[1]))
    print(
        f"policy: stop_rank {params.stop_rank}, first_batch {params.first_batch}, batch {params.batch}, "
        f"max_pairs {params.max_pairs}, min_fused {params.min_fused}: mean pairs {pairs:.2f} (depth 20: 20), worst loss vs depth 20 {loss:+.4f}"
    )
    print("  per dataset (nDCG@10, pairs):", {n: (round(v[0], 4), round(v[1], 2)) for n, v in scores.items()})
    return params


def fit_trim(
    dumps: dict[str, list[dict]], fitted, datasets_root: Path, index_root: Path, budget: int
) -> TrimParams:
    """The trim that keeps fewest tokens while every dataset keeps ≥ TRIM_KEEP of the gold documents (and of the
    answer strings) that its untrimmed top 10 holds; replayed on each dataset's real index."""
    weigher = QueryWeigher(fitted.weighting)
    grid = [
        TrimParams(floor=f, match_weight=m)
        for f in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
        for m in (0.3, 0.5, 0.7, 0.9)
    ]
    totals = {p: defaultdict(lambda: defaultdict(float)) for p in grid}
    settings = Settings()
    for name, rows in dumps.items():
        dataset = load_dataset(datasets_root / name)
        by_id = {q.id: q for q in dataset.queries}
        with indexed_corpus(dataset, index_root, settings) as service:
            corpus_of = document_ids_by_corpus_id(service)
            for r in tqdm(rows, desc=f"trim {name}", unit="q", file=sys.stderr):
                candidates, ranking, _ = replay(r, weigher, fitted.rerank)
                chunks = service.retriever.hydrate(ranking, TRIM_TOP_K)
                doc_of = {cid: corpus_of[c.document_id] for cid, c in chunks.items()}
                for p in grid:
                    stats = trim_stats(
                        service.retriever, candidates, ranking, chunks, doc_of, by_id[r["id"]], budget, p
                    )
                    for key, value in stats.items():
                        totals[p][name][key] += value

    def summary(p: TrimParams) -> tuple[float, float, float]:
        gold = min(t["gold_kept"] / t["gold_in_top10"] for t in totals[p].values() if t["gold_in_top10"])
        answers = min(
            (t["answer_kept"] / t["answer_in_top10"] for t in totals[p].values() if t["answer_in_top10"]),
            default=1.0,
        )
        share = statistics.mean(t["tokens_kept"] / t["tokens_top10"] for t in totals[p].values())
        return gold, answers, share

    print(f"  {'floor':>5} {'match':>5} {'min gold kept':>13} {'min answer kept':>15} {'token share':>11}")
    for p in grid:
        gold, answers, share = summary(p)
        print(f"  {p.floor:>5} {p.match_weight:>5} {gold:>13.4f} {answers:>15.4f} {share:>11.3f}")
    eligible = [p for p in grid if min(summary(p)[:2]) >= TRIM_KEEP]
    return min(eligible or grid, key=lambda p: (summary(p)[2], -p.match_weight))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["weighting", "rerank", "trim"])
    parser.add_argument(
        "--datasets", type=Path, default=Path("../shared/datasets"), help="for trim: dataset folders"
    )
    parser.add_argument("--index-root", type=Path, default=Path("data/eval"), help="for trim: eval indexes")
    parser.add_argument("--budget", type=int, default=1000, help="for trim: the token budget")
    parser.add_argument("--dumps", type=Path, nargs="+", required=True)
    parser.add_argument("--write", action="store_true", help=f"write the result into {FITTED_FILE}")
    args = parser.parse_args(argv)
    dumps = load_dumps(args.dumps)
    fitted = load_fitted()
    if args.what == "weighting":
        fitted = replace(fitted, weighting=fit_weighting(dumps))
    elif args.what == "rerank":
        fitted = replace(fitted, rerank=fit_rerank(dumps, fitted.weighting, fitted.rerank))
    else:
        found = fit_trim(dumps, fitted, args.datasets, args.index_root.resolve(), args.budget)
        # Only the match weight is taken from this recall fit. The floor is chosen on answers: with linked
        # passages for multi-hop questions, 0.7 answers better and cheaper than this fit's 0.3 on xquad_en
        # and hotpotqa (docs/results/quality.md); the focus rule is evals/fit_trim.py's. Both kept.
        print(f"recall-optimal floor (reported, not written): {found.floor}", file=sys.stderr)
        fitted = replace(fitted, trim=replace(fitted.trim, match_weight=found.match_weight))
    print(json.dumps(fitted.as_json()[args.what], indent=1))
    if args.write:
        save_fitted(fitted)
        print(f"wrote {FITTED_FILE}")


if __name__ == "__main__":
    main()
