"""Every generation an eval asked for, kept on disk by prompt, so that a prompt is generated once.

The tiers decode greedily and ``LlamaCppLLM`` computes a prompt the same way whatever was asked before,
so a model's answer to a prompt is a fact that can be looked up instead of recomputed: ``rag tune``
replays hundreds of configurations over one collection of answers, and ``rag eval qa`` asks the strong
tier for the prompts the cheap tier answered (the wrong-acceptance rate) without paying twice for a prompt
that two pipelines share. ``MemoizedLLM`` is the ``LLM`` protocol in front of a real model; it never
invents an answer: a prompt it has not seen goes to the model, and only a completed generation is kept.

The key is the model's name, ``max_tokens`` and the exact messages: a changed prompt template, passage
or question is a new prompt.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Generator, Sequence
from pathlib import Path

from rag.generation.llm.base import LLM, ChatMessage, Generation, drain


def prompt_key(model: str, messages: Sequence[ChatMessage], max_tokens: int) -> str:
    payload = json.dumps(
        [model, max_tokens, [[m.role, m.content] for m in messages]], ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class GenerationMemo:
    """A SQLite file of generations by prompt key; safe to share between the threads of one process."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS generations ("
            " key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL,"
            " finish_reason TEXT NOT NULL, token_probs TEXT)"
        )
        self._lock = threading.Lock()

    def get(self, key: str) -> Generation | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, finish_reason, token_probs FROM generations WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        probs = tuple(json.loads(row[2])) if row[2] is not None else None
        return Generation(text=row[0], finish_reason=row[1], token_probs=probs)

    def put(self, key: str, model: str, generation: Generation) -> None:
        probs = json.dumps(list(generation.token_probs)) if generation.token_probs is not None else None
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?)",
                (key, model, generation.text, generation.finish_reason, probs),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class MemoizedLLM:
    """A real ``LLM`` whose answers to prompts seen before come from the memo."""

    def __init__(self, inner: LLM, memo: GenerationMemo) -> None:
        self.model = inner.model
        self._inner = inner
        self._memo = memo
        self.hits = 0
        # Every completed call, in order: the eval reads which prompt a served answer came from.
        self.calls: list[tuple[Sequence[ChatMessage], Generation]] = []

    def warm_up(self) -> None:
        self._inner.warm_up()

    def generate(self, messages: Sequence[ChatMessage], max_tokens: int) -> Generation:
        return drain(self.stream(messages, max_tokens))

    def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> Generator[str, None, Generation]:
        key = prompt_key(self.model, messages, max_tokens)
        known = self._memo.get(key)
        if known is not None:
            self.hits += 1
            if known.text:
                yield known.text
            self.calls.append((messages, known))
            return known
        generation = yield from self._inner.stream(messages, max_tokens)
        self._memo.put(key, self.model, generation)  # only reached when the stream ran to its end
        self.calls.append((messages, generation))
        return generation

    def known(self, messages: Sequence[ChatMessage], max_tokens: int) -> Generation | None:
        """The memo's answer to this prompt, without asking the model."""
        return self._memo.get(prompt_key(self.model, messages, max_tokens))
