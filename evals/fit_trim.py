"""How tight the token-budget trim should be, judged by answers rather than by recall.

    python -m evals.fit_trim collect --dataset ../shared/datasets/xquad_en --limit 60 --floors 0.3,0.5,0.7 --out xq.jsonl
    python -m evals.fit_trim report xq.jsonl hp.jsonl

``evals.fit_weighting trim`` picks the trim that keeps fewest tokens while the gold documents and answer
strings of the untrimmed top 10 stay in the prompt. Whether the small models answer better or worse with
less context is a different question: a distracting sentence costs tokens *and* F1. ``collect`` retrieves
each question once (hybrid, graph, rerank, as the service does), trims the ranking at every floor in
``--floors``, and asks both tiers on each trimmed prompt. Its rows have the fields of
``evals.fit_routing`` rows plus ``floor``, so the rows of one floor can also fit the router.

``report`` prints, per dataset and floor: each tier's F1, the prompt's tokens, and the cascade with the
shipped router (``rag/params/routing.json``, replayed through ``CascadeRouter.check``): its F1, its cheap
share and its generation cost per 1,000 questions at the default prices, from the counted tokens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from evals.corpus_index import indexed_corpus
from evals.datasets import load_dataset
from evals.fit_routing import add_collect_arguments, answer_both, judge, question_row, read_rows
from rag.accounting import cost_usd
from rag.router import load_routing
from rag.settings import Settings, get_settings
from rag.types import DEFAULT_TENANT
from retrieval.budget import TrimParams


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
            candidates = retriever.candidates(DEFAULT_TENANT, query.question)
            weights = retriever.weigh(candidates)
            fused, _ = retriever.with_graph(candidates, retriever.fuse(candidates, weights), weights)
            chunks = retriever.hydrate(fused, retriever.hydrate_depth(settings.top_k))
            ranking = retriever.rerank(candidates, fused, chunks, weights).ranking
            for floor in floors:
                params = TrimParams(floor=floor, match_weight=retriever.trim_params.match_weight)
                passages = retriever.trim(
                    candidates, ranking, chunks, settings.top_k, settings.token_budget, params
                )
                row = question_row(dataset.name, query, passages) | {"floor": floor}
                row |= answer_both(service, settings, query, passages)
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                handle.flush()


def report(rows: list[dict], settings: Settings) -> list[dict[str, object]]:
    """One line per (dataset, floor), over the questions where both tiers answered."""
    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for row in rows:
        if "strong_f1" in row:
            groups[(row["dataset"], row["floor"])].append(row)
    cheap, strong = settings.tiers[settings.cheap_tier], settings.tiers[settings.default_tier]
    lines = []
    for (dataset, floor), items in sorted(groups.items()):
        judged = judge(items, load_routing())

        def cost(row: dict, accept: bool) -> float:
            spent = cost_usd(cheap, row["prompt_tokens"], row["cheap_completion_tokens"])
            if not accept:
                spent += cost_usd(strong, row["prompt_tokens"], row["strong_completion_tokens"])
            return spent

        lines.append(
            {
                "dataset": dataset,
                "floor": floor,
                "n": len(items),
                "prompt_tokens": round(statistics.fmean(r["prompt_tokens"] for r in items), 1),
                "passages": round(statistics.fmean(len(r["passages"]) for r in items), 2),
                "cheap_f1": round(statistics.fmean(r["cheap_f1"] for r in items), 3),
                "strong_f1": round(statistics.fmean(r["strong_f1"] for r in items), 3),
                "cascade_f1": round(
                    statistics.fmean(r["cheap_f1"] if a else r["strong_f1"] for r, a in judged), 3
                ),
                "cascade_cheap_share": round(statistics.fmean(a for _, a in judged), 2),
                "cascade_usd_per_1k": round(1000 * statistics.fmean(cost(r, a) for r, a in judged), 3),
            }
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect")
    add_collect_arguments(c, default_skip=0)
    c.add_argument("--floors", default="0.3,0.5,0.7", help="comma-separated trim floors")
    r = sub.add_parser("report")
    r.add_argument("rows", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "collect":
        floors = [float(f) for f in args.floors.split(",")]
        collect(args.dataset, args.skip, args.limit, floors, args.out, args.index_root.resolve())
        return
    rows = read_rows(args.rows)
    lines = report(rows, get_settings())
    columns = list(lines[0]) if lines else []
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for line in lines:
        print("| " + " | ".join(str(line[k]) for k in columns) + " |")


if __name__ == "__main__":
    main()
