"""What ``rag tune`` tells a person: the frontier as a table and a plot, the choice and its saving."""

from __future__ import annotations

from pathlib import Path

from evals.tune.space import BASELINE
from evals.tune.sweep import TuneResult


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _ci(ci: list[float] | tuple[float, float] | None) -> str:
    return "—" if ci is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def table(result: TuneResult, frontier_only: bool = False) -> str:
    lines = [
        (
            f"| configuration | F1 (95% CI) | ΔF1 vs {BASELINE} (95% CI) | $ per 1k q | vs {BASELINE} "
            "| prompt tok/q | strong share | wrong acceptance (of cheap-served) | frontier |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(result.points.values(), key=lambda p: (p.cost_per_1k_usd, -p.f1))
    for point in ordered:
        if frontier_only and not point.on_frontier and point.name not in (BASELINE, result.chosen.name):
            continue
        s = result.summary(point.name)
        saving = result.saving_vs_baseline(point.name)
        name = f"**{point.name}** (chosen)" if point.name == result.chosen.name else point.name
        wrong, cheap_served = s["wrong_acceptance_rate"], s["cheap_served"]
        lines.append(
            f"| {name} | {point.f1:.3f} [{point.f1_ci95[0]:.3f}, {point.f1_ci95[1]:.3f}] "
            f"| {_ci(s['f1_vs_naive_k5_ci95'])} | ${point.cost_per_1k_usd:.3f} "
            f"| {'—' if saving is None else f'{-saving:+.0%}'} | {s['prompt_tokens_per_question']:.0f} "
            f"| {s['strong_share']:.2f} "
            f"| {'—' if wrong is None else f'{wrong:.1%} of {cheap_served}'} "
            f"| {'yes' if point.on_frontier else ''} |"
        )
    return "\n".join(lines)


def markdown(result: TuneResult, command: str) -> str:
    chosen = result.chosen
    saving = result.saving_vs_baseline(chosen.name)
    best = max(result.points.values(), key=lambda p: p.f1)
    lines = [
        f"# rag tune: {result.dataset}",
        "",
        f"`{command}`",
        "",
        (
            f"{len(result.queries)} questions, {len(result.points)} configurations, each run through the "
            "service's own pipeline; F1 intervals are 95% bootstrap intervals over the questions, differences "
            "are paired."
        ),
        "",
        "## The choice",
        "",
        f"- Best F1: `{best.name}`, {best.f1:.3f} at ${best.cost_per_1k_usd:.3f} per 1,000 questions.",
        (
            f"- Chosen (the cheapest within {result.tolerance:.3f} F1 of the best): `{chosen.name}`, F1 "
            f"{chosen.f1:.3f} [{chosen.f1_ci95[0]:.3f}, {chosen.f1_ci95[1]:.3f}] at "
            f"${chosen.cost_per_1k_usd:.3f} per 1,000 questions."
        ),
    ]
    if saving is not None:
        base = result.points[BASELINE]
        lines.append(
            f"- Against `{BASELINE}` (dense top 5, strong tier; F1 {base.f1:.3f} at ${base.cost_per_1k_usd:.3f}): "
            f"{saving:.0%} {'less' if saving >= 0 else 'more'} money, F1 difference "
            f"{_ci(result.summary(chosen.name)['f1_vs_naive_k5_ci95'])}."
        )
    beaten = result.dominated_by(chosen.name)
    lines.append(
        "- No configuration is both cheaper and better than the choice beyond the intervals."
        if not beaten
        else "- Cheaper and better beyond the intervals: " + ", ".join(f"`{n}`" for n, *_ in beaten)
    )
    lines += [
        "",
        (
            "These numbers are in-sample: the choice was made on these questions. Check the profile on "
            "others with `rag eval qa --profile` (it leaves out the questions the profile was tuned on)."
        ),
        "",
        "## The frontier (and the baseline)",
        "",
        table(result, frontier_only=True),
        "",
        "## Every configuration",
        "",
        table(result),
        "",
    ]
    return "\n".join(lines)


def plot(result: TuneResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted(result.points.values(), key=lambda p: p.cost_per_1k_usd)
    frontier = [p for p in points if p.on_frontier]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    others = [p for p in points if not p.on_frontier]
    ax.scatter([p.cost_per_1k_usd for p in others], [p.f1 for p in others], s=18, color="tab:gray", alpha=0.6,
               label="other configurations", zorder=2)
    ax.errorbar(
        [p.cost_per_1k_usd for p in frontier],
        [p.f1 for p in frontier],
        yerr=[[p.f1 - p.f1_ci95[0] for p in frontier], [p.f1_ci95[1] - p.f1 for p in frontier]],
        fmt="o", color="tab:blue", capsize=3, label="frontier (95% CI of F1)", zorder=3,
    )
    ax.step([p.cost_per_1k_usd for p in frontier], [p.f1 for p in frontier], where="post", color="tab:blue",
            linewidth=1)
    for special, color, label in ((result.points.get(BASELINE), "tab:red", BASELINE),
                                  (result.chosen, "tab:green", "chosen")):
        if special is not None:
            ax.scatter([special.cost_per_1k_usd], [special.f1], s=90, facecolors="none", edgecolors=color,
                       linewidths=2, zorder=4, label=f"{label}: {special.name}")
    ax.set_xlabel("cost per 1,000 questions (USD)")
    ax.set_ylabel("answer F1")
    ax.set_title(f"{result.dataset}: {len(result.points)} configurations, {len(result.queries)} questions")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
