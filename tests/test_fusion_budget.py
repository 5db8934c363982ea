"""Fusion math, the per-query weight, adaptive rerank and the token-budget trim on small inputs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rag.sentences import sentence_spans
from rag.tokens import count_tokens
from rag.types import Chunk, Passage, ScoredId
from retrieval.budget import TrimParams, trim_to_budget
from retrieval.fusion import convex_combination, min_max, reciprocal_rank_fusion, standardized_combination
from retrieval.rerank import RerankParams, adaptive_rerank
from retrieval.tokenize import tokenize
from retrieval.weighting import QueryEvidence, QueryWeigher, WeightingParams, query_evidence


def ids(*names: str) -> list[ScoredId]:
    return [ScoredId(name, 1.0) for name in names]


def test_rrf_rewards_agreement_and_keeps_first_seen_order_on_ties() -> None:
    fused = reciprocal_rank_fusion([ids("a", "b", "c"), ids("b", "d")], k=60)
    assert [hit.chunk_id for hit in fused] == ["b", "a", "d", "c"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert fused[1].score == pytest.approx(1 / 61)


def test_rrf_weights_and_validation() -> None:
    fused = reciprocal_rank_fusion([ids("a"), ids("b")], weights=[1.0, 3.0])
    assert [hit.chunk_id for hit in fused] == ["b", "a"]
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([ids("a")], weights=[1.0, 2.0])
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([ids("a")], k=0)


def passage(name: str, text: str) -> Passage:
    chunk = Chunk(
        id=name,
        document_id="d",
        tenant="t",
        index=0,
        text=text,
        start=10,
        end=10 + len(text),
        title="T",
        token_count=count_tokens(text),
    )
    return Passage(chunk, 1.0)


def passage_tokens(p: Passage) -> int:
    return count_tokens(p.text)


def test_trim_keeps_whole_passages_in_rank_order_within_budget() -> None:
    passages = [passage(n, "word " * size) for n, size in (("a", 40), ("b", 50), ("c", 5))]
    kept = trim_to_budget(passages, 60)
    assert [p.chunk.id for p in kept] == ["a", "c"]
    assert all(p.kept == () for p in kept)  # whole passages: nothing inside them was dropped
    assert sum(map(passage_tokens, kept)) <= 60


def test_trim_cuts_an_oversized_single_sentence_to_a_prefix() -> None:
    text = "北京大学是中国的一所大学" * 40  # one sentence, far over the budget
    kept = trim_to_budget([passage("a", text)], 30)
    assert len(kept) == 1
    assert text.startswith(kept[0].text) and 0 < passage_tokens(kept[0]) <= 30


SENTENCES = {
    "a": "The Denver Broncos won Super Bowl 50. The stadium was in Santa Clara. Tickets were expensive.",
    "b": "Lady Gaga sang the anthem. The Broncos defense was ranked first. Weather was mild that day.",
    "c": "Coldplay headlined the halftime show. Beyoncé and Bruno Mars also performed.",
}


def scored(name: str, score: float) -> Passage:
    return Passage(passage(name, SENTENCES[name]).chunk, score)


def test_trim_drops_weak_sentences_before_whole_passages_and_quotes_exact_text() -> None:
    passages = [scored("a", 1.0), scored("b", 0.8), scored("c", 0.5)]
    terms = tokenize("Who won Super Bowl 50 for the Broncos?")
    full = sum(count_tokens(p.chunk.text) for p in passages)
    kept = trim_to_budget(passages, full // 2, terms, tokenize, TrimParams(match_weight=0.8))
    assert sum(map(passage_tokens, kept)) <= full // 2
    assert kept[0].chunk.id == "a" and "won Super Bowl 50" in kept[0].text
    # every kept span is a sentence of its chunk, so a citation quotes text the model saw
    for p in kept:
        for start, end in p.kept or ((0, len(p.chunk.text)),):
            assert p.chunk.text[start:end] in p.text
    assert "Tickets were expensive." not in kept[0].text  # the weak sentence went first
    assert [p.chunk.id for p in kept] == sorted(p.chunk.id for p in kept)  # rank order kept


def test_trim_floor_drops_unmatched_sentences_even_with_room() -> None:
    passages = [scored("a", 1.0), scored("c", 0.2)]
    terms = tokenize("Which stadium hosted it, in Santa Clara?")
    kept = trim_to_budget(passages, 10_000, terms, tokenize, TrimParams(floor=0.5, match_weight=1.0))
    assert [p.text for p in kept] == ["The stadium was in Santa Clara."]


def test_trim_focuses_only_when_few_passages_survive_the_floor() -> None:
    terms = tokenize("Who won Super Bowl 50 for the Broncos?")
    wide = TrimParams(floor=0.0, match_weight=0.8)
    focus = TrimParams(floor=0.0, match_weight=0.8, focus_max_passages=1, focus_floor=0.9)
    one = [scored("a", 1.0)]
    assert trim_to_budget(one, 10_000, terms, tokenize, wide)[0].text == SENTENCES["a"]
    # one passage survived the floor: the trim is redone at the focus floor, and keeps the answer's sentence
    assert [p.text for p in trim_to_budget(one, 10_000, terms, tokenize, focus)] == [
        "The Denver Broncos won Super Bowl 50."
    ]
    # two survived: the evidence is spread, and the wide trim stands
    two = [scored("a", 1.0), scored("b", 0.8)]
    assert trim_to_budget(two, 10_000, terms, tokenize, focus) == trim_to_budget(
        two, 10_000, terms, tokenize, wide
    )
    assert len(trim_to_budget(two, 10_000, terms, tokenize, wide)) == 2


def test_trim_validates_params_and_budget() -> None:
    assert trim_to_budget([scored("a", 1.0)], 0) == []
    with pytest.raises(ValueError):
        TrimParams(floor=1.5)
    with pytest.raises(ValueError):
        TrimParams(focus_floor=-0.1)
    with pytest.raises(ValueError):
        TrimParams(focus_max_passages=-1)


def test_convex_combination_normalizes_each_list_and_weights_them() -> None:
    bm25 = [ScoredId("a", 12.0), ScoredId("b", 6.0), ScoredId("c", 2.0)]
    dense = [ScoredId("c", 0.9), ScoredId("d", 0.5)]
    fused = {h.chunk_id: h.score for h in convex_combination([bm25, dense], [0.25, 0.75])}
    assert fused["a"] == pytest.approx(0.25)
    assert fused["b"] == pytest.approx(0.25 * 0.4)
    assert fused["c"] == pytest.approx(0.75)
    assert fused["d"] == pytest.approx(0.0)
    assert min_max([ScoredId("x", 3.0), ScoredId("y", 3.0)]) == {"x": 1.0, "y": 1.0}
    with pytest.raises(ValueError):
        convex_combination([bm25], [-1.0])


def evidence(**overrides: float) -> QueryEvidence:
    values = {
        "cjk_share": 0.0,
        "log_terms": 1.5,
        "has_digits": 0.0,
        "has_quotes": 0.0,
        "bm25_gap": 0.5,
        "bm25_per_term": 3.0,
        "dense_top": 0.6,
        "dense_gap": 0.2,
        "overlap": 0.3,
        "bm25_top_in_dense": 0.5,
        "dense_top_in_bm25": 0.0,
        "bm25_lead": 0.1,
        "dense_lead": 0.05,
    }
    return QueryEvidence(**{**values, **overrides})


@given(st.floats(-1e6, 1e6), st.floats(0, 1), st.floats(-50, 50), st.floats(0.0, 0.5), st.floats(0.5, 1.0))
def test_weight_stays_within_its_bounds(
    bias: float, cjk: float, coef: float, low: float, high: float
) -> None:
    params = WeightingParams(
        bias=bias, coefficients={"cjk_share": coef}, means={}, scales={}, w_min=low, w_max=high
    )
    weights = QueryWeigher(params).weigh(evidence(cjk_share=cjk))
    assert low - 1e-12 <= weights.dense <= high + 1e-12
    assert weights.bm25 == pytest.approx(1 - weights.dense)


def test_weight_follows_its_evidence_and_says_why() -> None:
    params = WeightingParams(
        bias=0.0, coefficients={"cjk_share": -4.0}, means={"cjk_share": 0.5}, scales={"cjk_share": 0.5}
    )
    weigher = QueryWeigher(params)
    chinese, english = weigher.weigh(evidence(cjk_share=1.0)), weigher.weigh(evidence(cjk_share=0.0))
    assert chinese.dense < 0.05 and english.dense > 0.95
    assert "cjk_share" in chinese.reason and "bm25" in chinese.reason
    with pytest.raises(ValueError):
        WeightingParams(bias=0.0, coefficients={"nope": 1.0}, means={}, scales={})
    with pytest.raises(ValueError):
        WeightingParams(bias=0.0, coefficients={}, means={}, scales={}, w_min=0.8, w_max=0.2)


def test_query_evidence_reads_script_shape_and_agreement() -> None:
    lexical = [ScoredId(str(i), 10.0 - i) for i in range(10)]
    dense = [ScoredId(str(i), 0.9 - 0.01 * i) for i in range(5, 15)]
    ev = query_evidence('北京 2008 "Olympics"', 3, lexical, dense)
    assert ev.cjk_share == pytest.approx(2 / 14)
    assert ev.has_digits == 1.0 and ev.has_quotes == 1.0
    assert ev.bm25_gap == pytest.approx(0.9) and ev.bm25_per_term == pytest.approx(10 / 3)
    assert ev.dense_top == pytest.approx(0.85) and ev.dense_gap == pytest.approx(0.09)
    assert ev.overlap == pytest.approx(0.5)
    empty = query_evidence("x", 0, [], [])
    assert empty.bm25_gap == 0.0 and empty.dense_top == 0.0 and empty.overlap == 0.0


def test_adaptive_rerank_stops_when_the_rest_cannot_enter_the_top() -> None:
    fused = [ScoredId(f"c{i}", 1.0 - i * 0.05) for i in range(20)]
    asked: list[str] = []

    def score(batch):
        asked.extend(h.chunk_id for h in batch)
        return [8.0 if h.chunk_id == "c1" else -8.0 for h in batch]

    params = RerankParams(weight=0.5, temperature=1.0, max_pairs=20, first_batch=4, batch=4, stop_rank=1)
    result = adaptive_rerank(fused, score, 0.5, params)
    assert result.ranking[0].chunk_id == "c1"  # the cross-encoder's clear favourite moved up
    # after 4 pairs even a perfect score could not lift c4 (fused 0.8) above c1's 0.975
    assert result.pairs == len(asked) == 4
    assert [h.chunk_id for h in result.ranking[result.pairs :]] == [h.chunk_id for h in fused[result.pairs :]]
    assert all(a.score >= b.score for a, b in zip(result.ranking, result.ranking[1:]))
    deep = adaptive_rerank(fused, score, 0.5, RerankParams(weight=0.5, max_pairs=20, stop_rank=10**6))
    assert deep.pairs == 20
    assert adaptive_rerank(fused, score, 0.0, params).pairs == 0


def test_sentence_spans_cover_english_and_chinese() -> None:
    text = "One. Two!  三是三。四？\nFive"
    assert [text[a:b] for a, b in sentence_spans(text)] == ["One.", "Two!", "三是三。", "四？", "Five"]


def test_standardized_combination_scores_every_candidate_and_stays_in_unit_range() -> None:
    bm25 = {"a": 10.0, "b": 5.0, "c": 0.0}
    dense = {"a": 0.2, "b": 0.8, "c": 0.5}
    only_bm25 = standardized_combination([bm25, dense], [1.0, 0.0])
    assert [h.chunk_id for h in only_bm25] == ["a", "b", "c"]
    only_dense = standardized_combination([bm25, dense], [0.0, 1.0])
    assert [h.chunk_id for h in only_dense] == ["b", "c", "a"]
    mixed = standardized_combination([bm25, dense], [0.5, 0.5])
    assert mixed[0].score == pytest.approx(1.0) and mixed[-1].score == pytest.approx(0.0)
    assert {h.chunk_id for h in mixed} == {"a", "b", "c"}
    # a retriever that scores every candidate alike has no say in their order
    flat = standardized_combination([{"a": 1.0, "b": 1.0}, {"a": 0.3, "b": 0.9}], [0.5, 0.5])
    assert [h.chunk_id for h in flat] == ["b", "a"]
    with pytest.raises(ValueError):
        standardized_combination([bm25], [0.5, 0.5])


def test_rerank_weight_shrinks_with_cjk_share_and_is_dropped_below_its_minimum() -> None:
    params = RerankParams(weight=0.8, min_weight=0.05)
    assert params.weight_for(0.0) == pytest.approx(0.8)
    assert params.weight_for(0.5) == pytest.approx(0.4)
    assert params.weight_for(0.97) == 0.0  # 0.024 < 0.05: the question is skipped, not lightly reranked
    with pytest.raises(ValueError):
        RerankParams(max_pairs=0)
