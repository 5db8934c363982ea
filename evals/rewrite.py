"""``rag eval rewrite``: follow-up questions made standalone, scored against people's rewrites (CANARD).

    rag eval rewrite --dataset ../shared/datasets/canard --out rewrite.json [--sample N --seed S | --limit N]

Each turn's earlier turns and question go to the service's rewriter, with the article and section title
as the conversation's topic (the asker knew them). Scored on content words (``retrieval.tokenize``:
stemmed, stopwords out) against the person's rewrite:

- added-word recall: of the words the person added to the question, the share the method's rewrite has;
- added-word precision: of the words the method added, the share the person added too;
- unchanged rate: of the turns the person left as they were, the share the method left as they were;
- cost (at the cheap tier's prices, from the counted tokens), tokens and latency per rewrite.

Beside the system, two baselines: the question as asked, and the question with the previous turn's
question prepended. Micro-averaged over turns; the rewrites are memoized by prompt like every eval's.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from evals.generation_memo import GenerationMemo, MemoizedLLM
from rag.conversation.rewriter import FollowUpRewriter, Rewrite
from rag.generation.llm.factory import build_llm
from rag.service import follow_up_rewriter
from rag.settings import Settings
from rag.types import Turn
from retrieval.tokenize import tokenize


@dataclass(frozen=True)
class CanardTurn:
    id: str
    dialog_id: str
    turn: int
    topic: str
    history: tuple[Turn, ...]
    question: str
    rewrite: str


def load_turns(folder: Path) -> list[CanardTurn]:
    path = folder / "turns.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a CANARD folder holds turns.jsonl (see its README)")
    turns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        turns.append(
            CanardTurn(
                id=row["id"],
                dialog_id=row["dialog_id"],
                turn=row["turn"],
                topic=f"{row['title']}: {row['section']}" if row.get("section") else row["title"],
                history=tuple(Turn(h["question"], h["answer"]) for h in row["history"]),
                question=row["question"],
                rewrite=row["rewrite"],
            )
        )
    return turns


def content_words(text: str) -> set[str]:
    return set(tokenize(text))


def score(turns: Sequence[CanardTurn], outputs: Sequence[str]) -> dict[str, float | int | None]:
    """Added-word recall and precision (micro-averaged) and the unchanged rate of one method's outputs."""
    both = added_by_person = added_by_method = kept_by_person = kept_by_both = 0
    for turn, output in zip(turns, outputs, strict=True):
        asked = content_words(turn.question)
        person = content_words(turn.rewrite) - asked
        method = content_words(output) - asked
        both += len(person & method)
        added_by_person += len(person)
        added_by_method += len(method)
        if content_words(turn.rewrite) == asked:
            kept_by_person += 1
            kept_by_both += content_words(output) == asked
    return {
        "added_word_recall": both / added_by_person if added_by_person else None,
        "added_word_precision": both / added_by_method if added_by_method else None,
        "unchanged_rate": kept_by_both / kept_by_person if kept_by_person else None,
        "turns_person_left_unchanged": kept_by_person,
    }


def previous_question(turn: CanardTurn) -> str:
    return f"{turn.history[-1].question} {turn.question}" if turn.history else turn.question


BASELINES: dict[str, Callable[[CanardTurn], str]] = {
    "as_asked": lambda turn: turn.question,
    "previous_question": previous_question,
}


def rewriter_for(settings: Settings, memo: GenerationMemo) -> tuple[FollowUpRewriter, MemoizedLLM]:
    """The service's rewriter (cheap tier, the configured history bound) behind the memo of prompts."""
    llm = MemoizedLLM(build_llm(settings.tiers[settings.cheap_tier], settings), memo)
    return follow_up_rewriter(settings, {settings.cheap_tier: llm}), llm


def run(turns: Sequence[CanardTurn], settings: Settings, memo_path: Path) -> dict[str, object]:
    memo = GenerationMemo(memo_path)
    try:
        rewriter, llm = rewriter_for(settings, memo)
        llm.warm_up()
        rewrites: list[Rewrite] = []
        latencies: list[float] = []  # seconds per rewrite that ran the model (not answered from the memo)
        for turn in tqdm(turns, unit="turn", desc="rewrite", file=sys.stderr):
            hits, started = llm.hits, time.perf_counter()
            rewrite = rewriter.rewrite(turn.question, turn.history, turn.topic)
            if rewrite.generations and llm.hits == hits:
                latencies.append(time.perf_counter() - started)
            rewrites.append(rewrite)
    finally:
        memo.close()
    system = score(turns, [r.question for r in rewrites])
    calls = [g for r in rewrites for g in r.generations]
    n = len(turns)
    system |= {
        "cost_usd_per_rewrite": sum(g.cost_usd for g in calls) / n,
        "prompt_tokens_per_rewrite": sum(g.prompt_tokens for g in calls) / n,
        "completion_tokens_per_rewrite": sum(g.completion_tokens for g in calls) / n,
        "model_calls_per_rewrite": len(calls) / n,
        "sent_to_the_model": sum(r.reason is not None for r in rewrites) / n,
        "latency_ms_p50": statistics.median(latencies) * 1000 if latencies else None,
        "latency_ms_p95": statistics.quantiles(latencies, n=20)[-1] * 1000 if len(latencies) >= 20 else None,
        "latency_measured_on": len(latencies),
        "model": settings.tiers[settings.cheap_tier].model,
    }
    result: dict[str, object] = {"turns": n, "system": system}
    for name, baseline in BASELINES.items():
        result[name] = score(turns, [baseline(t) for t in turns]) | {"cost_usd_per_rewrite": 0.0}
    result["rows"] = [
        {"id": t.id, "question": t.question, "person": t.rewrite, "system": r.question, "reason": r.reason}
        for t, r in zip(turns, rewrites, strict=True)
    ]
    return result


def table(result: dict) -> str:
    lines = [
        "| method | added-word recall | added-word precision | unchanged rate | $ per rewrite |",
        "|---|---|---|---|---|",
    ]
    for name in ("system", *BASELINES):
        row = result[name]
        cells = [_fmt(row[k]) for k in ("added_word_recall", "added_word_precision", "unchanged_rate")]
        lines.append(f"| {name} | {' | '.join(cells)} | ${row['cost_usd_per_rewrite']:.7f} |")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
