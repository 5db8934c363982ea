"""Core of the cost-optimized RAG service: settings, domain types, pipeline, LLM clients, token accounting."""

import os

# Models come from installed packages only; a hub lookup would fail offline and on CI.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
