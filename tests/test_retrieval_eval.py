"""End to end on real data and real models: the eval harness drives the service's retriever over a fixed
slice of SciFact (claims against abstracts) and per-query weighted hybrid beats both single retrievers;
the rerank and the trim keep their contracts on the same slice."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.corpus_index import indexed_corpus
from evals.datasets import Dataset, load_dataset
from evals.retrieval import evaluate
from rag.types import DEFAULT_TENANT
from tests.conftest import DATASETS, make_settings

N_QUERIES = 40
N_DISTRACTORS = 300


def scifact_slice() -> Dataset:
    """The first questions, their gold paragraphs and a fixed set of other paragraphs as distractors."""
    full = load_dataset(DATASETS / "scifact")
    queries = full.queries[:N_QUERIES]
    gold = {doc_id for q in queries for doc_id in q.gold_doc_ids}
    corpus = tuple(doc for i, doc in enumerate(full.corpus) if doc.id in gold or i < N_DISTRACTORS)
    return Dataset("scifact-slice", corpus, queries)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    dataset = scifact_slice()
    root = tmp_path_factory.mktemp("eval-index")
    with indexed_corpus(dataset, root, make_settings(root / "unused")) as service:
        result = evaluate(service, dataset, budget=1000)
        question = dataset.queries[0].question
        retrieval = service.retriever.retrieve(DEFAULT_TENANT, question, 5, 1000)
        debug = retrieval.debug
        # What ``evals/fit_trim.py`` trims: the same ranking ``retrieve`` trims, passage for passage.
        retriever, ranked = service.retriever, service.retriever.rank(DEFAULT_TENANT, question, 5)
        retrimmed = retriever.trim(ranked.candidates, ranked.reranked.ranking, ranked.chunks, 5, 1000)
        same_trim = [(p.chunk.id, p.text) for p in retrimmed] == [
            (p.chunk.id, p.text) for p in retrieval.passages
        ]
    # A second open reuses the finished index instead of building it again.
    with indexed_corpus(dataset, root, make_settings(root / "unused")) as service:
        assert service.registry.count_chunks() > 0
    return {"report": result, "debug": debug, "root": root, "same_trim": same_trim}


def test_hybrid_beats_each_single_retriever(report: dict) -> None:
    methods = report["report"]["methods"]
    assert methods["hybrid"]["ndcg@10"] > methods["bm25"]["ndcg@10"]
    assert methods["hybrid"]["ndcg@10"] > methods["dense"]["ndcg@10"]
    assert methods["oracle"]["ndcg@10"] >= max(methods["bm25"]["ndcg@10"], methods["dense"]["ndcg@10"])
    for row in methods.values():
        assert 0.0 <= row["ndcg@10"] <= 1.0 and 0.0 <= row["recall@5"] <= row["recall@20"] <= 1.0


def test_rerank_and_trim_keep_their_contracts(report: dict) -> None:
    methods = report["report"]["methods"]
    assert methods["hybrid_rerank"]["ndcg@10"] >= methods["hybrid"]["ndcg@10"] - 0.01
    assert (
        0
        < methods["hybrid_rerank"]["pairs_scored_mean"]
        <= methods["hybrid_rerank_d20"]["pairs_scored_mean"]
        == 20
    )
    trim = methods["hybrid_rerank_trim"]
    assert trim["tokens_kept_mean"] <= 1000 + 10  # the budget, plus at most the separators' rounding
    assert trim["tokens_kept_mean"] < trim["tokens_top10_mean"]
    assert trim["gold_kept_share"] >= 0.9


def test_the_response_debug_says_how_the_context_was_chosen(report: dict) -> None:
    debug = report["debug"]
    assert debug["weights"]["bm25"] + debug["weights"]["dense"] == pytest.approx(1.0, abs=1e-3)
    assert debug["reason"]
    assert set(debug["evidence"]) >= {"cjk_share", "dense_gap", "overlap"}
    assert debug["rerank"]["pairs"] >= 0 and debug["trim"]["tokens_kept"] <= 1000


def test_the_ranking_an_eval_trims_is_the_one_the_service_trims(report: dict) -> None:
    assert report["same_trim"]


def test_an_interrupted_index_build_is_started_over(report: dict, tmp_path: Path) -> None:
    dataset = Dataset("tiny", scifact_slice().corpus[:3], ())
    with indexed_corpus(dataset, tmp_path, make_settings(tmp_path / "unused")) as service:
        assert len(service.registry.list(DEFAULT_TENANT)) == 3
    ready = next(tmp_path.glob("tiny-*/READY.json"))
    ready.unlink()  # as if the build had been killed before it finished
    with indexed_corpus(dataset, tmp_path, make_settings(tmp_path / "unused")) as service:
        assert len(service.registry.list(DEFAULT_TENANT)) == 3
    assert ready.is_file()
