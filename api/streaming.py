"""Running the pipeline's answer generator behind a server-sent event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
from starlette.concurrency import run_in_threadpool

from rag.types import Answer

_END = object()
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _next(events: Iterator[str | Answer]) -> object:
    return next(events, _END)


async def pieces(events: Iterator[str | Answer]) -> AsyncIterator[str | Answer]:
    """The generator's items, each produced off the event loop. However the stream ends (done, failed,
    or the client left and the response was cancelled), the generator is closed, shielded from the
    cancellation: that stops generation and counts the tokens already spent."""
    try:
        while True:
            item = await run_in_threadpool(_next, events)
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(events.close)
