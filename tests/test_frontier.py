"""The cost–F1 frontier, its bootstrap intervals and the tuned choice, on fixed inputs worked by hand."""

from __future__ import annotations

import pytest

from evals.frontier import Scores, analyze, choose, dominating, pareto_frontier


def test_pareto_frontier_keeps_only_undominated_points() -> None:
    points = {"a": (1.0, 0.5), "b": (2.0, 0.4), "c": (3.0, 0.7), "d": (0.5, 0.3)}
    assert pareto_frontier(points) == ["d", "a", "c"]


def test_a_tie_on_both_axes_keeps_one_name_and_a_costlier_equal_is_dominated() -> None:
    points = {"b": (1.0, 0.5), "a": (1.0, 0.5), "c": (2.0, 0.5)}
    assert pareto_frontier(points) == ["a"]


# Four questions; F1 and cost (USD per question) per configuration.
SCORES = {
    "expensive": Scores(f1=[1.0, 1.0, 0.0, 1.0], cost_usd=[0.004, 0.004, 0.004, 0.004]),
    "cheap_same": Scores(f1=[1.0, 1.0, 0.0, 1.0], cost_usd=[0.001, 0.001, 0.001, 0.001]),
    "cheap_worse": Scores(f1=[0.0, 1.0, 0.0, 0.0], cost_usd=[0.0005] * 4),
    "middle": Scores(f1=[1.0, 0.5, 0.0, 1.0], cost_usd=[0.002] * 4),
}


def test_means_per_thousand_questions_and_the_frontier() -> None:
    points = analyze(SCORES, resamples=500)
    assert points["expensive"].f1 == pytest.approx(0.75)
    assert points["expensive"].cost_per_1k_usd == pytest.approx(4.0)
    assert points["cheap_same"].cost_per_1k_usd == pytest.approx(1.0)
    assert {n for n, p in points.items() if p.on_frontier} == {"cheap_worse", "cheap_same"}
    # identical answers to the best: the paired interval of the difference is exactly zero
    assert points["cheap_same"].f1_vs_best_ci95 == (0.0, 0.0)
    low, high = points["cheap_worse"].f1_ci95
    assert 0.0 <= low <= 0.25 <= high <= 1.0


def test_choose_takes_the_cheapest_within_the_tolerance_of_the_best() -> None:
    points = analyze(SCORES, resamples=200)
    assert choose(points, tolerance=0.0).name == "cheap_same"
    assert choose(points, tolerance=0.5).name == "cheap_worse"  # 0.25 ≥ 0.75 − 0.5
    assert choose(points, tolerance=0.0, among=["expensive", "middle"]).name == "expensive"
    with pytest.raises(ValueError, match="negative"):
        choose(points, tolerance=-0.1)


def test_dominating_needs_both_intervals_clear_of_zero() -> None:
    n = 40
    base = Scores(f1=[0.0] * (n // 2) + [1.0] * (n // 2), cost_usd=[0.002] * n)
    better_and_cheaper = Scores(f1=[1.0] * n, cost_usd=[0.001] * n)
    cheaper_not_better = Scores(f1=list(base.f1), cost_usd=[0.001] * n)
    better_not_cheaper = Scores(f1=[1.0] * n, cost_usd=[0.003] * n)
    found = dominating(
        {"base": base, "a": better_and_cheaper, "b": cheaper_not_better, "c": better_not_cheaper}, "base"
    )
    assert [name for name, *_ in found] == ["a"]
    _, f1_ci, cost_ci = found[0]
    assert f1_ci[0] > 0 and cost_ci[1] < 0


def test_inconsistent_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="same questions"):
        analyze({"a": Scores([1.0, 0.0], [0.1, 0.1]), "b": Scores([1.0], [0.1])})
    with pytest.raises(ValueError, match="no configurations"):
        analyze({})
