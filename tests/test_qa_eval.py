"""The QA harness end to end on real models: five xquad_en questions, two pipelines, in-process and over
HTTP. Checks the JSON shape, that its token and cost totals are the sums of the per-question usage blocks,
and that the report and the plot are written.

Both tiers run the packaged 0.5B model here (the strong tier keeps its strong price), so the test
exercises routing and accounting at a fraction of the strong model's time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals import qa, qa_report
from evals.datasets import load_dataset, select_queries
from tests.conftest import DATASETS, LiveServer, make_settings

N_QUESTIONS = 5
N_DISTRACTORS = 12
CHEAP_MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"


def write_slice(folder: Path) -> Path:
    full = load_dataset(DATASETS / "xquad_en")
    queries = full.queries[:N_QUESTIONS]
    gold = {d for q in queries for d in q.gold_doc_ids}
    corpus = [d for i, d in enumerate(full.corpus) if d.id in gold or i < N_DISTRACTORS]
    folder.mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as handle:
        for doc in corpus:
            handle.write(json.dumps({"id": doc.id, "title": doc.title, "text": doc.text}) + "\n")
    with (folder / "queries.jsonl").open("w") as handle:
        for q in queries:
            row = {"id": q.id, "question": q.question, "answers": list(q.answers), "gold_doc_ids": list(q.gold_doc_ids)}
            handle.write(json.dumps(row) + "\n")
    return folder


def settings(data_dir: Path):
    return make_settings(data_dir, tiers={"strong": {"model": CHEAP_MODEL}})


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_slice(tmp_path_factory.mktemp("qa") / "xquad_slice")


@pytest.fixture(scope="module")
def report(dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("qa-index")
    return qa.run(
        dataset_dir, settings(root / "unused"), root, ["naive_k5", "optimized"], limit=N_QUESTIONS,
        memo_path=root / "memo.sqlite",
    )


def assert_usage_sums(report: dict, pipeline: str) -> None:
    row, questions = report["pipelines"][pipeline], report["questions"][pipeline]
    assert len(questions) == row["n"] == report["n_questions"] == N_QUESTIONS
    for key in ("prompt_tokens", "completion_tokens", "cost_usd"):
        assert row[key] == pytest.approx(sum(q[key] for q in questions))
    per_tier_prompt = sum(t["prompt_tokens"] for t in row["tiers"].values())
    assert per_tier_prompt == row["prompt_tokens"]
    assert row["cost_per_1k_questions_usd"] == pytest.approx(row["cost_usd"] / N_QUESTIONS * 1000)


def test_report_has_the_documented_shape_and_sums(report: dict) -> None:
    assert report["dataset"] == "xquad_slice" and report["n_questions"] == N_QUESTIONS
    assert set(report["pipelines"]) == {"naive_k5", "optimized"}
    keys = {
        "em", "f1", "f1_ci95", "f1_diff_ci95", "prompt_tokens", "completion_tokens", "cost_usd",
        "cost_per_1k_questions_usd", "strong_share", "cache_hit_rate", "latency_ms_p50", "latency_ms_p95",
        "wrong_acceptance_rate", "cheap_served", "abstain_rate",
    }
    for name, row in report["pipelines"].items():
        assert keys <= set(row), name
        assert 0.0 <= row["em"] <= row["f1"] <= 1.0 or row["em"] <= 1.0
        assert_usage_sums(report, name)
    naive, optimized = report["pipelines"]["naive_k5"], report["pipelines"]["optimized"]
    assert naive["strong_share"] == 1.0 and naive["cache_hit_rate"] == 0.0
    assert naive["f1_diff_ci95"] == [0.0, 0.0]
    low, high = optimized["f1_diff_ci95"]
    assert low <= high
    # naive top-5 sends five whole chunks; the default trims, and its cheap tier is priced far lower
    assert optimized["prompt_tokens"] < naive["prompt_tokens"]
    assert optimized["cost_usd"] < naive["cost_usd"]
    assert set(report["questions"]["optimized"][0]) >= {"answer", "f1", "tier", "route_reason", "gold_in_context"}
    low, high = optimized["f1_ci95"]
    assert low <= optimized["f1"] <= high


def test_wrong_acceptance_compares_each_cheap_served_answer_with_the_strong_tier_on_its_prompt(report: dict) -> None:
    rows = report["questions"]["optimized"]
    served_cheap = [r for r in rows if r["cache"] == "miss" and r["tier"] == "cheap"]
    assert all(r["strong_f1_same_prompt"] is not None for r in served_cheap)
    assert all(r["strong_f1_same_prompt"] is None for r in rows if r["tier"] == "strong")
    assert report["pipelines"]["optimized"]["cheap_served"] == len(served_cheap)
    if served_cheap:
        wrong = sum(r["f1"] < r["strong_f1_same_prompt"] for r in served_cheap) / len(served_cheap)
        assert report["pipelines"]["optimized"]["wrong_acceptance_rate"] == pytest.approx(wrong)
    assert report["pipelines"]["naive_k5"]["wrong_acceptance_rate"] is None  # the strong tier served all


def test_a_seeded_sample_with_unanswerable_questions_reports_abstention(
    dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("qa-unanswerable")
    run = qa.run(
        dataset_dir, settings(root / "unused"), root, ["optimized"], sample=4, seed=3, unanswerable=0.5,
        memo_path=root / "memo.sqlite",
    )
    again = select_queries(load_dataset(dataset_dir).queries, sample=4, seed=3)
    rows = run["questions"]["optimized"]
    assert [r["id"] for r in rows] == [q.id for q in again]  # the same seed draws the same questions
    assert run["unanswerable"]["questions"] == sum(not r["answerable"] for r in rows) >= 2
    assert run["selection"] == {"limit": None, "sample": 4, "seed": 3, "excluded": 0}
    row = run["pipelines"]["optimized"]
    unanswerable = [r for r in rows if not r["answerable"]]
    assert row["abstain_recall"] == pytest.approx(sum(r["abstained"] for r in unanswerable) / len(unanswerable))
    assert row["false_abstain_rate"] is not None
    assert "abstain recall" in qa_report.table(run)


def test_markdown_report_and_plot_are_written(report: dict, tmp_path: Path) -> None:
    text = qa_report.markdown(report)
    assert "| naive_k5 |" in text and "| optimized |" in text and "less than `naive_k5`" in text
    plot = tmp_path / "plot.png"
    qa_report.plot(report, plot)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_pipeline_that_costs_more_says_so() -> None:
    assert qa_report.saving_phrase("naive_k5", 0.27) == "27% less than `naive_k5`"
    assert qa_report.saving_phrase("naive_k2", -0.51) == "51% more than `naive_k2`"


def test_unknown_or_contradictory_pipelines_fail_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown pipeline"):
        qa.pipeline_settings(settings(tmp_path), "naive_k7")


def test_the_same_questions_over_http_read_the_service_usage_blocks(dataset_dir: Path, tmp_path: Path) -> None:
    with LiveServer(settings(tmp_path / "served")) as server:
        report = qa.run_remote(dataset_dir, server.url, limit=N_QUESTIONS, api_key=server.key)
        documents = server.service.registry.list("default")
    assert len(documents) == sum(1 for _ in (dataset_dir / "corpus.jsonl").open())  # the corpus was uploaded
    assert set(report["pipelines"]) == {"service"}
    assert_usage_sums(report, "service")
    row = report["pipelines"]["service"]
    assert row["gold_in_context"] is not None and row["f1_diff_ci95"] is None
