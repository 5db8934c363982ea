"""The whole-request bound of uploads, in the one error format.

FastAPI's ``max_body_size`` stops any body that grows past the bound while it streams in (a chunked
upload included), but answers with plain text; a request that declares its size up front gets our JSON
413 before a byte of it is read.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send


def upload_body_limit(max_files: int, max_file_bytes: int) -> int:
    """Every file at its limit, plus room for the multipart framing of each."""
    return max_files * (max_file_bytes + 16_384) + 65_536


class DeclaredBodyLimit:
    """Refuses a POST to ``path`` whose Content-Length exceeds ``limit``, with a JSON 413."""

    def __init__(self, app: ASGIApp, path: str, limit: int) -> None:
        self.app, self.path, self.limit = app, path, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/") == self.path:
            declared = dict(scope["headers"]).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.limit:
                await self._refuse(int(declared), send)
                return
        await self.app(scope, receive, send)

    async def _refuse(self, declared: int, send: Send) -> None:
        message = f"request body of {declared} bytes exceeds the limit of {self.limit} bytes for one upload request"
        body = json.dumps({"error": {"code": "payload_too_large", "message": message}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
