"""Dynamic micro-batching: concurrent requests share one forward pass of a local model.

Each caller submits one item and blocks; a worker thread takes the first waiting item, gathers whatever
else arrives within ``max_wait_ms`` (up to ``max_batch`` items), runs them as one batch, and hands each
caller its own result. If a batch fails, its items are run one by one, so a bad item fails only its own
request.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_STOP = object()


class DynamicBatcher(Generic[T, R]):
    def __init__(
        self, run_batch: Callable[[Sequence[T]], Sequence[R]], max_batch: int, max_wait_ms: float, name: str
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be at least 1 and max_wait_ms not negative")
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._max_wait_s = max_wait_ms / 1000
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._serve, name=f"batcher-{name}", daemon=True)
        self._worker.start()
        self.batches = 0  # batches run, and the items in them: the mean batch size is items / batches
        self.items = 0

    def submit(self, item: T) -> R:
        future: Future[R] = Future()
        self._queue.put((item, future))
        return future.result()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._worker.join(timeout=10)

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            deadline = time.monotonic() + self._max_wait_s
            stop = False
            while len(batch) < self._max_batch:
                remaining = deadline - time.monotonic()
                try:
                    entry = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if entry is _STOP:
                    stop = True
                    break
                batch.append(entry)
            self.batches += 1
            self.items += len(batch)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[tuple[T, Future]]) -> None:
        try:
            results = self._run_batch([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
        except Exception as exc:  # noqa: BLE001 -- any failure is isolated to the item that caused it
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for entry in batch:  # isolate the failing item(s): each runs alone
                self._run([entry])
            return
        for (_, future), result in zip(batch, results):
            future.set_result(result)
