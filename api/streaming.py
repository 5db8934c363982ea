"""Running the pipeline's answer generator behind a server-sent event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from rag.types import Answer

_END = object()
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# nginx's status for a request its client closed before the response: never seen by that client, logged.
CLIENT_CLOSED_REQUEST = 499


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


async def answer_unless_gone(request: Request, events: Iterator[str | Answer]) -> Answer | None:
    """The whole answer, generated off the event loop; None when the client disconnects first. The client
    is checked at each piece of text the answer streams (a cascade's cheap answer arrives in one piece):
    once it has gone, generation stops and the tokens already spent are counted, as for a stream."""
    async with aclosing(pieces(events)) as items:
        async for item in items:
            if isinstance(item, Answer):
                return item
            if await request.is_disconnected():
                return None
    raise AssertionError("the answer's events ended without an Answer")
