"""Typed settings from ``RAG_*`` environment variables, validated once at start-up.

Nested values use ``__``: ``RAG_TIERS__STRONG__INPUT_USD_PER_MTOK=3.0``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from limits import parse_many
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag.generation.router import RoutingParams, with_overrides
from rag.profile import beneath, load_profile


class TierSettings(BaseModel):
    """One generation tier: which model answers and what its tokens cost."""

    model: str
    backend: Literal["llama_cpp", "openai"] = "llama_cpp"
    input_usd_per_mtok: float = Field(ge=0)
    output_usd_per_mtok: float = Field(ge=0)
    base_url: str | None = None
    api_key_env: str | None = None

    @model_validator(mode="after")
    def _openai_needs_url(self) -> TierSettings:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("an 'openai' tier needs base_url")
        return self


def _default_tiers() -> dict[str, TierSettings]:
    # Priced like a small and a large hosted model, so that costs read as what a hosted stack would pay.
    return {
        "cheap": TierSettings(
            model="qwen2.5-coder-0.5b-instruct-q4_k_m", input_usd_per_mtok=0.15, output_usd_per_mtok=0.60
        ),
        "strong": TierSettings(
            model="qwen2.5-coder-1.5b-instruct-q4_k_m", input_usd_per_mtok=2.50, output_usd_per_mtok=10.00
        ),
    }


class RateLimitSettings(BaseModel):
    """Limits in the `limits` package's notation, several joined by ";" ("10/second;120/minute": at most
    10 in any second and 120 in any minute, i.e. a sustained rate with a burst). An empty string: no limit."""

    query: str = "20/second;600/minute"  # /v1/query and /v1/chat/completions
    retrieve: str = "50/second;3000/minute"
    upload: str = "20/second;600/minute"  # upload requests (dry runs included)
    upload_bytes: str = "1000000000/minute"  # bytes uploaded, as the requests declare them

    @field_validator("query", "retrieve", "upload", "upload_bytes")
    @classmethod
    def _parses(cls, value: str) -> str:
        if value.strip():
            parse_many(value)  # a malformed limit fails at start-up
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Path("./data")
    # Assembled GGUF files (hundreds of MB each); defaults to DATA_DIR/models, may be shared by data dirs.
    model_dir: Path | None = None
    qdrant_url: str | None = None
    # Server mode: a libpq URL (postgresql://user:pass@host/db, or ?host=/socket/dir). The usage ledger and
    # the budgets live there, shared by every worker; the schema comes from `rag db upgrade`.
    database_url: str | None = None
    qdrant_api_key: SecretStr | None = None

    # "api_keys": every /v1 route needs `Authorization: Bearer <key>` and acts for the key's tenant;
    # "off" is a development mode in which every caller is the default tenant.
    auth: Literal["api_keys", "off"] = "api_keys"
    # Keys given by configuration, one per tenant: RAG_API_KEYS='{"acme": "<key>"}'. Held as digests only.
    api_keys: dict[str, SecretStr] = Field(default_factory=dict)

    embedding_model: Literal["all-minilm-l6-v2"] = "all-minilm-l6-v2"
    embedding_batch_size: int = Field(default=32, ge=1, le=1024)

    tiers: dict[str, TierSettings] = Field(default_factory=_default_tiers)
    # "cascade": the cheap tier answers first and a check of its answer against the context escalates
    # to the strong tier (rag/routing.py); "fixed": every question goes to default_tier.
    routing: Literal["cascade", "fixed"] = "cascade"
    # Overrides of the cascade's fitted check (rag/generation/params/routing.json), by field name:
    # RAG_ROUTER__MIN_CONFIDENCE=0.6. Unknown names are refused at start-up.
    router: dict[str, float | int | bool | str] = Field(default_factory=dict)
    cheap_tier: str = "cheap"
    # The strong tier: the one a cascade escalates to, and the only one when routing is fixed.
    default_tier: str = "strong"
    # Load the generation models at start (the first question pays nothing); false = at first use, for a
    # faster restart of a process that mostly indexes.
    warm_generation: bool = True
    llm_threads: int = Field(default=2, ge=1)
    llm_context_tokens: int = Field(default=4096, ge=512)
    max_answer_tokens: int = Field(default=128, ge=1, le=2048)

    chunk_tokens: int = Field(default=200, ge=16, le=4096)
    chunk_overlap_tokens: int = Field(default=30, ge=0)

    # Semantic answer cache (rag/cache/semantic.py): similarity threshold, then the hard guard of
    # rag/cache/guard.py and the verifier of rag/cache/verifier.py (fitted above 0.8: evals/fit_cache.py).
    cache_enabled: bool = True
    cache_threshold: float = Field(default=0.8, gt=0, le=1)
    cache_ttl_seconds: float | None = Field(default=7 * 24 * 3600, gt=0)
    cache_max_entries: int = Field(default=100_000, ge=1)

    # "hybrid": BM25 and dense lists fused with per-query weights; "dense": the dense list alone (the
    # naive baseline the eval harness compares against).
    retrieval_mode: Literal["hybrid", "dense"] = "hybrid"
    # The knowledge graph (kg/): entities and relations extracted from every chunk at index time.
    kg_enabled: bool = True

    # Micro-batching: concurrent requests share the query embedder's forward passes (rag/batching.py):
    # at most batch_max_size requests, gathered within batch_max_wait_ms.
    batching: bool = False
    batch_max_size: int = Field(default=16, ge=1, le=256)
    batch_max_wait_ms: float = Field(default=2.0, ge=0, le=100)

    # The cross-encoder reranks fused candidates (adaptive depth; see retrieval/params/fitted.json).
    rerank: bool = True
    # Trim the top_k passages to token_budget at sentence level; off sends whole chunks.
    trim: bool = True
    # The trim's floor (retrieval/budget.py): a sentence below this share of the best sentence's priority is
    # dropped even when the budget has room. None: the fitted floor (retrieval/params/fitted.json).
    trim_floor: float | None = Field(default=None, ge=0, le=1)
    # Multi-hop: when the best passage names other documents, the prompt holds those linked passages
    # instead of the next-ranked ones (retrieval/linking.py). Applies with the trim on. An unlinked passage
    # of the top_k stays when the reranker scored it at least link_keep_score × the best passage's score.
    link_passages: bool = True
    link_keep_score: float = Field(default=0.7, ge=0)
    # Abstain before any model is asked when no passage is relevant: the cross-encoder's best logit over the
    # candidates is below abstain_below_relevance (rag/generation/abstention.py). Questions about the
    # documents themselves ("summarize the report") are exempt: the cross-encoder scores them low everywhere.
    abstain_unsupported: bool = True
    abstain_below_relevance: float = -4.0
    # ... and, for a question in Han script (which the English cross-encoder does not score), when no
    # passage of the prompt holds this share of the question's index terms. 0 turns it off.
    abstain_below_coverage: float = Field(default=0.4, ge=0, le=1)
    # Prompt-injection defense (rag/generation/prompt.py, rag/generation/injection.py): passages delimited and marked as data, and
    # instructions aimed at the model in them neutralized. Off only to measure it (evals/injection.py).
    injection_defense: bool = True

    # Per-tenant daily spending limit in USD (None = no limit). From budget_cheap_only_from of it spent,
    # questions go to the cheap tier only; past it, queries get 429 until 00:00 UTC.
    budget_usd_per_day: float | None = Field(default=None, gt=0)
    budget_cheap_only_from: float = Field(default=0.8, ge=0, le=1)

    top_k: int = Field(default=5, ge=1, le=100)
    max_top_k: int = Field(default=50, ge=1)
    token_budget: int = Field(default=1500, ge=64)
    max_token_budget: int = Field(default=3000, ge=64)
    max_question_chars: int = Field(default=2000, ge=1)
    # Conversations (rag/conversation/): a follow-up's earlier turns, at most max_history_turns of them,
    # are shown to the rewriter within conversation_history_tokens, of which a summary of the older turns
    # (by the cheap tier) takes at most conversation_summary_tokens.
    max_history_turns: int = Field(default=100, ge=0)
    conversation_history_tokens: int = Field(default=400, ge=64)
    conversation_summary_tokens: int = Field(default=120, ge=16)

    # Rate limits (api/ratelimit.py): each API key, and each tenant (all its keys together), separately per
    # kind of request; past one, 429 with Retry-After. tenant_rate_limits overrides a tenant's own limits
    # (RAG_TENANT_RATE_LIMITS='{"acme": {"query": "50/second"}}'). The counters live in this process
    # ("memory://"), or in Redis-compatible storage every worker shares (RAG_RATE_LIMIT_STORAGE=redis://…).
    rate_limits_per_key: RateLimitSettings = RateLimitSettings()
    rate_limits_per_tenant: RateLimitSettings = RateLimitSettings(
        query="40/second;1200/minute", retrieve="100/second;6000/minute", upload="40/second;1200/minute",
        upload_bytes="2000000000/minute",
    )
    tenant_rate_limits: dict[str, RateLimitSettings] = Field(default_factory=dict)
    rate_limit_storage: str = "memory://"

    # Overload (rag/generation/gate.py): generation slots per worker, handed out in weighted fair order by
    # tenant (tenant_weights, default 1 each); a question whose expected wait for a slot passes
    # admission_max_wait_seconds is refused at once (503 with Retry-After). A request's deadline is
    # request_timeout_seconds after it arrives (a client may send less in X-Request-Timeout): past it while
    # queued, the question is dropped before any model call.
    generation_slots: int = Field(default=1, ge=1)
    admission_max_wait_seconds: float = Field(default=20.0, gt=0)
    tenant_weights: dict[str, float] = Field(default_factory=dict)
    request_timeout_seconds: float = Field(default=120.0, gt=0)
    # Uploads parsed and embedded at once per worker (others wait their turn); a large upload also gives
    # way to questions between its embedding batches (indexing/embedding.py).
    indexing_concurrency: int = Field(default=1, ge=1)

    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    max_files_per_request: int = Field(default=32, ge=1)

    # A profile written by `rag tune` (rag/profile.py): its settings apply beneath every RAG_* variable set
    # explicitly (and beneath arguments given in code).
    profile: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: object) -> object:
        """Only the values given explicitly are in ``data`` here, so the profile fills what they leave."""
        if isinstance(data, dict) and data.get("profile"):
            return beneath(data, load_profile(Path(str(data["profile"])).expanduser()))
        return data

    @field_validator("tiers", mode="before")
    @classmethod
    def _merge_tiers(cls, value: object) -> object:
        """A variable like RAG_TIERS__CHEAP__MODEL changes that field only; the rest keep their defaults."""
        if not isinstance(value, dict):
            return value
        merged = {name: tier.model_dump() for name, tier in _default_tiers().items()}
        for name, given in value.items():
            given = given.model_dump(exclude_unset=True) if isinstance(given, TierSettings) else given
            merged[name] = {**merged.get(name, {}), **given} if isinstance(given, dict) else given
        return merged

    @field_validator("data_dir", "model_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        for field_name in ("default_tier", "cheap_tier"):
            tier = getattr(self, field_name)
            if tier not in self.tiers:
                raise ValueError(f"{field_name} {tier!r} is not one of the tiers {sorted(self.tiers)}")
        if self.retrieval_mode == "dense" and self.rerank:
            raise ValueError("retrieval_mode 'dense' is the unreranked baseline; set rerank to false")
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("chunk_overlap_tokens must be smaller than chunk_tokens")
        if self.top_k > self.max_top_k:
            raise ValueError("top_k must not exceed max_top_k")
        if self.token_budget > self.max_token_budget:
            raise ValueError("token_budget must not exceed max_token_budget")
        with_overrides(RoutingParams(), self.router)  # unknown names or bad values fail here, at start-up
        return self

    @property
    def qdrant_key(self) -> str | None:
        """The Qdrant API key in clear, for the client that sends it."""
        return self.qdrant_api_key.get_secret_value() if self.qdrant_api_key else None

    @property
    def models_dir(self) -> Path:
        """Where packaged model parts are assembled once (the GGUF files)."""
        return self.model_dir or self.data_dir / "models"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
