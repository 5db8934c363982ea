"""``evals.fit_trim report``: the cascade it replays goes through the shipped router, and its cost is the
counted tokens at the configured prices (cheap call always, strong call only when escalated)."""

from __future__ import annotations

import pytest

from evals.fit_trim import fit, focus_rows, report
from rag.settings import Settings

PASSAGE = {
    "title": "Normans",
    "text": "The Normans were descended from Norse raiders led by Rollo.",
    "score": 0.9,
}


def row(question_id: str, floor: float, cheap_answer: str, cheap_f1: float, strong_f1: float) -> dict:
    return {
        "dataset": "toy",
        "id": question_id,
        "question": "Who led the Norse raiders?",
        "gold": ["Rollo"],
        "lang": "en",
        "floor": floor,
        "passages": [PASSAGE],
        "prompt_tokens": 100,
        "cheap_answer": cheap_answer,
        "cheap_f1": cheap_f1,
        "cheap_confidence": 0.99,
        "cheap_completion_tokens": 2,
        "strong_answer": "Rollo",
        "strong_f1": strong_f1,
        "strong_confidence": 0.99,
        "strong_completion_tokens": 4,
    }


def test_report_replays_the_router_and_prices_the_counted_tokens() -> None:
    settings = Settings()
    rows = [
        row("q1", 0.3, "Rollo", 1.0, 1.0),  # supported and sure: the cheap answer stands
        row("q2", 0.3, "I don't know.", 0.0, 0.5),  # an abstention escalates
        row("q1", 0.7, "Rollo", 1.0, 1.0),
        {k: v for k, v in row("q2", 0.7, "", 0.0, 0.0).items() if not k.startswith(("cheap", "strong"))},
    ]
    lines = {line["trim"]: line for line in report(rows, settings)}
    cheap, strong = settings.tiers["cheap"], settings.tiers["strong"]
    cheap_call = (100 * cheap.input_usd_per_mtok + 2 * cheap.output_usd_per_mtok) / 1e6
    strong_call = (100 * strong.input_usd_per_mtok + 4 * strong.output_usd_per_mtok) / 1e6

    wide = lines["0.3"]
    assert wide["n"] == 2 and wide["cascade_cheap_share"] == 0.5
    assert wide["cascade_f1"] == pytest.approx(0.75)  # 1.0 from the cheap tier, 0.5 from the strong one
    assert wide["strong_f1"] == pytest.approx(0.75) and wide["cheap_f1"] == pytest.approx(0.5)
    assert wide["cascade_usd_per_1k"] == pytest.approx(round(1000 * (2 * cheap_call + strong_call) / 2, 3))

    tight = lines["0.7"]  # the question no tier answered (nothing survived the trim) is left out
    assert tight["n"] == 1 and tight["cascade_usd_per_1k"] == pytest.approx(round(1000 * cheap_call, 3))


def floor_row(dataset: str, floor: float, passages: int, strong_f1: float, prompt_tokens: int) -> dict:
    base = row("q", floor, "Rollo", strong_f1, strong_f1)
    return base | {"dataset": dataset, "passages": [PASSAGE] * passages, "prompt_tokens": prompt_tokens}


def test_fit_focuses_single_passage_questions_only_when_no_dataset_loses_f1() -> None:
    rows = [
        # one passage survives 0.3: the focused prompt is shorter and answers as well
        floor_row("single", 0.3, 1, 0.8, 300),
        floor_row("single", 0.7, 1, 0.8, 100),
        # three passages survive: focusing would lose the answer, but the rule leaves them alone at k < 3
        floor_row("spread", 0.3, 3, 1.0, 500),
        floor_row("spread", 0.7, 1, 0.0, 150),
    ]
    params, table = fit(rows, 0.3, 0.98)
    assert (params.focus_max_passages, params.focus_floor) == (1, 0.7)
    assert next(r for r in table if r["focus_max_passages"] == 3)["feasible"] is False
    chosen = focus_rows(rows, 0.3, 1, 0.7)
    assert {r["dataset"]: r["floor"] for r in chosen} == {"single": 0.7, "spread": 0.3}
    assert {line["trim"] for line in report(chosen, Settings())} == {"focus 1 at 0.7"}

    # when the single-passage questions lose F1 too, the rule stays off
    rows[1] = floor_row("single", 0.7, 1, 0.5, 100)
    params, _ = fit(rows, 0.3, 0.98)
    assert params.focus_max_passages == 0
