"""The micro-batcher: every caller gets its own result, concurrent calls share batches, and a failing
item fails only its own request. Then the real query embedder behind it gives the same numbers
as without it. (The cross-encoder is not batched across requests: its INT8 model quantizes activations
per batch, so a pair's logit moved by more than 0.5 with its batch-mates, enough to reorder candidates.)"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from indexing.embedding import BatchedQueryEmbedder, SentenceTransformerEmbedder
from rag.batching import DynamicBatcher


def slow_square(items):
    time.sleep(0.02)  # a forward pass: long enough for others to queue up behind it
    return [x * x for x in items]


def test_each_caller_gets_its_own_result_in_shared_batches() -> None:
    batcher = DynamicBatcher(slow_square, max_batch=8, max_wait_ms=5, name="t")
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(batcher.submit, range(64)))
    batcher.close()
    assert results == [x * x for x in range(64)]
    assert batcher.items == 64 and batcher.batches < 64  # shared
    assert batcher.items / batcher.batches <= 8


def test_a_failing_item_fails_only_its_own_request() -> None:
    def picky(items):
        if any(x == 13 for x in items):
            raise ValueError("13 is unlucky")
        return [x + 1 for x in items]

    batcher = DynamicBatcher(picky, max_batch=16, max_wait_ms=20, name="t")
    outcomes: dict[int, object] = {}

    def call(x: int) -> None:
        try:
            outcomes[x] = batcher.submit(x)
        except ValueError as exc:
            outcomes[x] = exc

    threads = [threading.Thread(target=call, args=(x,)) for x in range(10, 20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert isinstance(outcomes[13], ValueError)
    assert {x: outcomes[x] for x in range(10, 20) if x != 13} == {x: x + 1 for x in range(10, 20) if x != 13}


def test_a_batch_function_that_loses_results_is_an_error_not_a_mixup() -> None:
    batcher = DynamicBatcher(lambda items: items[:-1], max_batch=4, max_wait_ms=1, name="t")
    with pytest.raises(RuntimeError, match="gave 0 results"):
        batcher.submit(1)
    batcher.close()
    with pytest.raises(ValueError):
        DynamicBatcher(slow_square, max_batch=0, max_wait_ms=1, name="t")


def test_the_real_embedder_gives_the_same_numbers_batched() -> None:
    embedder = SentenceTransformerEmbedder()
    batched = BatchedQueryEmbedder(embedder, max_batch=8, max_wait_ms=5)
    questions = [f"what is the capital of country number {i}?" for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(batched.embed_query, questions))
    alone = [embedder.embed_query(q) for q in questions]
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(together, alone))
    assert batched.batcher.batches < len(questions)
    batched.close()



def test_a_question_is_embedded_between_the_batches_of_a_large_upload() -> None:
    """A large upload gives way to questions: one arriving while 800 passages are being embedded is
    embedded before they are all done, and both get the vectors they would get alone."""
    embedder = SentenceTransformerEmbedder(batch_size=32)
    embedder.warm_up()
    passages = [f"passage number {i} about steam turbines, rotors and stators in power stations" for i in range(800)]
    with ThreadPoolExecutor(1) as pool:
        upload = pool.submit(embedder.embed_documents, passages)
        while not embedder._lock.locked():  # the upload's first batch is being embedded
            time.sleep(0.001)
        question = embedder.embed_query("What are rotors mounted on?")
        assert not upload.done(), "the question waited for the whole upload"
        vectors = upload.result()
    assert vectors.shape == (800, embedder.dim)
    assert np.allclose(vectors[[0, 400, 799]], embedder.embed_documents([passages[0], passages[400], passages[799]]), atol=1e-5)
    assert np.allclose(question, embedder.embed_query("What are rotors mounted on?"), atol=1e-5)
