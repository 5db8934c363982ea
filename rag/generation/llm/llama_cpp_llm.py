"""A GGUF model run in-process by llama.cpp: no server to operate, and tokens cost only CPU time."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from pathlib import Path

import numpy as np
from llama_cpp import Llama, LogitsProcessorList
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from rag.errors import ModelUnavailable
from rag.generation.llm.base import ChatMessage, ContextOverflow, Generation, drain

_SEED = 0


class LlamaCppLLM:
    """Greedy (temperature 0) chat completion, so the same question over the same context gives the same answer.

    ``model_path`` may be a callable so that the slow GGUF assembly runs in ``warm_up``, not at construction.
    """

    def __init__(self, model: str, model_path: Path | Callable[[], Path], n_threads: int, n_ctx: int) -> None:
        self.model = model
        self._model_path = model_path
        self._n_threads = n_threads
        self._n_ctx = n_ctx
        # One llama.cpp context is not safe to use from two threads; requests take turns.
        self._lock = threading.Lock()
        self._llama: Llama | None = None
        self._formatter: Jinja2ChatFormatter | None = None
        self._primed: list[int] = []  # the prefix held in llama.cpp's cache, evaluated on its own

    def warm_up(self) -> None:
        with self._lock:
            self._load()

    def generate(self, messages: Sequence[ChatMessage], max_tokens: int) -> Generation:
        return drain(self.stream(messages, max_tokens))

    def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> Generator[str, None, Generation]:
        if max_tokens < 1:  # llama.cpp would read 0 as "until the window is full"
            raise ValueError("max_tokens must be at least 1")
        payload = [{"role": m.role, "content": m.content} for m in messages]
        pieces: list[str] = []
        chosen: list[float] = []
        finish_reason = "stop"
        # The model is held for the whole stream: one llama.cpp context serves one request at a time.
        with self._lock:
            llama, formatter = self._load()
            prompt = formatter(messages=payload).prompt
            prompt_tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            n_prompt = len(prompt_tokens)
            if n_prompt + max_tokens > self._n_ctx:
                raise ContextOverflow(
                    f"{self.model}: prompt of {n_prompt} tokens plus max_tokens={max_tokens} "
                    f"exceeds the context window of {self._n_ctx}"
                )
            self._keep_only_prefix(llama, _fixed_prefix(llama, formatter, payload, prompt_tokens))
            chunks = llama.create_chat_completion(
                messages=payload,
                temperature=0.0,
                max_tokens=max_tokens,
                stream=True,
                logits_processor=LogitsProcessorList([_ChosenTokenProbability(chosen)]),
            )
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    piece = choice["delta"].get("content") or ""
                    if piece:
                        pieces.append(piece)
                        yield piece
                    finish_reason = choice.get("finish_reason") or finish_reason
            finally:
                chunks.close()
        return Generation(
            text="".join(pieces).strip(), finish_reason=finish_reason, token_probs=tuple(chosen)
        )

    def _keep_only_prefix(self, llama: Llama, prefix: list[int]) -> None:
        """Leave exactly ``prefix`` in llama.cpp's cache, evaluated on its own, so that the rest of every
        prompt is computed the same way whatever was asked before. llama-cpp-python otherwise reuses the
        longest match with the previous prompt and evaluates only the remainder: the same prompt twice
        then re-evaluates one token alone, whose arithmetic differs from a batch's enough to change the
        token probabilities and, at near ties, the greedy answer. The caller holds the lock."""
        if prefix and self._primed == prefix and llama.n_tokens >= len(prefix):
            llama.n_tokens = len(prefix)  # generate() drops the cached rest
            return
        llama.reset()
        if prefix:
            llama.eval(prefix)
        self._primed = prefix

    def _load(self) -> tuple[Llama, Jinja2ChatFormatter]:
        """Load once; the caller holds the lock."""
        if self._llama is None or self._formatter is None:
            path = self._model_path() if callable(self._model_path) else self._model_path
            llama = Llama(
                model_path=str(path),
                n_ctx=self._n_ctx,
                n_threads=self._n_threads,
                n_threads_batch=self._n_threads,
                seed=_SEED,
                verbose=False,  # also silences llama.cpp's own stderr logging
            )
            self._formatter = _chat_formatter(llama, self.model)
            # Generate with the very formatter used to count prompt tokens, so the window check is exact.
            llama.chat_handler = self._formatter.to_chat_handler()
            self._llama = llama
        return self._llama, self._formatter


class _ChosenTokenProbability:
    """Records, at each decoding step, the probability of the token greedy decoding will pick (the
    most likely one), leaving the logits unchanged. About a millisecond per token over the vocabulary."""

    def __init__(self, out: list[float]) -> None:
        self._out = out

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        values = np.asarray(logits, dtype=np.float64)
        self._out.append(float(1.0 / np.exp(values - values.max()).sum()))
        return logits


def _fixed_prefix(
    llama: Llama, formatter: Jinja2ChatFormatter, payload: list[dict], prompt_tokens: list[int]
) -> list[int]:
    """The prompt's tokens before the last message's content: the same for every request that shares
    the earlier messages (the system prompt)."""
    blank = formatter(messages=[*payload[:-1], {**payload[-1], "content": ""}]).prompt
    blank_tokens = llama.tokenize(blank.encode("utf-8"), add_bos=False, special=True)
    shared = 0
    for a, b in zip(prompt_tokens, blank_tokens):
        if a != b:
            break
        shared += 1
    return prompt_tokens[: min(shared, len(prompt_tokens) - 1)]


def _chat_formatter(llama: Llama, model: str) -> Jinja2ChatFormatter:
    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise ModelUnavailable(f"{model}: the GGUF file carries no chat template")
    eos, bos = llama.token_eos(), llama.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=llama.detokenize([eos], special=True).decode("utf-8") if eos != -1 else "",
        bos_token=llama.detokenize([bos], special=True).decode("utf-8") if bos != -1 else "",
        stop_token_ids=[eos],
    )
