"""Fits the cascade router's thresholds (``rag/generation/params/routing.json``) on DEV questions.

    python -m evals.fit_routing collect --dataset ../shared/datasets/xquad_en --skip 0 --limit 120 --out xq.jsonl
    python -m evals.fit_routing fit xq.jsonl hp.jsonl [--min-ratio 0.98] [--write]

``collect`` retrieves each question's context the way the service does by default (hybrid, rerank,
trim) and asks both tiers on that same prompt, recording both answers, their F1 and the cheap model's
token probability. ``fit`` replays every candidate setting of the router's check on those rows, through
``CascadeRouter.check`` itself, and keeps the one that answers most questions on the cheap tier (the share
averaged over the datasets) while the cascade's F1 stays at least ``--min-ratio`` (default 0.98) of the
strong tier's F1, or with ``--max-drop D`` at least the strong tier's F1 minus D, on every dataset; ties go
to the higher F1. When no setting reaches the bar, the one nearest to it wins. ``evals.fit_check collect``
writes rows this command reads too (with whether linking chose the context).

The fitted numbers are in-sample. ``fit`` also reports them *held out*: each dataset's rows are split
into two halves (odd and even positions), the grid is fitted on one half and replayed on the other, both
ways, so every question is judged by thresholds fitted without it.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from evals.corpus_index import indexed_corpus
from evals.datasets import Query, load_dataset
from evals.qa_metrics import f1
from rag.generation.prompt import build_messages, split_answer
from rag.generation.router import ROUTING_FILE, CascadeRouter, RoutingParams, load_routing, routing_json
from rag.service import Service
from rag.settings import Settings, get_settings
from rag.tokens import count_tokens
from rag.types import DEFAULT_TENANT, Chunk, Passage
from rag.usage.accounting import count_prompt_tokens
from retrieval.tokenize import tokenize

GRID = {
    "min_support": (0.5, 0.8, 1.0),
    "max_answer_words": (5, 8, 12, 30),
    "escalate_abstention": (True, False),
    "accept_yes_no": (True, False),
    "min_confidence": (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "many_passages": (3, 4),
    "min_confidence_many": (0.0, 0.2, 0.4),
    "max_echo": (0.6, 0.8, 1.0),
    "linked_max_words": (0, 1, 2),
    "min_confidence_linked": (0.0, 0.2, 0.4),
}


def passage_row(passage: Passage) -> dict[str, str]:
    """What the router reads of a passage: the text the prompt showed, the title and its retrieval score."""
    return {"title": passage.chunk.title, "text": passage.text, "score": passage.score}


def passage_from_row(row: dict[str, str]) -> Passage:
    text = row["text"]
    chunk = Chunk("c", "d", DEFAULT_TENANT, 0, text, 0, len(text), row["title"], 0)
    return Passage(chunk, float(row.get("score", 0.0)))


def collect(dataset_dir: Path, skip: int, limit: int, out: Path, index_root: Path) -> None:
    settings = get_settings().model_copy(update={"cache_enabled": False})
    dataset = load_dataset(dataset_dir)
    queries = dataset.queries[skip : skip + limit]
    with indexed_corpus(dataset, index_root, settings, generation=True) as service, out.open("w") as handle:
        service.llms[settings.cheap_tier].warm_up()
        for query in tqdm(queries, unit="q", desc=f"collect {dataset.name}", file=sys.stderr):
            retrieval = service.retriever.retrieve(
                DEFAULT_TENANT, query.question, settings.top_k, settings.token_budget
            )
            passages = list(retrieval.passages)
            row = question_row(dataset.name, query, passages) | answer_both(
                service, settings, query, passages
            )
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()


def question_row(dataset: str, query: Query, passages: list[Passage]) -> dict[str, object]:
    """What a row records of the question and of the context its prompt showed."""
    return {
        "dataset": dataset,
        "id": query.id,
        "question": query.question,
        "gold": list(query.answers),
        "lang": query.lang,
        "passages": [passage_row(p) for p in passages],
    }


def answer_both(
    service: Service, settings: Settings, query: Query, passages: list[Passage]
) -> dict[str, object]:
    """Both tiers' answers on the service's prompt over ``passages``: answer, F1 and the model's token
    probability per tier, and the prompt's counted tokens (nothing when no passage survived)."""
    if not passages:
        return {}
    messages = build_messages(query.question, passages)
    out: dict[str, object] = {"prompt_tokens": count_prompt_tokens(messages)}
    for tier in (settings.cheap_tier, settings.default_tier):
        generation = service.llms[tier].generate(messages, settings.max_answer_tokens)
        text = split_answer(generation.text, passages)[0]
        out[f"{tier}_answer"] = text
        out[f"{tier}_f1"] = f1(text, query.answers, query.lang)
        out[f"{tier}_confidence"] = generation.confidence
        out[f"{tier}_completion_tokens"] = count_tokens(generation.text)
    return out


# The grid replays the same texts thousands of times; their terms never change.
_cached_tokenize = functools.lru_cache(maxsize=None)(tokenize)


def judge(rows: list[dict], params: RoutingParams) -> list[tuple[dict, bool]]:
    """Each row that has a cheap answer, with whether the router (with ``params``) lets that answer stand."""
    router = CascadeRouter(params, _cached_tokenize)
    judged = []
    for row in rows:
        if "cheap_answer" not in row:
            continue
        passages = [passage_from_row(p) for p in row["passages"]]
        verdict = router.check(
            row["cheap_answer"], passages, row.get("cheap_confidence"), row["question"], linked=row.get("linked", False)
        )
        judged.append((row, verdict.accept))
    return judged


def summarize(judged: list[tuple[dict, bool]]) -> dict[str, dict[str, float]]:
    """Per dataset: the cascade's F1, each tier's F1 alone, and the share answered by the cheap tier."""
    by_dataset: dict[str, list[tuple[dict, bool]]] = {}
    for row, accept in judged:
        by_dataset.setdefault(row["dataset"], []).append((row, accept))
    return {
        name: {
            "n": len(items),
            "cascade_f1": statistics.fmean(r["cheap_f1"] if a else r["strong_f1"] for r, a in items),
            "strong_f1": statistics.fmean(r["strong_f1"] for r, _ in items),
            "cheap_f1": statistics.fmean(r["cheap_f1"] for r, _ in items),
            "cheap_share": statistics.fmean(a for _, a in items),
        }
        for name, items in by_dataset.items()
    }


def replay(rows: list[dict], params: RoutingParams) -> dict[str, dict[str, float]]:
    return summarize(judge(rows, params))


def fit(rows: list[dict], min_ratio: float, max_drop: float | None = None) -> tuple[RoutingParams, dict]:
    """``max_drop``: the bar is the strong tier's F1 minus this, instead of ``min_ratio`` times it."""
    best: tuple[tuple, RoutingParams, dict] | None = None
    shipped = asdict(load_routing())  # what the grid does not vary stays as shipped
    for values in itertools.product(*GRID.values()):
        params = RoutingParams(**{**shipped, **dict(zip(GRID, values))})
        if params.linked_max_words == 0 and params.min_confidence_linked > 0:
            continue  # the linked bar is off: one setting stands for all of them
        result = replay(rows, params)
        feasible = all(
            r["cascade_f1"] >= (r["strong_f1"] - max_drop if max_drop is not None else min_ratio * r["strong_f1"])
            for r in result.values()
        )
        cheap = statistics.fmean(r["cheap_share"] for r in result.values())
        quality = min(r["cascade_f1"] / max(r["strong_f1"], 1e-9) for r in result.values())
        key = (feasible, cheap if feasible else quality, quality)
        if best is None or key > best[0]:
            best = (key, params, result)
    assert best is not None
    return best[1], best[2]


def held_out(rows: list[dict], min_ratio: float, max_drop: float | None = None) -> dict[str, dict[str, float]]:
    """Two-fold cross-fitting: every row replayed with the thresholds fitted on the other half."""
    position: dict[str, int] = {}
    halves: tuple[list[dict], list[dict]] = ([], [])
    for row in rows:
        index = position[row["dataset"]] = position.get(row["dataset"], -1) + 1
        halves[index % 2].append(row)
    judged: list[tuple[dict, bool]] = []
    for train, test in ((halves[0], halves[1]), (halves[1], halves[0])):
        judged += judge(test, fit(train, min_ratio, max_drop)[0])
    return summarize(judged)


def add_collect_arguments(parser: argparse.ArgumentParser, default_skip: int) -> None:
    """Which DEV questions a ``collect`` asks, where its rows go and where the eval indexes live."""
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--skip", type=int, default=default_skip)
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--index-root", type=Path, default=Path("data/eval"))


def read_rows(paths: list[Path]) -> list[dict]:
    return [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_collect_arguments(sub.add_parser("collect"), default_skip=40)
    f = sub.add_parser("fit")
    f.add_argument("rows", type=Path, nargs="+")
    f.add_argument("--min-ratio", type=float, default=0.98)
    f.add_argument("--max-drop", type=float, help="bar: the strong tier's F1 minus this (instead of --min-ratio)")
    f.add_argument("--write", action="store_true", help=f"write the fitted parameters to {ROUTING_FILE}")
    args = parser.parse_args()
    if args.command == "collect":
        collect(args.dataset, args.skip, args.limit, args.out, args.index_root.resolve())
        return
    rows = read_rows(args.rows)
    params, result = fit(rows, args.min_ratio, args.max_drop)
    print(json.dumps({"params": asdict(params), "in_sample": result}, indent=2))
    print("held out:", json.dumps(held_out(rows, args.min_ratio, args.max_drop), indent=2))
    if args.write:
        ROUTING_FILE.write_text(routing_json(params))
        print(f"wrote {ROUTING_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()
