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
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A question that names the documents (this document, the report, these files…) or asks for a summary.
_ABOUT_THE_DOCUMENTS = re.compile(
    r"\b(?:this|these|that|those|the|my|our|your|attached|uploaded)\s+"
    r"(?:documents?|docs?|texts?|passages?|files?|articles?|papers?|books?|reports?|manuals?|pdfs?|"
    r"pages?|chapters?|sections?|context|notes|slides?|contracts?|emails?)\b"
    r"|\b(?:summari[sz]e|summary|overview|tl;?dr|outline)\b"
    r"|\b(?:main|key)\s+(?:points?|ideas?|topics?|takeaways?|findings?|themes?)\b",
    re.IGNORECASE,
)


def asks_about_the_documents(question: str) -> bool:
    return _ABOUT_THE_DOCUMENTS.search(question) is not None


@dataclass(frozen=True)
class AbstentionCheck:
    """Refuse to answer when the best passage's cross-encoder logit is below ``below``."""

    below: float

    def reason(self, question: str, best_relevance: float | None) -> str | None:
        """Why to abstain without asking a model, or None to go on. Nothing scored (no reranker, a CJK
        question) decides nothing."""
        if best_relevance is None or best_relevance >= self.below or asks_about_the_documents(question):
            return None
        return (
            f"no passage is relevant to the question (best cross-encoder logit {best_relevance:.2f} "
            f"< {self.below:g})"
        )
