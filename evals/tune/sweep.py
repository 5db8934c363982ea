"""``rag tune``: sweep configurations on the user's own questions, find the cost–F1 frontier, write the
cheapest configuration within a tolerance of the best as a profile the service loads.

    rag tune --dataset DIR [--sample N --seed S] --out profile.json --report R.md --plot P.png

Every configuration runs through the service's own pipeline (``Service.variant``), so its answers are
the service's answers with those settings. Two things make hundreds of configurations affordable on one
machine: each question's retrieval is computed once per distinct context and shared by the answer
policies over it (``RecordedRetriever``), and each tier answers each distinct prompt once, the rest
being looked up (``evals/generation_memo.py``; the tiers decode greedily, so a lookup is the answer the
model gives). The strong tier also answers every prompt the cheap tier served, for the wrong-acceptance
rate.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evals.corpus_index import document_ids_by_corpus_id, indexed_corpus
from evals.datasets import Query, load_dataset, select_queries
from evals.frontier import Point, Scores, analyze, choose, dominating
from evals.generation_memo import GenerationMemo, MemoizedLLM
from evals.qa import DEFAULT_MEMO, PipelineResult, memoized, run_pipeline
from evals.tune.recorded import RecordedRetriever
from evals.tune.space import BASELINE, Configuration
from rag.profile import Profile, write_profile
from rag.service import Service
from rag.settings import Settings

# Settings that change what the retriever returns for a (question, top_k, token_budget).
_RETRIEVAL_KEYS = (
    "retrieval_mode", "rerank", "kg_enabled", "trim", "trim_floor", "link_passages", "link_keep_score"
)


def configured(base: Settings, configuration: Configuration) -> Settings:
    return Settings.model_validate({**base.model_dump(), **configuration.overrides()})


def sweep(
    service: Service,
    configurations: Sequence[Configuration],
    queries: Sequence[Query],
    llms: dict[str, MemoizedLLM],
    corpus_id_of: dict[str, str],
) -> dict[str, PipelineResult]:
    """Each configuration's answers to ``queries``, in the order given."""
    retrievers: dict[tuple, RecordedRetriever] = {}
    results: dict[str, PipelineResult] = {}
    for configuration in configurations:
        settings = configured(service.settings, configuration)
        key = tuple(getattr(settings, name) for name in _RETRIEVAL_KEYS)
        if key not in retrievers:
            retrievers[key] = RecordedRetriever(service.retriever_for(settings))
        results[configuration.name] = run_pipeline(
            service, configuration.name, settings, queries, corpus_id_of, llms, retriever=retrievers[key]
        )
    return results


def scores(results: dict[str, PipelineResult]) -> dict[str, Scores]:
    return {
        name: Scores([q.f1 for q in r.questions], [q.cost_usd for q in r.questions]) for name, r in results.items()
    }


@dataclass(frozen=True)
class TuneResult:
    dataset: str
    queries: list[Query]
    configurations: dict[str, Configuration]
    results: dict[str, PipelineResult]
    points: dict[str, Point]
    chosen: Point
    tolerance: float

    def summary(self, name: str) -> dict[str, object]:
        row = self.results[name].summary(self.results.get(BASELINE))
        point = self.points[name]
        return {
            "f1": point.f1,
            "f1_ci95": list(point.f1_ci95),
            "cost_per_1k_questions_usd": point.cost_per_1k_usd,
            "cost_ci95": list(point.cost_ci95),
            "on_frontier": point.on_frontier,
            "f1_vs_best_ci95": list(point.f1_vs_best_ci95),
            "f1_vs_naive_k5_ci95": row["f1_diff_ci95"],
            "wrong_acceptance_rate": row["wrong_acceptance_rate"],
            "cheap_served": row["cheap_served"],
            "strong_share": row["strong_share"],
            "abstain_rate": row["abstain_rate"],
            "prompt_tokens_per_question": row["prompt_tokens"] / row["n"],
        }

    def saving_vs_baseline(self, name: str) -> float | None:
        base = self.points.get(BASELINE)
        if base is None or base.cost_per_1k_usd <= 0:
            return None
        return 1 - self.points[name].cost_per_1k_usd / base.cost_per_1k_usd

    def profile(self) -> Profile:
        """The chosen configuration as a profile. The sweep ran without the answer cache (each question
        is asked once); the profile leaves the cache as the service has it."""
        settings = dict(self.configurations[self.chosen.name].overrides())
        settings.pop("cache_enabled", None)
        return Profile(
            name=f"tuned-{self.dataset}",
            settings=settings,
            dataset=self.dataset,
            tuned_questions=frozenset(q.id for q in self.queries),
            expected={
                "configuration": self.chosen.name,
                "questions": len(self.queries),
                "tolerance": self.tolerance,
                "saving_vs_naive_k5": self.saving_vs_baseline(self.chosen.name),
                **self.summary(self.chosen.name),
            },
        )

    def dominated_by(self, name: str) -> list[tuple[str, tuple[float, float], tuple[float, float]]]:
        return dominating(scores(self.results), name)


def tune(
    dataset_dir: Path,
    settings: Settings,
    index_root: Path,
    configurations: Sequence[Configuration],
    sample: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    tolerance: float = 0.02,
    memo_path: Path = DEFAULT_MEMO,
) -> TuneResult:
    dataset = load_dataset(dataset_dir)
    queries = select_queries(dataset.queries, limit=limit, sample=sample, seed=seed)
    if not queries:
        raise ValueError(f"{dataset_dir}: no questions to tune on")
    by_name = {c.name: c for c in configurations}
    if len(by_name) != len(configurations):
        raise ValueError("two configurations share a name")
    for configuration in configurations:
        configured(settings, configuration)  # a contradictory configuration fails before any indexing
    base = settings.model_copy(update={"cache_enabled": False})
    memo = GenerationMemo(memo_path)
    try:
        with indexed_corpus(dataset, index_root, base, generation=True) as service:
            print(f"tune: {len(configurations)} configurations × {len(queries)} questions", file=sys.stderr)
            results = sweep(
                service, configurations, queries, memoized(service, memo), document_ids_by_corpus_id(service)
            )
    finally:
        memo.close()
    points = analyze(scores(results))
    return TuneResult(dataset.name, list(queries), by_name, results, points, choose(points, tolerance), tolerance)


def save(result: TuneResult, profile_path: Path) -> Profile:
    profile = result.profile()
    write_profile(profile, profile_path)
    return profile
