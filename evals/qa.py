"""QA eval: tokens and dollars against answer quality, every pipeline on one dataset, in one process.

    rag eval qa --dataset ../shared/datasets/xquad_en --limit 40 --out xquad.json --report xquad.md --plot xquad.png

Each pipeline is a named configuration of the service (``PIPELINES``), run by ``Service.variant`` over
the same stores, chunks and warm models, so the comparison is of configurations, not code paths:

* ``naive_k2`` / ``naive_k5`` / ``naive_k10``: dense top-2/5/10 whole chunks, no cache, the strong tier for
  every question (the out-of-the-box configuration of typical RAG stacks; top-2 is LlamaIndex's default);
* ``hybrid``: per-query weighted BM25 + dense fusion, top-5 whole chunks, strong tier;
* ``rerank_trim``: + cross-encoder rerank and the sentence-level token-budget trim;
* ``routed``: + the cheap→strong cascade;
* ``strong_trimmed``: the default's context (retrieval, rerank, trim) answered by the strong tier alone,
  the quality bar the default's cascade is held to;
* ``optimized``: the service's default configuration, answer cache included (warmed only by the questions
  answered earlier in the same run, in the dataset's order);
* ``profile``: with ``--profile FILE``, the configuration that profile holds (``rag tune`` writes them).

``--sample N --seed S`` asks a seeded random sample of the whole dataset (the first questions of a
dataset often come from one or two of its documents); a profile's own tuning questions are left out of
the sample, so that a profile is judged on questions it was not tuned on.

Beside F1 (with its bootstrap interval) and cost, each pipeline reports its ``wrong_acceptance_rate``:
of the answers the cheap tier served, the share whose F1 is below what the strong tier answers on the
same prompt (asked here for that purpose; its cost is the eval's, not the pipeline's).
``--unanswerable F`` removes from the index the gold documents of a sampled share F of the questions:
those questions (and any other that lost a gold document) can only be answered from the model's memory,
and each pipeline reports how often it abstained on them (``abstain_recall``) and on the rest
(``false_abstain_rate``).

Generations go through a memo of prompts already answered (``evals/generation_memo.py``): the tiers
decode greedily, so a prompt two pipelines share is generated once. Latency percentiles count only the
questions whose generations all ran for real.

Pipelines run one after another over all questions (not interleaved), so no pipeline's latency benefits
from another's prompt left in the model's KV cache. Costs and tokens are the service's own usage blocks,
summed, never recounted here. With ``--url`` the questions go over HTTP to a running service instead, and
its usage blocks are read from the responses (one pipeline, ``service``: whatever that service runs).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from evals.bench import percentile
from evals.corpus_index import corpus_uploads, document_ids_by_corpus_id, indexed_corpus
from evals.datasets import Dataset, Query, load_dataset, select_queries, without_gold_documents
from evals.generation_memo import GenerationMemo, MemoizedLLM
from evals.qa_metrics import bootstrap_ci, exact_match, f1, paired_bootstrap_ci
from evals.tune.space import BASELINE, NAIVE_RETRIEVAL
from rag.generation.prompt import is_abstention, split_answer
from rag.keys import bearer_headers
from rag.pipeline import Retriever
from rag.profile import Profile
from rag.service import Service, open_answer_cache
from rag.settings import Settings
from rag.types import DEFAULT_TENANT, Answer

PROFILE_PIPELINE = "profile"
DEFAULT_MEMO = Path("data/eval/generations.sqlite")
_NAIVE = {**NAIVE_RETRIEVAL, "cache_enabled": False, "routing": "fixed"}
_RERANK_TRIM = {"retrieval_mode": "hybrid", "rerank": True, "trim": True, "top_k": 5, "cache_enabled": False}
# Settings overrides per pipeline; ``optimized`` is the configuration the service runs by default.
PIPELINES: dict[str, dict[str, object]] = {
    "naive_k2": {**_NAIVE, "top_k": 2},
    "naive_k5": {**_NAIVE, "top_k": 5},
    "naive_k10": {**_NAIVE, "top_k": 10},
    "hybrid": {**_NAIVE, "retrieval_mode": "hybrid", "top_k": 5},
    "rerank_trim": {**_RERANK_TRIM, "routing": "fixed"},
    "routed": {**_RERANK_TRIM, "routing": "cascade"},
    "strong_trimmed": {"routing": "fixed", "cache_enabled": False},
    "optimized": {},
}


@dataclass
class QuestionResult:
    """One question answered by one pipeline: what it said, how good, what it cost (from its usage block)."""

    id: str
    question: str
    gold: list[str]
    answer: str
    em: float
    f1: float
    gold_in_context: bool | None  # None when no retrieval ran (a cache hit)
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    tier: str
    tiers: dict[str, dict[str, int]]  # tier → {"prompt_tokens", "completion_tokens", "calls"}
    escalated: bool
    route_reason: str | None
    cache: str
    latency_ms: float
    # The strong tier's F1 on the very prompt the cheap tier answered, when the cheap tier's answer was
    # served (None otherwise, and over HTTP, where the prompt is not visible).
    strong_f1_same_prompt: float | None = None
    abstained: bool = False
    answerable: bool = True  # False: the eval removed a gold document of this question from the index
    memo_hits: int = 0  # generations served from the memo (their latency is not the model's)

    @property
    def wrongly_accepted(self) -> bool | None:
        if self.strong_f1_same_prompt is None:
            return None
        return self.f1 < self.strong_f1_same_prompt


@dataclass
class PipelineResult:
    name: str
    questions: list[QuestionResult] = field(default_factory=list)

    def paired_f1_ci(self, other: PipelineResult | None) -> list[float] | None:
        """95% paired bootstrap interval of mean(F1 here − F1 there) over the questions both answered."""
        if other is None:
            return None
        if other is self:
            return [0.0, 0.0]
        by_id = {r.id: r.f1 for r in other.questions}
        paired = [(r.f1, by_id[r.id]) for r in self.questions if r.id in by_id]
        if not paired:
            return None
        return list(paired_bootstrap_ci([a for a, _ in paired], [b for _, b in paired]))

    def summary(
        self, baseline: PipelineResult | None, strong_trimmed: PipelineResult | None = None
    ) -> dict[str, object]:
        rows = self.questions
        n = len(rows)
        tiers: dict[str, dict[str, int]] = {}
        for row in rows:
            for tier, counts in row.tiers.items():
                total = tiers.setdefault(tier, {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0})
                for key, value in counts.items():
                    total[key] += value
        cost = sum(r.cost_usd for r in rows)
        judged = [r.gold_in_context for r in rows if r.gold_in_context is not None]
        fresh = [r.latency_ms for r in rows if r.memo_hits == 0]
        accepted = [r.wrongly_accepted for r in rows if r.wrongly_accepted is not None]
        answerable = [r for r in rows if r.answerable]
        unanswerable = [r for r in rows if not r.answerable]
        return {
            "n": n,
            "em": statistics.fmean(r.em for r in rows),
            "f1": statistics.fmean(r.f1 for r in rows),
            "f1_ci95": list(bootstrap_ci([r.f1 for r in rows])),
            "f1_diff_ci95": self.paired_f1_ci(baseline),
            # against the strong tier on the default's own context: the bar the default is held to
            "f1_diff_vs_strong_trimmed_ci95": self.paired_f1_ci(strong_trimmed),
            "gold_in_context": statistics.fmean(judged) if judged else None,
            "prompt_tokens": sum(r.prompt_tokens for r in rows),
            "completion_tokens": sum(r.completion_tokens for r in rows),
            "tiers": tiers,
            "cost_usd": cost,
            "cost_per_1k_questions_usd": cost / n * 1000,
            "strong_share": sum("strong" in r.tiers for r in rows) / n,
            "cheap_only_share": sum(set(r.tiers) == {"cheap"} for r in rows) / n,
            "escalated_share": sum(r.escalated for r in rows) / n,
            "cache_hit_rate": sum(r.cache == "hit" for r in rows) / n,
            "cheap_served": len(accepted),
            "wrong_acceptance_rate": statistics.fmean(accepted) if accepted else None,
            "abstain_rate": statistics.fmean(r.abstained for r in rows),
            "abstain_recall": statistics.fmean(r.abstained for r in unanswerable) if unanswerable else None,
            "false_abstain_rate": (
                statistics.fmean(r.abstained for r in answerable) if unanswerable and answerable else None
            ),
            "f1_answerable": statistics.fmean(r.f1 for r in answerable) if unanswerable and answerable else None,
            "latency_measured": len(fresh),
            "latency_ms_p50": percentile(fresh, 50) if fresh else None,
            "latency_ms_p95": percentile(fresh, 95) if fresh else None,
        }


def score_answer(
    query: Query,
    answer: str,
    usage: dict,
    route: dict | None,
    cache: str,
    context_docs: Sequence[str] | None,
    latency_ms: float,
) -> QuestionResult:
    """Scores one answer from its usage block (``rag.types.Usage`` as a dict, the HTTP shape)."""
    tiers: dict[str, dict[str, int]] = {}
    for g in usage["generations"]:
        counts = tiers.setdefault(g["tier"], {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0})
        counts["prompt_tokens"] += g["prompt_tokens"]
        counts["completion_tokens"] += g["completion_tokens"]
        counts["calls"] += 1
    gold_in_context = None
    if context_docs is not None:
        gold_in_context = bool(query.gold_doc_ids) and set(query.gold_doc_ids) <= set(context_docs)
    return QuestionResult(
        id=query.id,
        question=query.question,
        gold=list(query.answers),
        answer=answer,
        em=exact_match(answer, query.answers, query.lang),
        f1=f1(answer, query.answers, query.lang),
        gold_in_context=gold_in_context,
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
        cost_usd=usage["cost_usd"],
        tier=usage["tier"],
        tiers=tiers,
        escalated=bool(route and route["escalated"]),
        route_reason=route["reason"] if route else None,
        cache=cache,
        latency_ms=latency_ms,
        abstained=is_abstention(answer),
    )


def _context_docs(debug: dict, corpus_id_of: dict[str, str]) -> list[str] | None:
    refs = (debug.get("retrieval") or {}).get("passages")
    if refs is None:
        return None
    return [corpus_id_of.get(ref["document_id"], ref["document_id"]) for ref in refs]


def _usage_dict(answer: Answer) -> dict:
    return {**asdict(answer.usage), "generations": [asdict(g) for g in answer.usage.generations]}


def pipeline_settings(base: Settings, name: str, profile: Profile | None = None) -> Settings:
    """The named configuration, validated like any settings (a contradictory one fails here)."""
    if name == PROFILE_PIPELINE:
        if profile is None:
            raise ValueError("the 'profile' pipeline needs --profile")
        overrides: Mapping[str, object] = profile.settings
    elif name in PIPELINES:
        overrides = PIPELINES[name]
    else:
        raise ValueError(f"unknown pipeline {name!r}; known: {', '.join([*PIPELINES, PROFILE_PIPELINE])}")
    return Settings.model_validate({**base.model_dump(), **overrides})


def memoized(service: Service, memo: GenerationMemo) -> dict[str, MemoizedLLM]:
    """The service's tiers behind the memo of prompts already answered."""
    return {name: MemoizedLLM(llm, memo) for name, llm in service.llms.items()}


@contextmanager
def _pipeline(
    service: Service, settings: Settings, llms: Mapping[str, MemoizedLLM], retriever: Retriever | None
) -> Iterator[Callable[[str], Answer]]:
    """The pipeline's answer function, with a fresh answer cache of its own if it caches."""
    if not settings.cache_enabled:
        pipeline = service.variant(settings, llms=llms, retriever=retriever)
        yield lambda q: pipeline.answer(q, DEFAULT_TENANT)
        return
    with tempfile.TemporaryDirectory(prefix="qa-cache-") as tmp:
        cache = open_answer_cache(settings, Path(tmp), service.embedder.dim)
        try:
            pipeline = service.variant(settings, cache, llms=llms, retriever=retriever)
            yield lambda q: pipeline.answer(q, DEFAULT_TENANT)
        finally:
            cache.close()


def run_pipeline(
    service: Service,
    name: str,
    settings: Settings,
    queries: Sequence[Query],
    corpus_id_of: dict[str, str],
    llms: Mapping[str, MemoizedLLM],
    unanswerable: frozenset[str] = frozenset(),
    retriever: Retriever | None = None,
    progress: bool = True,
) -> PipelineResult:
    """Every question through the configuration's pipeline; each answer the cheap tier served is also
    put to the strong tier on the same prompt, which is what the wrong-acceptance rate compares with."""
    strong = service.settings.default_tier
    result = PipelineResult(name)
    with _pipeline(service, settings, llms, retriever) as answer_fn:
        for query in tqdm(queries, unit="q", desc=f"{name[:24]:>24}", file=sys.stderr, disable=not progress):
            for llm in llms.values():
                llm.calls.clear()
            hits_before = sum(llm.hits for llm in llms.values())
            started = time.perf_counter()
            answer = answer_fn(query.question)
            elapsed = (time.perf_counter() - started) * 1000
            hits = sum(llm.hits for llm in llms.values()) - hits_before
            route = asdict(answer.route) if answer.route else None
            row = score_answer(
                query,
                answer.answer,
                _usage_dict(answer),
                route,
                answer.cache,
                _context_docs(answer.debug, corpus_id_of),
                elapsed,
            )
            row.memo_hits = hits
            row.answerable = query.id not in unanswerable
            served = answer.route.tier if answer.route else None
            if answer.cache == "miss" and served is not None and served != strong and llms[served].calls:
                prompt = llms[served].calls[0][0]
                text = split_answer(llms[strong].generate(prompt, settings.max_answer_tokens).text, [])[0]
                row.strong_f1_same_prompt = f1(text, query.answers, query.lang)
            result.questions.append(row)
    return result


def run(
    dataset_dir: Path,
    settings: Settings,
    index_root: Path,
    pipelines: Sequence[str],
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    profile: Profile | None = None,
    unanswerable: float | None = None,
    memo_path: Path = DEFAULT_MEMO,
) -> dict:
    dataset = load_dataset(dataset_dir)
    exclude = profile.tuned_questions if profile is not None and profile.dataset == dataset.name else frozenset()
    queries = select_queries(dataset.queries, limit=limit, sample=sample, seed=seed, exclude=exclude)
    configured = {name: pipeline_settings(settings, name, profile) for name in pipelines}  # fail before indexing
    missing: frozenset[str] = frozenset()
    if unanswerable is not None:
        dataset, missing = without_gold_documents(dataset, queries, unanswerable, seed)
    # The shared service never caches: each caching pipeline gets a fresh cache of its own.
    base = settings.model_copy(update={"cache_enabled": False})
    results: dict[str, PipelineResult] = {}
    memo = GenerationMemo(memo_path)
    try:
        with indexed_corpus(dataset, index_root, base, generation=True) as service:
            corpus_id_of = document_ids_by_corpus_id(service)
            llms = memoized(service, memo)
            for name, configured_settings in configured.items():
                results[name] = run_pipeline(
                    service, name, configured_settings, queries, corpus_id_of, llms, missing
                )
    finally:
        memo.close()
    selection = {"limit": limit, "sample": sample, "seed": seed, "excluded": len(exclude)}
    report = report_json(dataset, queries, results, settings, selection)
    if profile is not None:
        report["profile"] = {"name": profile.name, "settings": profile.settings, "tuned_on": profile.dataset}
    if unanswerable is not None:
        report["unanswerable"] = {"share": unanswerable, "questions": len(missing & {q.id for q in queries})}
    return report


def run_remote(
    dataset_dir: Path,
    url: str,
    limit: int | None = None,
    timeout_s: float = 600,
    api_key: str | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> dict:
    """The same questions sent to a running service over HTTP; its corpus is uploaded first if missing."""
    import httpx

    dataset = load_dataset(dataset_dir)
    queries = select_queries(dataset.queries, limit=limit, sample=sample, seed=seed)
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, headers=bearer_headers(api_key)) as client:
        corpus_id_of = _ensure_remote_corpus(client, dataset)
        result = PipelineResult("service")
        for query in tqdm(queries, unit="q", desc="    service", file=sys.stderr):
            started = time.perf_counter()
            response = client.post("/v1/query", json={"question": query.question})
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code} to {query.id}: {response.text[:300]}")
            body = response.json()
            result.questions.append(
                score_answer(
                    query,
                    body["answer"],
                    body["usage"],
                    body.get("routing"),
                    body["cache"],
                    _context_docs(body.get("debug") or {}, corpus_id_of),
                    elapsed,
                )
            )
    selection = {"limit": limit, "sample": sample, "seed": seed, "excluded": 0}
    return report_json(dataset, queries, {"service": result}, None, selection)


def _ensure_remote_corpus(client, dataset: Dataset, batch: int = 16) -> dict[str, str]:
    """Uploads the corpus documents the service does not list yet; returns document id → corpus id."""

    def listed() -> dict[str, str]:
        response = client.get("/v1/documents")
        response.raise_for_status()
        return {d["id"]: d["name"].removesuffix(".md") for d in response.json()["documents"]}

    present = set(listed().values())
    missing = [u for u in corpus_uploads(dataset) if u.name.removesuffix(".md") not in present]
    with tqdm(total=len(missing), unit="doc", desc="upload corpus", file=sys.stderr) as bar:
        for start in range(0, len(missing), batch):
            part = missing[start : start + batch]
            files = [("files", (u.name, u.content, "text/markdown")) for u in part]
            response = client.post("/v1/documents", files=files)
            if response.status_code >= 400:
                raise RuntimeError(f"upload failed: {response.status_code} {response.text[:300]}")
            bar.update(len(part))
    return listed()


def report_json(
    dataset: Dataset,
    queries: Sequence[Query],
    results: dict[str, PipelineResult],
    settings: Settings | None,
    selection: dict[str, object] | None = None,
) -> dict:
    baseline = results.get(BASELINE)
    out: dict[str, object] = {
        "dataset": dataset.name,
        "n_questions": len(queries),
        "selection": selection or {},
        "baseline": BASELINE if baseline else None,
        "pipelines": {name: r.summary(baseline, results.get("strong_trimmed")) for name, r in results.items()},
        "questions": {name: [asdict(q) for q in r.questions] for name, r in results.items()},
    }
    if settings is not None:
        out["prices_usd_per_mtok"] = {
            name: {"input": t.input_usd_per_mtok, "output": t.output_usd_per_mtok, "model": t.model}
            for name, t in settings.tiers.items()
        }
        out["configurations"] = {name: PIPELINES.get(name, {}) for name in results}
    return out


def savings(report: dict, pipeline: str = "optimized") -> dict[str, float]:
    """How much less ``pipeline`` costs per 1,000 questions than each naive baseline (0.8 = 80% less)."""
    rows = report["pipelines"]
    if pipeline not in rows:
        return {}
    ours = rows[pipeline]["cost_per_1k_questions_usd"]
    return {
        name: 1 - ours / rows[name]["cost_per_1k_questions_usd"]
        for name in ("naive_k2", "naive_k5", "naive_k10")
        if name in rows and rows[name]["cost_per_1k_questions_usd"] > 0
    }
