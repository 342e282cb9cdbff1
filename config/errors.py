"""The one error root of Parley.

Every expected failure is a ``ParleyError`` with an HTTP status and a stable
machine-readable ``code``. The HTTP layer and the socket hub each render it in
one place, as ``{"error": {"code": ..., "message": ...}}``. It lives in
``config`` because every package (realtime, storage, server) may raise it and
``config`` is the one package they all stand on.
"""

from __future__ import annotations

from typing import Any


class ParleyError(Exception):
    """An expected failure the client can act on."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class InvalidRequestError(ParleyError):
    status = 422
    code = "invalid_request"


class AuthenticationError(ParleyError):
    status = 401
    code = "unauthenticated"


class PermissionDeniedError(ParleyError):
    status = 403
    code = "forbidden"


class NotFoundError(ParleyError):
    status = 404
    code = "not_found"


class ConflictError(ParleyError):
    status = 409
    code = "conflict"


class PayloadTooLargeError(ParleyError):
    status = 413
    code = "payload_too_large"


class RateLimitedError(ParleyError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class UnavailableError(ParleyError):
    status = 503
    code = "unavailable"


class ConfigurationError(Exception):
    """Settings are invalid; start-up stops with this message."""
