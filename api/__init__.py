"""HTTP adapter (FastAPI): customer portal, reading ingest, operator calls, health.

Routes are thin: decode the request, call one function of the core or of ``billing``,
encode the answer. Every error leaves as JSON ``{"detail": "..."}``.
"""

from __future__ import annotations


class ApiError(Exception):
    """Root of the errors a route raises on purpose; rendered as ``{"detail": ...}``."""

    status_code = 400

    def __init__(
        self, detail: str, *, status_code: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code
        self.headers = headers or {}


class BadRequest(ApiError):
    status_code = 400


class NotAuthenticated(ApiError):
    status_code = 401


class Forbidden(ApiError):
    status_code = 403


class NotFound(ApiError):
    status_code = 404


class PayloadTooLarge(ApiError):
    status_code = 413


class Unprocessable(ApiError):
    status_code = 422
