"""Typed errors. Each carries the HTTP status it maps to; ``api.errors`` is the one place that maps them."""

from __future__ import annotations

from datetime import UTC, datetime


class RagError(Exception):
    """Base of every error the service reports to a caller."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param  # the request field at fault, when one is

    def retry_after(self) -> int | None:
        """Seconds after which the same request may succeed (the Retry-After header), when known."""
        return None


class UnsupportedMediaType(RagError):
    status_code = 415
    code = "unsupported_media_type"


class UnprocessableDocument(RagError):
    """Empty, corrupt or unreadable file."""

    status_code = 422
    code = "unprocessable_document"


class PayloadTooLarge(RagError):
    status_code = 413
    code = "payload_too_large"


class InvalidRequest(RagError):
    status_code = 422
    code = "invalid_request"


class Unauthorized(RagError):
    """No API key, or one that names no tenant."""

    status_code = 401
    code = "unauthorized"


class NotFound(RagError):
    status_code = 404
    code = "not_found"


class UnknownModel(NotFound):
    """A chat request names a model (a service profile) that is not offered."""

    code = "model_not_found"


class ModelUnavailable(RagError):
    """A packaged model is missing or does not match its checksum."""

    status_code = 503
    code = "model_unavailable"


class StoreError(RagError):
    """A store failed in a way the caller cannot fix."""

    status_code = 503
    code = "store_unavailable"


class UpstreamLLMError(RagError):
    """A remote model endpoint failed, timed out or answered with something unusable."""

    status_code = 502
    code = "upstream_llm_error"


class BudgetExceeded(RagError):
    """The tenant's daily spending limit is reached; ``resets_at`` says when queries resume."""

    status_code = 429
    code = "budget_exceeded"

    def __init__(self, message: str, resets_at: object = None) -> None:
        super().__init__(message)
        self.resets_at = resets_at

    def retry_after(self) -> int | None:
        if not isinstance(self.resets_at, datetime):
            return None
        return max(1, int((self.resets_at - datetime.now(UTC)).total_seconds()))


class Refused(RagError):
    """A request turned away under load before any work, with when to try again."""

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds

    def retry_after(self) -> int | None:
        return self.retry_after_seconds


class RateLimited(Refused):
    """A rate limit of the caller's key or tenant is reached; the message names it."""

    status_code = 429
    code = "rate_limited"


class Overloaded(Refused):
    """Generation's queue is too long: a new question would wait past the admission limit."""

    status_code = 503
    code = "overloaded"


class DeadlineExceeded(RagError):
    """The request's deadline passed before generation could start; no model was asked."""

    status_code = 503
    code = "deadline_exceeded"

    def retry_after(self) -> int | None:
        return 1
