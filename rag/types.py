"""Domain types shared by every package. Plain frozen dataclasses: no behaviour, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

DEFAULT_TENANT = "default"


def utc_now() -> str:
    """Timestamps as stored: ISO 8601, UTC, whole seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Section:
    """A span of a parsed document's text that shares one heading and one page.

    ``start``/``end`` are character offsets into ``ParsedDocument.text``.
    """

    start: int
    end: int
    heading: str | None = None
    page: int | None = None


@dataclass(frozen=True)
class ParsedDocument:
    """A loader's output: the document's plain text and the layout that chunking keeps as metadata."""

    text: str
    title: str
    sections: tuple[Section, ...]


@dataclass(frozen=True)
class Chunk:
    """A retrievable span of a document. ``text == document_text[start:end]``."""

    id: str
    document_id: str
    tenant: str
    index: int
    text: str
    start: int
    end: int
    title: str
    token_count: int
    heading: str | None = None
    page: int | None = None


@dataclass(frozen=True)
class ScoredId:
    """One hit of a single retriever: a chunk id and that retriever's raw score."""

    chunk_id: str
    score: float


@dataclass(frozen=True)
class Passage:
    """A chunk chosen for the prompt, with the score that put it there.

    ``kept`` lists the sentence spans (offsets into ``chunk.text``) that the token-budget trim kept;
    empty means the whole chunk. ``text`` is exactly what the prompt shows and citations quote.
    """

    chunk: Chunk
    score: float
    kept: tuple[tuple[int, int], ...] = ()

    @property
    def text(self) -> str:
        if not self.kept:
            return self.chunk.text
        return "\n".join(self.chunk.text[start:end] for start, end in self.kept)


@dataclass(frozen=True)
class DocumentRecord:
    """A row of the document registry."""

    id: str
    tenant: str
    name: str
    media_type: str
    size_bytes: int
    content_hash: str
    chunk_count: int
    created_at: str


@dataclass(frozen=True)
class Citation:
    document_id: str
    chunk_id: str
    title: str
    text: str


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of a conversation: what was asked and what was answered."""

    question: str
    answer: str


@dataclass(frozen=True)
class TierUsage:
    """One generation call: its tier, model, tokens and price (see ``rag.usage.accounting``)."""

    tier: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class Usage:
    """Counted once, where the tokens are produced (see ``rag.usage.accounting``).

    The totals add up ``generations`` (a cascade that escalates pays for both calls); ``tier`` and
    ``model`` name the call whose answer was returned.
    """

    prompt_tokens: int
    completion_tokens: int
    model: str
    tier: str
    cost_usd: float
    generations: tuple[TierUsage, ...] = ()
    embedding_tokens: int = 0  # the question, embedded once (local model: no price)
    rerank_tokens: int = 0  # what the cross-encoder read (local model: no price)
    # The same question answered by the strong tier over the untrimmed top 10 of the same ranking,
    # counted on that prompt with this answer's completion; None when no retrieval ran and none is known.
    reference_cost_usd: float | None = None
    saved_by: tuple[str, ...] = ()  # what made this answer cheaper: "cache", "routing", "trim"

    @property
    def saved_usd(self) -> float | None:
        return None if self.reference_cost_usd is None else self.reference_cost_usd - self.cost_usd


@dataclass(frozen=True)
class Route:
    """Which tier answered and why (``rag.routing``)."""

    tier: str
    reason: str
    escalated: bool = False


@dataclass(frozen=True)
class Answer:
    answer: str
    citations: tuple[Citation, ...]
    usage: Usage
    latency_ms: float
    stage_ms: dict[str, float] = field(default_factory=dict)
    debug: dict[str, object] = field(default_factory=dict)
    cache: str = "miss"  # "hit" when the answer came from the answer cache
    cache_similarity: float | None = None  # similarity of the nearest cached question, if any
    route: Route | None = None  # None when no model was asked (cache hit, nothing retrieved)
    finish_reason: str = "stop"  # "length" when the answer reached its token limit
    # What retrieval and the answer cache were given: the question, or a follow-up made standalone.
    searched_question: str | None = None


@dataclass(frozen=True)
class Retrieval:
    """What the retriever hands to generation: passages within the token budget, best first.

    ``debug`` says how they were chosen (fusion weights and why, pairs reranked, tokens trimmed).
    """

    passages: tuple[Passage, ...]
    # The untrimmed top 10 of the same ranking: the prompt a naive stack would send, priced as the
    # reference that savings are counted against (never sent).
    reference_passages: tuple[Passage, ...] = ()
    rerank_tokens: int = 0
    stage_ms: dict[str, float] = field(default_factory=dict)
    debug: dict[str, object] = field(default_factory=dict)
    # The cross-encoder's highest logit over the candidates it scored: how well the best passage answers
    # the question. None when nothing was scored (no reranker, a CJK question, dense mode).
    best_relevance: float | None = None
    # Linking chose the passages (retrieval/linking.py): the best passage names the next hop's page.
    linked: bool = False
