"""The QA eval's human-readable outputs: a Markdown report and a cost–quality plot with its Pareto frontier."""

from __future__ import annotations

from pathlib import Path

from evals.frontier import pareto_frontier
from evals.qa import BASELINE, savings

_FAILURES_SHOWN = 15


def _money(value: float) -> str:
    return f"${value:.3f}" if value < 10 else f"${value:.2f}"


def _ci(row: dict, key: str = "f1_diff_ci95") -> str:
    ci = row.get(key)
    return "—" if ci is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def table(report: dict) -> str:
    abstention = report.get("unanswerable") is not None
    against_strong = "strong_trimmed" in report["pipelines"]
    header = (
        f"| pipeline | EM | F1 (95% CI) | ΔF1 vs {BASELINE} (95% CI) |"
        + (" ΔF1 vs strong_trimmed (95% CI) |" if against_strong else "")
        + " gold in context | prompt tok/q "
        "| completion tok/q | $ per 1k q | strong share | wrong acceptance | cache hits | p50 ms | p95 ms |"
    )
    if abstention:
        header += " abstain recall | false abstain |"
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for name, row in report["pipelines"].items():
        n = row["n"]
        gold = "—" if row["gold_in_context"] is None else f"{row['gold_in_context']:.2f}"
        f1_ci = row.get("f1_ci95")
        wrong, cheap_served = row.get("wrong_acceptance_rate"), row.get("cheap_served")
        line = (
            f"| {name} | {row['em']:.3f} | {row['f1']:.3f}"
            + (f" [{f1_ci[0]:.3f}, {f1_ci[1]:.3f}]" if f1_ci else "")
            + f" | {_ci(row)} |"
            + (f" {_ci(row, 'f1_diff_vs_strong_trimmed_ci95')} |" if against_strong else "")
            + f" {gold} "
            f"| {row['prompt_tokens'] / n:.0f} | {row['completion_tokens'] / n:.1f} "
            f"| {_money(row['cost_per_1k_questions_usd'])} | {row['strong_share']:.2f} "
            f"| {'—' if wrong is None else f'{wrong:.1%} of {cheap_served}'} "
            f"| {row['cache_hit_rate']:.2f} | {_ms(row['latency_ms_p50'])} | {_ms(row['latency_ms_p95'])} |"
        )
        if abstention:
            line += f" {_share(row['abstain_recall'])} | {_share(row['false_abstain_rate'])} |"
        lines.append(line)
    return "\n".join(lines)


def _failures(report: dict, pipeline: str) -> list[str]:
    """Questions where ``pipeline`` scored below the baseline, worst first: what a person should read."""
    questions = report.get("questions", {})
    if pipeline not in questions or BASELINE not in questions or pipeline == BASELINE:
        return []
    base = {q["id"]: q for q in questions[BASELINE]}
    worse = [(base[q["id"]]["f1"] - q["f1"], q, base[q["id"]]) for q in questions[pipeline] if q["id"] in base]
    worse = sorted((w for w in worse if w[0] > 0), key=lambda w: -w[0])
    if not worse:
        return [f"No question scored lower with `{pipeline}` than with `{BASELINE}`."]
    lines = [
        f"{len(worse)} questions scored lower with `{pipeline}` than with `{BASELINE}`"
        + (f"; the {_FAILURES_SHOWN} largest drops:" if len(worse) > _FAILURES_SHOWN else ":"),
        "",
    ]
    for drop, ours, theirs in worse[:_FAILURES_SHOWN]:
        gold_ctx = {True: "yes", False: "no", None: "n/a (cache hit)"}[ours["gold_in_context"]]
        lines += [
            f"- **{ours['id']}** {ours['question']}",
            f"  - gold: {' | '.join(ours['gold'])}",
            f"  - {BASELINE} (F1 {theirs['f1']:.2f}): {theirs['answer']!r}",
            (
                f"  - {pipeline} (F1 {ours['f1']:.2f}, tier {ours['tier']}, cache {ours['cache']}, "
                f"gold documents in context: {gold_ctx}): {ours['answer']!r}"
            ),
        ]
        if ours.get("route_reason"):
            lines.append(f"  - routing: {ours['route_reason']}")
    return lines


def saving_phrase(name: str, share: float) -> str:
    """``share`` as ``savings`` gives it: 0.8 is 80% less; below 0, the pipeline costs more."""
    return f"{share:.0%} less than `{name}`" if share >= 0 else f"{-share:.0%} more than `{name}`"


def _scope(report: dict) -> str:
    n, selection = report["n_questions"], report.get("selection") or {}
    if selection.get("sample"):
        excluded = selection.get("excluded") or 0
        return f"{n} questions sampled at random (seed {selection.get('seed', 0)})" + (
            f", leaving out the {excluded} the profile was tuned on" if excluded else ""
        )
    return f"the first {n} questions" + (f" (--limit {selection['limit']})" if selection.get("limit") else "")


def markdown(report: dict) -> str:
    scope = _scope(report)
    lines = [f"# QA eval: {report['dataset']}", "", f"{scope}; costs are the service's own usage blocks, summed.", ""]
    prices = report.get("prices_usd_per_mtok")
    if prices:
        lines.append(
            "Prices (USD per million input / output tokens): "
            + "; ".join(f"{name} `{p['model']}` {p['input']} / {p['output']}" for name, p in prices.items())
        )
        lines.append("")
    lines += [table(report), ""]
    for pipeline in ("optimized", "profile"):
        saved = savings(report, pipeline)
        if saved:
            lines += [
                f"`{pipeline}` costs "
                + ", ".join(saving_phrase(name, share) for name, share in saved.items())
                + " per 1,000 questions.",
                "",
            ]
    target = "optimized" if "optimized" in report["pipelines"] else None
    if target and BASELINE in report["pipelines"]:
        lines += ["## Where `optimized` lost to the baseline", "", *_failures(report, target), ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no screen here, and none needed for a file
    import matplotlib.pyplot as plt

    points = {
        name: (row["cost_per_1k_questions_usd"], row["f1"]) for name, row in report["pipelines"].items()
    }
    frontier = pareto_frontier(points)
    # Pipelines that land on the same point (routed and optimized with no cache hits) share one label.
    labels: dict[tuple[float, float], list[str]] = {}
    for name, (cost, quality) in points.items():
        labels.setdefault((round(cost, 6), round(quality, 6)), []).append(name)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for (cost, quality), names in labels.items():
        on_frontier = any(name in frontier for name in names)
        ax.scatter(cost, quality, s=50, color="tab:blue" if on_frontier else "tab:gray", zorder=3)
        ax.annotate(" = ".join(names), (cost, quality), textcoords="offset points", xytext=(6, 4), fontsize=8)
    xs = [points[n][0] for n in frontier]
    ys = [points[n][1] for n in frontier]
    ax.step(xs, ys, where="post", color="tab:blue", linewidth=1.2, label="Pareto frontier")
    ax.set_xlabel("cost per 1,000 questions (USD)")
    ax.set_ylabel("answer F1")
    ax.set_title(f"{report['dataset']}: quality against cost ({report['n_questions']} questions)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
