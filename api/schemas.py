"""HTTP request and response bodies: the public contract of the API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.types import Answer, DocumentRecord, Turn


class DocumentStatus(BaseModel):
    id: str | None
    name: str
    chunks: int
    status: Literal["indexed", "duplicate", "rejected"]
    error: str | None = None


class UploadResponse(BaseModel):
    documents: list[DocumentStatus]


class ChunkPlan(BaseModel):
    index: int
    start: int = Field(description="offset of the chunk's first character in the parsed text")
    end: int
    token_count: int
    heading: str | None = None
    page: int | None = None


class FileEstimate(BaseModel):
    name: str
    status: Literal["new", "duplicate", "rejected"] = Field(
        description="new: an upload would index it; duplicate: the same bytes are indexed already"
    )
    document_id: str | None = Field(description="the id an upload gives it (the existing one for a duplicate)")
    chunks: list[ChunkPlan] = Field(description="the chunks an upload would store, in order")
    tokens: int = Field(description="tokens of the chunks' text")
    embedding_tokens: int = Field(description="tokens the embedder would read (each chunk with its title)")
    error: str | None = None


class UploadEstimate(BaseModel):
    """A dry run: what uploading these files would do and cost, with nothing written."""

    documents: list[FileEstimate]
    chunks: int = Field(description="new chunks over all files (duplicates and rejections add none)")
    tokens: int
    embedding_tokens: int
    embedding_seconds: float | None = Field(
        description="at this process's measured embedding speed; null before it has embedded anything"
    )
    embedding_cost_usd: float = Field(description="the packaged embedder runs locally: no per-token price")


class DocumentOut(BaseModel):
    id: str
    name: str
    media_type: str
    size_bytes: int
    content_hash: str
    chunks: int
    created_at: str

    @classmethod
    def of(cls, record: DocumentRecord) -> DocumentOut:
        return cls(
            id=record.id,
            name=record.name,
            media_type=record.media_type,
            size_bytes=record.size_bytes,
            content_hash=record.content_hash,
            chunks=record.chunk_count,
            created_at=record.created_at,
        )


class DocumentList(BaseModel):
    documents: list[DocumentOut]


class DeleteResponse(BaseModel):
    id: str
    status: Literal["deleted"] = "deleted"


class RetrieveRequest(BaseModel):
    # Strict: the types the schema declares, no coercion ("top_k": "5" is a 422).
    model_config = ConfigDict(strict=True)

    # The bounds are documented here and enforced by QueryPipeline.validate (422 naming the limit); the
    # maximums are configurable (RAG_MAX_QUESTION_CHARS, RAG_MAX_TOP_K, RAG_MAX_TOKEN_BUDGET).
    question: str = Field(
        json_schema_extra={"minLength": 1},
        description="not blank; at most RAG_MAX_QUESTION_CHARS characters (default 2000)",
    )
    token_budget: int | None = Field(
        default=None,
        json_schema_extra={"minimum": 64},
        description="context tokens at most: 64 to RAG_MAX_TOKEN_BUDGET (default 3000); default RAG_TOKEN_BUDGET",
    )
    top_k: int | None = Field(
        default=None,
        json_schema_extra={"minimum": 1},
        description="passages retrieved: 1 to RAG_MAX_TOP_K (default 50); default RAG_TOP_K",
    )


class TurnIn(BaseModel):
    model_config = ConfigDict(strict=True)
    question: str
    answer: str


class QueryRequest(RetrieveRequest):
    history: list[TurnIn] = Field(
        default_factory=list,
        description="the conversation's earlier turns, oldest first: a follow-up ('When did they disband?') "
        "is made standalone before the answer cache and retrieval see it; the cost is in the usage block",
    )
    stream: bool = Field(
        default=False,
        description="answer as server-sent events: 'token' events with the text as it is generated, "
        "then one 'done' event holding the whole response (citations, usage)",
    )

    def turns(self) -> tuple[Turn, ...]:
        return tuple(Turn(t.question, t.answer) for t in self.history)


class CitationOut(BaseModel):
    document_id: str
    chunk_id: str
    title: str
    text: str


class GenerationOut(BaseModel):
    tier: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    model: str = Field(description="the model whose answer was returned ('cache' for a cache hit)")
    tier: str
    cost_usd: float
    generations: list[GenerationOut] = Field(
        description="every generation call paid for, in order (a cascade that escalated lists two)"
    )
    embedding_tokens: int = Field(description="question tokens embedded (local model, not priced)")
    rerank_tokens: int = Field(description="tokens the cross-encoder read (local model, not priced)")
    reference_cost_usd: float | None = Field(
        description="the same question answered by the strong tier over the untrimmed top 10 of the same "
        "ranking, counted on that prompt with this answer's completion"
    )
    saved_usd: float | None = Field(description="reference_cost_usd − cost_usd")
    saved_by: list[str] = Field(
        description="what made this answer cheaper: cache, routing, trim, abstention (no model was asked: "
        "nothing retrieved was relevant)"
    )


class RouteOut(BaseModel):
    tier: str
    reason: str
    escalated: bool


class QueryResponse(BaseModel):
    answer: str
    citations: list[CitationOut]
    usage: UsageOut
    latency_ms: float
    stage_ms: dict[str, float]
    cache: Literal["hit", "miss"] = Field(description="hit: answered from the answer cache, at no token cost")
    cache_similarity: float | None = Field(description="similarity of the nearest cached question (1.0 = the same)")
    searched_question: str | None = Field(
        default=None,
        description="what retrieval and the answer cache were given: the question, or a follow-up made standalone",
    )
    routing: RouteOut | None = Field(description="which tier answered and why; null when no model was asked")
    debug: dict[str, Any] = Field(
        default_factory=dict,
        description="how the context was chosen: fusion weights and their reason, rerank pairs, trimmed tokens",
    )

    @classmethod
    def of(cls, answer: Answer) -> QueryResponse:
        return cls(
            answer=answer.answer,
            citations=[CitationOut(**vars(c)) for c in answer.citations],
            usage=UsageOut(
                **{k: v for k, v in vars(answer.usage).items() if k not in ("generations", "saved_by")},
                generations=[GenerationOut(**vars(g)) for g in answer.usage.generations],
                saved_usd=answer.usage.saved_usd,
                saved_by=list(answer.usage.saved_by),
            ),
            latency_ms=round(answer.latency_ms, 1),
            stage_ms={k: round(v, 1) for k, v in answer.stage_ms.items()},
            debug=answer.debug,
            cache=answer.cache,
            cache_similarity=None if answer.cache_similarity is None else round(answer.cache_similarity, 4),
            searched_question=answer.searched_question,
            routing=RouteOut(**vars(answer.route)) if answer.route else None,
        )


class ErrorBody(BaseModel):
    code: str
    message: str
    type: str = Field(description="OpenAI's error type for the status (invalid_request_error, authentication_error, …)")
    param: str | None = Field(default=None, description="the request field at fault, when one is")


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok"]
    version: str


class TierTotalsOut(BaseModel):
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class UsageTotalsOut(BaseModel):
    queries: int
    cache_hits: int
    escalations: int
    aborted: int
    embedding_tokens: int
    rerank_tokens: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    reference_cost_usd: float
    saved_usd: float
    saved_by: dict[str, int]
    tiers: dict[str, TierTotalsOut]
    rejected: dict[str, int] = Field(
        description="questions and requests refused, by reason: rate_limit, budget, admission (generation's queue too "
        "long), deadline (dropped from the queue before any model call)"
    )


class BudgetOut(BaseModel):
    limit_usd_per_day: float | None = Field(description="RAG_BUDGET_USD_PER_DAY; null when there is no limit")
    spent_today_usd: float = Field(description="generation cost since 00:00 UTC, as the budget check counts it")
    cheap_only_from_usd: float | None = Field(description="from this spend on, questions go to the cheap tier only")
    resets_at: str = Field(description="the next 00:00 UTC, when the day's spend starts again from zero")


class UsageReport(BaseModel):
    since: str = Field(description="when the ledger began counting (UTC; it persists across restarts): totals count from then")
    tenant: str = Field(description="the caller's tenant; no other tenant's usage is shown")
    total: UsageTotalsOut
    budget: BudgetOut


class HourOut(BaseModel):
    hour: str = Field(description="the UTC hour's start, ISO 8601")
    totals: UsageTotalsOut


class HourlyUsage(BaseModel):
    tenant: str
    hours: list[HourOut] = Field(description="oldest first, the current hour last; hours without answers are zeros")


class PassageOut(BaseModel):
    document_id: str
    chunk_id: str
    title: str
    text: str = Field(description="exactly what a prompt would show (the trimmed sentences)")
    score: float


class RetrieveResponse(BaseModel):
    passages: list[PassageOut]
    rerank_tokens: int
    latency_ms: float
    stage_ms: dict[str, float]
    debug: dict[str, Any]


class EntityOut(BaseModel):
    name: str
    mentions: int
    chunks: int
    surfaces: list[str]
    is_title: bool = Field(description="the title of one of the tenant's documents")
    degree: int


class EntityList(BaseModel):
    entities: list[EntityOut]


class NeighborOut(BaseModel):
    name: str
    weight: int = Field(description="how many sentences (or title links) join the two")
    labels: list[str] = Field(description="the linking phrases seen most")
    is_title: bool


class NeighborList(BaseModel):
    entity: str
    neighbors: list[NeighborOut]
