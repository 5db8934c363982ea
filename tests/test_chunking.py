"""Chunker invariants on real English and Chinese documents, edge cases, and random text (hypothesis)."""

from __future__ import annotations

import json
from itertools import islice, pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.chunking import Chunker, ChunkSpan, _sentences
from rag.tokens import count_tokens
from rag.types import ParsedDocument, Section

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def _corpus(name: str, limit: int = 5) -> list[ParsedDocument]:
    path = DATASETS / name / "corpus.jsonl"
    if not path.exists():
        pytest.skip(f"dataset {path} not available")
    with path.open(encoding="utf-8") as lines:
        records = [json.loads(line) for line in islice(lines, limit)]
    return [_plain(record["text"]) for record in records]


def _plain(text: str) -> ParsedDocument:
    return ParsedDocument(text=text, title="t", sections=(Section(0, len(text)),))


def _assert_valid(document: ParsedDocument, spans: list[ChunkSpan], chunker: Chunker) -> None:
    """The contract every caller relies on."""
    for span in spans:
        assert span.text == document.text[span.start : span.end]
        assert span.text and span.text == span.text.strip()
        assert span.token_count == count_tokens(span.text) <= chunker.chunk_tokens
        section = next(s for s in document.sections if s.start <= span.start < s.end)
        assert span.end <= section.end, "chunk crosses a section boundary"
        assert (span.heading, span.page) == (section.heading, section.page)
    covered = set()
    for span in spans:
        covered.update(range(span.start, span.end))
    assert all(document.text[i].isspace() for i in range(len(document.text)) if i not in covered)


@pytest.mark.parametrize(("chunk_tokens", "overlap_tokens"), [(64, 16), (200, 30), (32, 0)])
@pytest.mark.parametrize("corpus", ["xquad_en", "cmrc2018"])
def test_real_documents(corpus: str, chunk_tokens: int, overlap_tokens: int) -> None:
    chunker = Chunker(chunk_tokens, overlap_tokens)
    for document in _corpus(corpus):
        spans = chunker.split(document)
        assert len(spans) > 1 or count_tokens(document.text) <= chunk_tokens
        _assert_valid(document, spans, chunker)


def test_chinese_sentences_split_without_whitespace() -> None:
    text = "今天天气很好。我们去公园散步！你想一起来吗？好的；走吧"
    assert [text[s.start : s.end] for s in _sentences(text, 0, len(text))] == [
        "今天天气很好。", "我们去公园散步！", "你想一起来吗？", "好的；", "走吧",
    ]  # fmt: skip


def test_english_sentences_respect_abbreviations_and_decimals() -> None:
    text = 'Dr. Smith met e.g. the U.S. team. It cost 3.5 dollars! Really? "Yes." Done\nNew line'
    assert [text[s.start : s.end] for s in _sentences(text, 0, len(text))] == [
        "Dr. Smith met e.g. the U.S. team.", "It cost 3.5 dollars!", "Really?", '"Yes."', "Done", "New line",
    ]  # fmt: skip


def test_overlap_repeats_whole_trailing_sentences() -> None:
    text = " ".join(f"Sentence number {i} is short." for i in range(60))
    document = _plain(text)
    chunker = Chunker(chunk_tokens=40, overlap_tokens=15)
    spans = chunker.split(document)
    _assert_valid(document, spans, chunker)
    assert len(spans) > 5
    sentence_starts = {s.start for s in _sentences(text, 0, len(text))}
    for before, after in pairwise(spans):
        assert before.start < after.start < before.end, "consecutive chunks must overlap"
        assert after.start in sentence_starts, "overlap is made of whole sentences"
        assert count_tokens(text[after.start : before.end]) <= 15


def test_no_overlap_when_disabled() -> None:
    text = " ".join(f"Sentence number {i} is short." for i in range(60))
    spans = Chunker(chunk_tokens=40, overlap_tokens=0).split(_plain(text))
    for before, after in pairwise(spans):
        assert after.start > before.end


def test_chunks_stay_inside_sections() -> None:
    parts = ["Intro. " * 30, "Methods here. " * 30, "Results. " * 30]
    text = "".join(parts)
    bounds = [0, len(parts[0]), len(parts[0]) + len(parts[1]), len(text)]
    sections = tuple(
        Section(start, end, heading=f"h{n}", page=n) for n, (start, end) in enumerate(pairwise(bounds))
    )
    document = ParsedDocument(text=text, title="t", sections=sections)
    chunker = Chunker(chunk_tokens=32, overlap_tokens=8)
    spans = chunker.split(document)
    _assert_valid(document, spans, chunker)
    assert {span.heading for span in spans} == {"h0", "h1", "h2"}


@pytest.mark.parametrize(
    "sentence",
    [
        " ".join(f"word{i}" for i in range(800)),
        "我们的研究表明这种方法在大多数情况下都是有效的并且成本很低" * 40,
        "𠜎𠜱𠝹𠱓😀🧪 語彙" * 120,  # 4-byte characters that tokenize into partial-character tokens
    ],
)
def test_long_single_sentence_is_cut_at_token_boundaries(sentence: str) -> None:
    document = _plain(f"Short lead. {sentence}. Short tail.")
    chunker = Chunker(chunk_tokens=50, overlap_tokens=10)
    spans = chunker.split(document)
    _assert_valid(document, spans, chunker)
    body = [span for span in spans if span.text not in ("Short lead.", "Short tail.")]
    assert len(body) >= count_tokens(sentence) // 50
    for before, after in pairwise(body):
        assert before.start < after.start < before.end, "windows of a long sentence overlap"


@pytest.mark.parametrize(("chunk_tokens", "overlap_tokens"), [(15, 0), (16, 16), (100, 200), (100, -1)])
def test_invalid_parameters(chunk_tokens: int, overlap_tokens: int) -> None:
    with pytest.raises(ValueError):
        Chunker(chunk_tokens, overlap_tokens)


def test_whitespace_only_section_gives_no_chunks() -> None:
    text = "   \n\n  Real text."
    document = ParsedDocument(text=text, title="t", sections=(Section(0, 5), Section(5, len(text))))
    assert [span.text for span in Chunker().split(document)] == ["Real text."]


_ALPHABET = st.sampled_from(
    list('abc xyz.!?。！？；\n\t"”)') + ["e.g.", "Dr.", "3.5", "你好", "語", "𠜎", "😀", "é"]
)


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(_ALPHABET, max_size=400),
    cuts=st.lists(st.floats(0, 1), max_size=3),
    chunk_tokens=st.integers(16, 60),
    overlap_fraction=st.floats(0, 0.9),
)
def test_offsets_invariant_on_random_text(
    pieces: list[str], cuts: list[float], chunk_tokens: int, overlap_fraction: float
) -> None:
    text = "".join(pieces)
    bounds = sorted({0, len(text), *(int(cut * len(text)) for cut in cuts)})
    sections = tuple(Section(start, end, page=n) for n, (start, end) in enumerate(pairwise(bounds)))
    document = ParsedDocument(text=text, title="t", sections=sections)
    chunker = Chunker(chunk_tokens, int(chunk_tokens * overlap_fraction))
    _assert_valid(document, chunker.split(document), chunker)
