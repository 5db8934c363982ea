"""The cost–quality frontier of configurations measured on the same questions, with bootstrap intervals.

Every configuration answered the same questions, so the bootstrap resamples *questions* once per round
and scores every configuration on that resample (paired): a difference between two configurations is
judged on the questions both answered, which is far tighter than comparing two separate intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    """One configuration's per-question answer quality and cost, in the questions' common order."""

    f1: Sequence[float]
    cost_usd: Sequence[float]


@dataclass(frozen=True)
class Point:
    name: str
    f1: float
    cost_per_1k_usd: float
    f1_ci95: tuple[float, float]
    cost_ci95: tuple[float, float]
    on_frontier: bool
    # Paired 95% interval of (this − the best configuration's F1), the best being the highest mean F1.
    f1_vs_best_ci95: tuple[float, float]


def pareto_frontier(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """Names of the points (cost, quality) that no other point beats: none is cheaper-or-equal and better,
    cheapest first. Of points that tie on both, the first name in sorted order stands for them."""
    frontier: list[str] = []
    best = float("-inf")
    for name, (_, quality) in sorted(points.items(), key=lambda kv: (kv[1][0], -kv[1][1], kv[0])):
        if quality > best:
            frontier.append(name)
            best = quality
    return frontier


def _interval(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def analyze(scores: Mapping[str, Scores], resamples: int = 2000, seed: int = 0) -> dict[str, Point]:
    """Each configuration's mean F1 and cost per 1,000 questions, their intervals, and the frontier."""
    if not scores:
        raise ValueError("no configurations")
    names = list(scores)
    lengths = {len(s.f1) for s in scores.values()} | {len(s.cost_usd) for s in scores.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError("every configuration needs one F1 and one cost per question, for the same questions")
    f1 = np.asarray([scores[n].f1 for n in names], dtype=float)
    cost = np.asarray([scores[n].cost_usd for n in names], dtype=float) * 1000
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, f1.shape[1], size=(resamples, f1.shape[1]))
    f1_means = f1[:, picks].mean(axis=2)  # configurations × resamples
    cost_means = cost[:, picks].mean(axis=2)
    mean_f1, mean_cost = f1.mean(axis=1), cost.mean(axis=1)
    best = int(np.argmax(mean_f1))
    frontier = set(pareto_frontier({n: (mean_cost[i], mean_f1[i]) for i, n in enumerate(names)}))
    return {
        name: Point(
            name=name,
            f1=float(mean_f1[i]),
            cost_per_1k_usd=float(mean_cost[i]),
            f1_ci95=_interval(f1_means[i]),
            cost_ci95=_interval(cost_means[i]),
            on_frontier=name in frontier,
            f1_vs_best_ci95=_interval(f1_means[i] - f1_means[best]),
        )
        for i, name in enumerate(names)
    }


def choose(points: Mapping[str, Point], tolerance: float, among: Sequence[str] | None = None) -> Point:
    """The cheapest configuration (of ``among``, default all) whose mean F1 is within ``tolerance`` of the
    best mean F1 of all; ties in cost go to the higher F1."""
    if tolerance < 0:
        raise ValueError("tolerance must not be negative")
    best = max(p.f1 for p in points.values())
    names = list(among) if among is not None else list(points)
    eligible = [points[n] for n in names if points[n].f1 >= best - tolerance - 1e-12]
    if not eligible:
        raise ValueError("no configuration is within the tolerance of the best")
    return min(eligible, key=lambda p: (p.cost_per_1k_usd, -p.f1, p.name))


def dominating(
    scores: Mapping[str, Scores], name: str, resamples: int = 2000, seed: int = 0
) -> list[tuple[str, tuple[float, float], tuple[float, float]]]:
    """The configurations that beat ``name`` beyond the confidence interval: cheaper (the paired 95%
    interval of their cost difference lies below 0) *and* better (that of their F1 difference lies above
    0). Each with both intervals; an empty list means ``name`` is not dominated."""
    base = scores[name]
    base_f1, base_cost = np.asarray(base.f1, float), np.asarray(base.cost_usd, float) * 1000
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(base_f1), size=(resamples, len(base_f1)))
    out = []
    for other, s in scores.items():
        if other == name:
            continue
        d_f1 = (np.asarray(s.f1, float) - base_f1)[picks].mean(axis=1)
        d_cost = (np.asarray(s.cost_usd, float) * 1000 - base_cost)[picks].mean(axis=1)
        f1_ci, cost_ci = _interval(d_f1), _interval(d_cost)
        if f1_ci[0] > 0 and cost_ci[1] < 0:
            out.append((other, f1_ci, cost_ci))
    return out
