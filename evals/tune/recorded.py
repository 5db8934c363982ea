"""Retrieval done once per question and context, then handed to every configuration that shares it.

A sweep runs dozens of configurations that differ only in who answers; their retrieval (BM25, dense,
graph, rerank, trim) is the same computation, so it is run by the service's own retriever the first time
and recorded. The pipeline that reads it is the service's own, so a configuration's answers are what the
service answers with those settings.
"""

from __future__ import annotations

import numpy as np

from rag.pipeline import Retriever
from rag.types import Retrieval


class RecordedRetriever:
    """The ``Retriever`` protocol over a real retriever, each (tenant, question, depth, budget) run once."""

    def __init__(self, inner: Retriever) -> None:
        self._inner = inner
        self._seen: dict[tuple[str, str, int, int], Retrieval] = {}

    def retrieve(
        self, tenant: str, question: str, top_k: int, token_budget: int, query_vector: np.ndarray | None = None
    ) -> Retrieval:
        key = (tenant, question, top_k, token_budget)
        if key not in self._seen:
            self._seen[key] = self._inner.retrieve(tenant, question, top_k, token_budget, query_vector)
        return self._seen[key]
