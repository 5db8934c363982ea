"""RRF and the token-budget trim on small, hand-checked inputs."""

from __future__ import annotations

import pytest

from rag.tokens import count_tokens
from rag.types import Chunk, Passage, ScoredId
from retrieval.budget import trim_to_budget
from retrieval.fusion import reciprocal_rank_fusion


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
        id=name, document_id="d", tenant="t", index=0, text=text, start=10, end=10 + len(text), title="T",
        token_count=count_tokens(text),
    )
    return Passage(chunk, 1.0)


def test_trim_keeps_whole_passages_in_rank_order_within_budget() -> None:
    passages = [passage(n, "word " * size) for n, size in (("a", 40), ("b", 50), ("c", 5))]
    kept = trim_to_budget(passages, 60)
    assert [p.chunk.id for p in kept] == ["a", "c"]
    assert sum(p.chunk.token_count for p in kept) <= 60


def test_trim_cuts_an_oversized_first_passage_to_a_prefix() -> None:
    text = "北京大学是中国的一所大学。" * 40
    kept = trim_to_budget([passage("a", text), passage("b", "short")], 30)
    assert len(kept) == 1
    cut = kept[0].chunk
    assert text.startswith(cut.text) and 0 < cut.token_count <= 30
    assert cut.end - cut.start == len(cut.text)
