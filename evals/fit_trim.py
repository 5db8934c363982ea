"""How tight the token-budget trim should be, judged by answers rather than by recall.

    python -m evals.fit_trim collect --dataset ../shared/datasets/xquad_en --limit 60 --floors 0.3,0.5,0.7 --out xq.jsonl
    python -m evals.fit_trim report xq.jsonl hp.jsonl

``evals.fit_weighting trim`` picks the trim that keeps fewest tokens while the gold documents and answer
strings of the untrimmed top 10 stay in the prompt. Whether the small models answer better or worse with
less context is a different question: a distracting sentence costs tokens *and* F1. ``collect`` retrieves
each question once (hybrid, graph, rerank, as the service does), trims the ranking at every floor in
``--floors``, and asks both tiers on each trimmed prompt. Its rows have the fields of
``evals.fit_routing`` rows plus ``floor``, so the rows of one floor can also fit the router.

``fit`` replays the trim's focus rule (``TrimParams.focus_max_passages`` / ``focus_floor``: when at most
that many passages survive the shipped floor, the prompt is the one trimmed at the focus floor) for every
setting on the grid, and keeps the one with the fewest prompt tokens whose cascade F1 (what the service
answers: the cheap tier's answer where the shipped router lets it stand, the strong tier's elsewhere)
stays at least ``--min-ratio`` × the cascade F1 at the shipped floor on every dataset (no setting: the
rule stays off). A trim that helps one tier and hurts the other is judged by what the user gets.
``--routing-rows DIR`` writes the rows the kept rule selects, one file per dataset, for
``evals.fit_routing fit``.

``report`` prints, per dataset and floor (or focus rule): each tier's F1, the prompt's tokens, and the cascade with the
shipped router (``rag/generation/params/routing.json``, replayed through ``CascadeRouter.check``): its F1, its cheap
share and its generation cost per 1,000 questions at the default prices, from the counted tokens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from dataclasses import asdict, replace
from pathlib import Path

from tqdm import tqdm

from evals.corpus_index import indexed_corpus
from evals.datasets import load_dataset
from evals.fit_routing import add_collect_arguments, answer_both, judge, question_row, read_rows, summarize
from rag.generation.router import load_routing
from rag.settings import Settings, get_settings
from rag.types import DEFAULT_TENANT
from rag.usage.accounting import cost_usd
from retrieval.budget import TrimParams
from retrieval.fitted import FITTED_FILE, load_fitted, save_fitted


def collect(
    dataset_dir: Path, skip: int, limit: int, floors: list[float], out: Path, index_root: Path
) -> None:
    settings = get_settings().model_copy(update={"cache_enabled": False})
    dataset = load_dataset(dataset_dir)
    with indexed_corpus(dataset, index_root, settings, generation=True) as service, out.open("w") as handle:
        retriever = service.retriever
        for query in tqdm(
            dataset.queries[skip : skip + limit], unit="q", desc=f"trim {dataset.name}", file=sys.stderr
        ):
            ranked = retriever.rank(DEFAULT_TENANT, query.question, settings.top_k)
            for floor in floors:
                params = TrimParams(floor=floor, match_weight=retriever.trim_params.match_weight)
                passages = retriever.trim(
                    ranked.candidates,
                    ranked.reranked.ranking,
                    ranked.chunks,
                    settings.top_k,
                    settings.token_budget,
                    params,
                )
                row = question_row(dataset.name, query, passages) | {"floor": floor}
                row |= answer_both(service, settings, query, passages)
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                handle.flush()


def report(rows: list[dict], settings: Settings) -> list[dict[str, object]]:
    """One line per dataset and trim (the row's ``trim`` label if a focus rule chose it, else its floor),
    over the questions where both tiers answered."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        if "strong_f1" in row:
            groups[(row["dataset"], str(row.get("trim", row["floor"])))].append(row)
    cheap, strong = settings.tiers[settings.cheap_tier], settings.tiers[settings.default_tier]
    lines = []
    for (dataset, trim), items in sorted(groups.items()):
        judged = judge(items, load_routing())

        def cost(row: dict, accept: bool) -> float:
            spent = cost_usd(cheap, row["prompt_tokens"], row["cheap_completion_tokens"])
            if not accept:
                spent += cost_usd(strong, row["prompt_tokens"], row["strong_completion_tokens"])
            return spent

        summary = summarize(judged)[dataset]
        lines.append(
            {
                "dataset": dataset,
                "trim": trim,
                "n": summary["n"],
                "prompt_tokens": round(statistics.fmean(r["prompt_tokens"] for r in items), 1),
                "passages": round(statistics.fmean(len(r["passages"]) for r in items), 2),
                "cheap_f1": round(summary["cheap_f1"], 3),
                "strong_f1": round(summary["strong_f1"], 3),
                "cascade_f1": round(summary["cascade_f1"], 3),
                "cascade_cheap_share": round(summary["cheap_share"], 2),
                "cascade_usd_per_1k": round(1000 * statistics.fmean(cost(r, a) for r, a in judged), 3),
            }
        )
    return lines


def focus_rows(rows: list[dict], base: float, focus_max_passages: int, focus_floor: float) -> list[dict]:
    """Per question, the row whose prompt the service would send under the focus rule."""
    by_question: dict[tuple[str, str], dict[float, dict]] = defaultdict(dict)
    for row in rows:
        by_question[(row["dataset"], row["id"])][row["floor"]] = row
    label = f"focus {focus_max_passages} at {focus_floor}" if focus_max_passages else str(base)
    chosen = []
    for floors in by_question.values():
        survived = len(floors[base]["passages"])
        focused = 0 < survived <= focus_max_passages
        chosen.append(floors[focus_floor if focused else base] | {"trim": label})
    return chosen


def cascade_f1(rows: list[dict]) -> float:
    """The service's answer quality on these rows: the cheap answer where the shipped router lets it
    stand, the strong one elsewhere (a question no tier answered scores 0)."""
    accepted = {id(r) for r, accept in judge(rows, load_routing()) if accept}
    return statistics.fmean(r["cheap_f1"] if id(r) in accepted else r.get("strong_f1", 0.0) for r in rows)


def fit(rows: list[dict], base: float, min_ratio: float) -> tuple[TrimParams, list[dict[str, object]]]:
    """Every focus setting on the grid, judged against the base floor; the kept one and the table."""
    floors = sorted({row["floor"] for row in rows if row["floor"] > base})
    grid = [(0, base)] + [(k, f) for k in range(1, 6) for f in floors]

    def means(chosen: list[dict]) -> dict[str, tuple[float, float, float]]:
        per: dict[str, list[dict]] = defaultdict(list)
        for row in chosen:
            per[row["dataset"]].append(row)
        return {
            name: (
                cascade_f1(items),
                statistics.fmean(r.get("cheap_f1", 0.0) for r in items),
                statistics.fmean(r.get("prompt_tokens", 0) for r in items),
            )
            for name, items in sorted(per.items())
        }

    reference = means(focus_rows(rows, base, 0, base))
    table, best = [], None
    for k, floor in grid:
        result = means(focus_rows(rows, base, k, floor))
        feasible = all(result[n][0] >= min_ratio * reference[n][0] for n in reference)
        tokens = statistics.fmean(result[n][2] / reference[n][2] for n in reference)
        line: dict[str, object] = {"focus_max_passages": k, "focus_floor": floor, "feasible": feasible}
        for name, (cascade, cheap, prompt) in result.items():
            line |= {
                f"{name} cascade_f1": round(cascade, 3),
                f"{name} cheap_f1": round(cheap, 3),
                f"{name} prompt_tokens": round(prompt, 1),
            }
        table.append(line)
        if feasible and (best is None or tokens < best[0]):
            best = (tokens, k, floor)
    assert best is not None  # the rule switched off is always feasible
    return TrimParams(floor=base, focus_max_passages=best[1], focus_floor=best[2] if best[1] else 0.0), table


def print_table(lines: list[dict[str, object]]) -> None:
    columns = list(lines[0]) if lines else []
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for line in lines:
        print("| " + " | ".join(str(line[k]) for k in columns) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect")
    add_collect_arguments(c, default_skip=0)
    c.add_argument("--floors", default="0.3,0.5,0.7", help="comma-separated trim floors")
    r = sub.add_parser("report")
    r.add_argument("rows", type=Path, nargs="+")
    f = sub.add_parser("fit")
    f.add_argument("rows", type=Path, nargs="+")
    f.add_argument("--min-ratio", type=float, default=0.98)
    f.add_argument("--routing-rows", type=Path, help="write the kept rule's rows here, one file per dataset")
    f.add_argument("--write", action="store_true", help=f"write the focus rule to {FITTED_FILE}")
    args = parser.parse_args()
    if args.command == "collect":
        floors = [float(f) for f in args.floors.split(",")]
        collect(args.dataset, args.skip, args.limit, floors, args.out, args.index_root.resolve())
        return
    rows = read_rows(args.rows)
    if args.command == "report":
        print_table(report(rows, get_settings()))
        return
    fitted = load_fitted()
    params, table = fit(rows, fitted.trim.floor, args.min_ratio)
    print_table(table)
    print(json.dumps(asdict(params)))
    if args.routing_rows:
        args.routing_rows.mkdir(parents=True, exist_ok=True)
        chosen = focus_rows(rows, params.floor, params.focus_max_passages, params.focus_floor)
        for name in sorted({row["dataset"] for row in chosen}):
            lines = [json.dumps(row, ensure_ascii=False) for row in chosen if row["dataset"] == name]
            (args.routing_rows / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    if args.write:
        focus = {"focus_max_passages": params.focus_max_passages, "focus_floor": params.focus_floor}
        save_fitted(replace(fitted, trim=replace(fitted.trim, **focus)))
        print(f"wrote {FITTED_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()
