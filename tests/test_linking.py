"""Linked passages (``retrieval/linking.py``): which passages a multi-hop question's prompt holds."""

from __future__ import annotations

import numpy as np
import pytest

from rag.tokens import count_tokens
from rag.types import Chunk, Passage, ScoredId
from retrieval.budget import TrimParams
from retrieval.hybrid import Candidates, HybridRetriever
from retrieval.linking import LinkParams, linked_passages, names, title_name
from retrieval.rerank import RerankParams

QUESTION = "What government position was held by the woman who portrayed Corliss Archer in the film Kiss and Tell?"
# Real HotpotQA paragraphs (hotpot-dev-001): the film's page names the actress whose page holds the answer.
KISS = (
    "Kiss and Tell is a 1945 American comedy film starring then 17-year-old Shirley Temple as Corliss Archer. "
    "In the film, two teenage girls cause their respective parents much concern when they start to become "
    "interested in boys."
)
TEMPLE = (
    "Shirley Temple Black was an American actress, singer, dancer, businesswoman, and diplomat. "
    "As an adult, she was named United States ambassador to Ghana and to Czechoslovakia and also served as "
    "Chief of Protocol of the United States."
)
DISTRACTORS = [
    ("Meet Corliss Archer", "Meet Corliss Archer is an American radio sitcom that aired from 1943 to 1956."),
    ("Janet Waldo", "Janet Waldo was an American actress who voiced Corliss Archer on the radio."),
    ("Kiss and Tell (play)", "Kiss and Tell is a 1943 play by F. Hugh Herbert that ran on Broadway."),
    ("A Kiss for Corliss", "A Kiss for Corliss is a 1949 film, the sequel to Kiss and Tell."),
]


def passage(title: str, text: str, score: float, index: int = 0) -> Passage:
    chunk = Chunk(f"{title}#{index}", title, "t", index, text, 0, len(text), title, count_tokens(text))
    return Passage(chunk, score)


def ranked() -> list[Passage]:
    """The film first, four distractors, then the actress at rank 6 (where the graph's pull left her)."""
    passages = [passage("Kiss and Tell (1945 film)", KISS, 0.9)]
    passages += [passage(title, text, 0.5 - 0.05 * i) for i, (title, text) in enumerate(DISTRACTORS)]
    passages.append(passage("Shirley Temple", TEMPLE, 0.2))
    return passages


def test_title_name_and_whole_word_mentions() -> None:
    assert title_name("Kiss and Tell (1945 film)") == "kiss and tell"
    assert title_name("  Shirley   Temple ") == "shirley temple"
    assert title_name("长江（河流）") == "长江"
    assert names("starring shirley temple as", "shirley temple")
    assert not names("ed woodson was born", "ed wood")  # part of a longer word is not a mention
    assert names("ed wood's films", "ed wood")
    assert names("位于长江下游", "长江")  # Chinese has no word boundaries to require


def test_the_page_the_best_passage_names_replaces_the_next_ranks() -> None:
    chosen = linked_passages(ranked(), QUESTION, top_k=5, params=LinkParams(keep_score=1.1))
    assert chosen is not None
    # "Meet Corliss Archer" shares words with the question but is not named; "Kiss and Tell (play)" is
    # named only as the best passage's own title, which says nothing about a next hop.
    assert [p.chunk.title for p in chosen] == ["Kiss and Tell (1945 film)", "Shirley Temple"]


def test_a_passage_scored_close_to_the_best_stays_even_unlinked() -> None:
    passages = ranked()
    passages[1] = passage("Meet Corliss Archer", DISTRACTORS[0][1], 0.85)
    chosen = linked_passages(passages, QUESTION, top_k=5, params=LinkParams(keep_score=0.9))
    assert chosen is not None
    assert [p.chunk.title for p in chosen] == ["Kiss and Tell (1945 film)", "Meet Corliss Archer", "Shirley Temple"]


def test_no_link_no_change() -> None:
    plain = [passage("Janet Waldo", DISTRACTORS[1][1], 0.9), passage("Meet Corliss Archer", DISTRACTORS[0][1], 0.5)]
    assert linked_passages(plain, "Who voiced Corliss Archer on the radio?", top_k=5) is None
    # Another chunk of the best passage's own document is not a link, nor is a title too short to mean much.
    same_document = [passage("Shirley Temple", TEMPLE, 0.9), passage("Shirley Temple", KISS, 0.5, index=1)]
    assert linked_passages(same_document, QUESTION, top_k=5) is None
    short = [passage("Kiss and Tell (1945 film)", KISS, 0.9), passage("In", "In is a preposition.", 0.5)]
    assert linked_passages(short, QUESTION, top_k=5) is None
    assert linked_passages(ranked(), QUESTION, top_k=5, params=LinkParams(enabled=False)) is None
    assert linked_passages(ranked(), QUESTION, top_k=1) is None  # one passage leaves no room for a link


def test_at_most_top_k_and_params_validated() -> None:
    passages = ranked()
    passages.insert(1, passage("Corliss Archer", "Corliss Archer is a fictional teenage girl.", 0.6))
    chosen = linked_passages(passages, QUESTION, top_k=2, params=LinkParams(keep_score=1.1))
    assert chosen is not None and [p.chunk.title for p in chosen] == ["Kiss and Tell (1945 film)", "Corliss Archer"]
    # The pool bounds how deep a link may sit: the actress is at rank 6.
    assert linked_passages(ranked(), QUESTION, top_k=5, params=LinkParams(pool=6)) is not None
    assert linked_passages(ranked(), QUESTION, top_k=5, params=LinkParams(pool=5)) is None
    for bad in ({"pool": 0}, {"min_title_chars": 0}, {"keep_score": -0.1}):
        with pytest.raises(ValueError):
            LinkParams(**bad)


def _retriever(link: LinkParams) -> HybridRetriever:
    return HybridRetriever(
        None, None, None, None, None, None, RerankParams(), TrimParams(floor=0.3), link_params=link,  # type: ignore[arg-type]
    )


def test_the_retriever_prompt_holds_the_linked_passages_whole() -> None:
    """Through ``HybridRetriever.select``: linked passages are kept whole (the floor would cut the
    actress's page, whose words barely match the question); without a link, the trimmed top k."""
    passages = ranked()
    chunks = {p.chunk.id: p.chunk for p in passages}
    ranking = [ScoredId(p.chunk.id, p.score) for p in passages]
    terms = ["government", "position", "held", "woman", "portrayed", "corliss", "archer", "film", "kiss", "tell"]
    candidates = Candidates(QUESTION, terms, [], [], {}, {}, {}, "t", np.zeros(4, dtype=np.float32))

    linked, was_linked = _retriever(LinkParams()).select(candidates, ranking, chunks, 5, 1500)
    assert was_linked
    assert "Shirley Temple#0" in [p.chunk.id for p in linked]
    assert all(p.kept == () for p in linked)
    assert "Chief of Protocol" in "\n".join(p.text for p in linked)

    plain, was_linked = _retriever(LinkParams(enabled=False)).select(candidates, ranking, chunks, 5, 1500)
    assert not was_linked
    assert "Shirley Temple#0" not in [p.chunk.id for p in plain]
    assert len(plain) == 5
