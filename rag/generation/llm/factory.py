"""Turns a tier's settings into a ready-to-warm LLM, the one place that knows every backend."""

from __future__ import annotations

import os
from functools import partial

from rag.generation.llm.base import LLM
from rag.generation.llm.llama_cpp_llm import LlamaCppLLM
from rag.generation.llm.local_models import ensure_gguf, packaged_model
from rag.generation.llm.openai_compat import OpenAICompatibleLLM
from rag.settings import Settings, TierSettings


def build_llm(tier: TierSettings, settings: Settings) -> LLM:
    """Cheap to call: GGUF assembly and model loading wait for ``warm_up``."""
    if tier.backend == "llama_cpp":
        packaged_model(tier.model)  # a misspelt model name fails at start-up, not at the first request
        return LlamaCppLLM(
            model=tier.model,
            model_path=partial(ensure_gguf, tier.model, settings.models_dir),
            n_threads=settings.llm_threads,
            n_ctx=settings.llm_context_tokens,
        )
    assert tier.base_url is not None  # TierSettings rejects an 'openai' tier without one
    api_key = os.environ.get(tier.api_key_env) if tier.api_key_env else None
    return OpenAICompatibleLLM(base_url=tier.base_url, model=tier.model, api_key=api_key)
