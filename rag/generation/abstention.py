"""Abstaining before any model is asked, when nothing retrieved is relevant to the question.

Without the document that holds the answer, both tiers answer from whatever passage names an entity of
the right type ("What is the capital of Australia?" over a programming book: "Melbourne"), and a check
of the answer against the context passes it, since the answer is in the context. The question itself
tells more: the cross-encoder that reranked the candidates scores a passage that answers the question
high (median logit ≈ +7 on xquad_en) and the best passage of a corpus without the answer low (median
≈ −7). Retrieval already paid for those logits, so the check costs nothing, and an abstention costs no
tokens. The bar was set where no answerable DEV question of xquad_en, hotpotqa or musique that the
default answered with any F1 would be refused (docs/results/quality.md).

The ms-marco cross-encoder reads questions about the documents themselves ("What is this document
about?", "Summarize the report") as off-topic against every passage (logits ≈ −10), so those are
never refused here: the model sees them.

The cross-encoder reads English, so a Chinese question gets no logit. For one, the check reads the words
instead: a question asked of the paragraph that answers it shares most of its terms with it, so when no
passage of the prompt holds ``below_coverage`` of the question's index terms (the BM25 analyzer's: jieba
words for Han text), the documents most likely lack the answer. On cmrc2018 with the gold paragraphs of
half the questions removed, that share tells the two apart with AUC 0.965 (docs/results/quality.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.types import Passage

# A question that names the documents (this document, the report, these files…) or asks for a summary.
_ABOUT_THE_DOCUMENTS = re.compile(
    r"\b(?:this|these|that|those|the|my|our|your|attached|uploaded)\s+"
    r"(?:documents?|docs?|texts?|passages?|files?|articles?|papers?|books?|reports?|manuals?|pdfs?|"
    r"pages?|chapters?|sections?|context|notes|slides?|contracts?|emails?)\b"
    r"|\b(?:summari[sz]e|summary|overview|tl;?dr|outline)\b"
    r"|\b(?:main|key)\s+(?:points?|ideas?|topics?|takeaways?|findings?|themes?)\b"
    # ... and in Chinese: this/the document, article, report, file; summarize, main content
    r"|(?:这|那|该|本|此)(?:篇|份|个|本|些)?(?:文档|文件|文章|报告|资料|论文|段落|书|章节?)"
    r"|总结|概括|摘要|概述|大意|主要内容|要点",
    re.IGNORECASE,
)
# Han characters: a question holding any is one the English cross-encoder does not score.
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def asks_about_the_documents(question: str) -> bool:
    return _ABOUT_THE_DOCUMENTS.search(question) is not None


@dataclass(frozen=True)
class AbstentionCheck:
    """Refuse to answer when the best passage's cross-encoder logit is below ``below``; for a question in
    Han script, which the cross-encoder does not score, when no passage holds ``below_coverage`` of the
    question's terms (``analyze``: the BM25 analyzer)."""

    below: float
    below_coverage: float = 0.0
    analyze: Callable[[str], list[str]] | None = None

    def __post_init__(self) -> None:
        if self.below_coverage > 0 and self.analyze is None:
            raise ValueError("below_coverage needs the analyzer that turns text into index terms")

    def reason(self, question: str, best_relevance: float | None, passages: Sequence[Passage] = ()) -> str | None:
        """Why to abstain without asking a model, or None to go on. A Latin-script question without a
        logit (no reranker) decides nothing."""
        if best_relevance is not None:
            why = self._irrelevant(best_relevance)
        else:
            why = self._uncovered(question, passages)
        if why is None or asks_about_the_documents(question):
            return None
        return why

    def _irrelevant(self, best_relevance: float) -> str | None:
        if best_relevance >= self.below:
            return None
        return f"no passage is relevant to the question (best cross-encoder logit {best_relevance:.2f} < {self.below:g})"

    def _uncovered(self, question: str, passages: Sequence[Passage]) -> str | None:
        if self.below_coverage <= 0 or not passages or not _HAN.search(question):
            return None
        coverage = self.coverage(question, passages)
        if coverage is None or coverage >= self.below_coverage:
            return None
        return (
            f"no passage holds the question's words (at most {coverage:.0%} of its terms in one passage "
            f"< {self.below_coverage:.0%})"
        )

    def coverage(self, question: str, passages: Sequence[Passage]) -> float | None:
        """The largest share of the question's index terms that one passage (with its title) holds; None
        for a question without terms."""
        assert self.analyze is not None
        wanted = set(self.analyze(question))
        if not wanted:
            return None
        return max(len(wanted & set(self.analyze(f"{p.chunk.title} {p.text}"))) / len(wanted) for p in passages)
