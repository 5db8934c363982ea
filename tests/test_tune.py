"""``rag tune`` on real models: its replayed answers are the service's answers, and the profile it writes
is loaded and run by the service as measured.

Both tiers run the packaged 0.5B model here (the strong tier keeps its strong price), as in
tests/test_qa_eval.py, so that the sweep costs seconds per prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.corpus_index import indexed_corpus
from evals.datasets import load_dataset
from evals.tune import report as tune_report
from evals.tune.space import CASCADE, CHEAP, grid
from evals.tune.sweep import configured, save, tune
from rag.profile import load_profile
from rag.types import DEFAULT_TENANT
from tests.conftest import make_settings
from tests.test_qa_eval import CHEAP_MODEL, settings, write_slice

N_QUESTIONS = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("tune")
    dataset_dir = write_slice(root / "xquad_slice")
    base = settings(root / "unused")
    configurations = grid(top_ks=(2,), floors=(0.5, 0.7), policies=(CHEAP, CASCADE), ablations=False)
    result = tune(dataset_dir, base, root, configurations, limit=N_QUESTIONS, memo_path=root / "memo.sqlite")
    return root, dataset_dir, base, result


def test_the_sweep_covers_every_configuration_on_every_question(setup) -> None:
    _, _, _, result = setup
    names = {"naive_k2", "naive_k5"} | {f"k2 floor {f}, {p}" for f in (0.5, 0.7) for p in ("cheap", "cascade")}
    assert set(result.results) == set(result.points) == names
    for run in result.results.values():
        assert [q.id for q in run.questions] == [q.id for q in result.queries]
    # the cascade's cheap calls were answered before, by the cheap policy over the same prompts: looked up
    assert sum(q.memo_hits for q in result.results["k2 floor 0.7, cascade"].questions) >= N_QUESTIONS
    # every cheap-served answer was also put to the strong tier on its prompt
    cheap = result.results["k2 floor 0.7, cheap"].questions
    assert all(q.strong_f1_same_prompt is not None for q in cheap)


def test_replayed_answers_equal_what_the_service_answers_with_that_configuration(setup) -> None:
    root, dataset_dir, base, result = setup
    name = "k2 floor 0.7, cascade"
    replayed = {q.id: q for q in result.results[name].questions}
    with indexed_corpus(load_dataset(dataset_dir), root, base, generation=True) as service:
        pipeline = service.variant(configured(service.settings, result.configurations[name]))  # no memo
        for query in result.queries:
            fresh = pipeline.answer(query.question, DEFAULT_TENANT)
            assert fresh.answer == replayed[query.id].answer
            assert fresh.usage.cost_usd == pytest.approx(replayed[query.id].cost_usd)
            assert fresh.usage.prompt_tokens == replayed[query.id].prompt_tokens


def test_the_written_profile_is_what_the_service_runs(setup, tmp_path: Path) -> None:
    root, dataset_dir, base, result = setup
    path = tmp_path / "profile.json"
    profile = save(result, path)
    assert load_profile(path) == profile
    chosen = result.configurations[result.chosen.name]
    assert profile.expected["configuration"] == result.chosen.name
    assert profile.tuned_questions == {q.id for q in result.queries}
    assert "cache_enabled" not in profile.settings  # the service keeps its answer cache
    # only what is set explicitly stands above the profile: here, where the data and models live, and the tiers
    loaded = make_settings(base.data_dir, tiers={"strong": {"model": CHEAP_MODEL}}, profile=path)
    for key, value in profile.settings.items():
        assert getattr(loaded, key) == value, key
    measured = {q.id: q.answer for q in result.results[result.chosen.name].questions}
    with indexed_corpus(load_dataset(dataset_dir), root, loaded, generation=True) as service:
        assert service.settings.top_k == chosen.context.top_k
        for query in result.queries:
            assert service.pipeline.answer(query.question, DEFAULT_TENANT).answer == measured[query.id]


def test_the_report_and_plot_are_written(setup, tmp_path: Path) -> None:
    _, _, _, result = setup
    text = tune_report.markdown(result, "rag tune --dataset xquad_slice")
    assert f"`{result.chosen.name}`" in text and "naive_k5" in text and "| configuration |" in text
    plot = tmp_path / "frontier.png"
    tune_report.plot(result, plot)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
