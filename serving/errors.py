"""The service's one error contract.

Every error, from every route and every middleware, is answered as::

    {"error": {"code": "...", "message": "...", "field": "...", "request_id": "..."}}

with the HTTP status that fits (``field`` only where one field is at fault). Client
errors (4xx) are logged as one line at INFO; server errors (5xx) with the traceback.
:func:`error_response` builds the body; :func:`from_exception` maps the core's
exceptions to it, so the mapping lives here and nowhere else. The decision core's own
exceptions (:class:`BatchTooLarge`, :class:`UnknownCandidates`, :class:`NotReady`,
:class:`ReloadFailed`) are defined here too, beside their mapping.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, Field

from features.errors import InputError, NotFoundError, TailorError

logger = logging.getLogger("tailor.http")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable: `invalid_request`, `not_found` …")
    message: str = Field(description="What is wrong and what to change, for a person.")
    field: str | None = Field(
        None, description="The request field at fault (dotted path), where one is."
    )
    request_id: str = Field(description="Also in the `X-Request-ID` response header.")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class ApiError(Exception):
    """An error with its HTTP status, raised anywhere under a route."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


class BatchTooLarge(InputError):
    """A batch over the configured limit (HTTP 413)."""


class UnknownCandidates(NotFoundError):
    """Content the service does not know: candidate ids, or a slot without active
    content (HTTP 404, naming the field)."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}={value!r}: {reason}")


class NotReady(TailorError):
    """Decisions refused: the configuration did not load (HTTP 503)."""


class ReloadFailed(TailorError):
    """A reload could not load something; what was serving stays (HTTP 503)."""


DEFAULT_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
    504: "timeout",
}


def code_for(status: int) -> str:
    if status in DEFAULT_CODES:
        return DEFAULT_CODES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def error_body(
    status: int,
    message: str,
    *,
    request_id: str,
    code: str | None = None,
    field: str | None = None,
) -> bytes:
    detail: dict[str, Any] = {"code": code or code_for(status), "message": message}
    if field is not None:
        detail["field"] = field
    detail["request_id"] = request_id
    return json.dumps({"error": detail}).encode()


def from_exception(error: BaseException) -> ApiError | None:
    """The core's exceptions as API errors (``None``: not a client error)."""
    # Imported here: the event writer imports the online store.
    from serving.events import StoreUnavailable

    if isinstance(error, ApiError):
        return error
    if isinstance(error, BatchTooLarge):
        return ApiError(413, "too_large", str(error), field=error.field)
    if isinstance(error, UnknownCandidates):
        return ApiError(404, "unknown_content", str(error), field=error.field)
    if isinstance(error, InputError):
        return ApiError(422, "unprocessable", str(error), field=error.field)
    if isinstance(error, NotFoundError):
        return ApiError(404, "not_found", str(error), field=getattr(error, "field", None))
    if isinstance(error, StoreUnavailable):
        return ApiError(503, "store_unavailable", str(error))
    if isinstance(error, ReloadFailed):
        return ApiError(503, "reload_failed", str(error))
    if isinstance(error, NotReady):
        return ApiError(503, "not_ready", str(error))
    if isinstance(error, TailorError):
        return ApiError(422, "unprocessable", str(error))
    if isinstance(error, sqlite3.OperationalError) and _storage(error):
        return ApiError(503, "store_unavailable", f"a store cannot be written: {error}")
    return None


def _storage(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return any(s in text for s in ("readonly", "read-only", "disk", "full", "unable to open"))


def log_client_error(
    method: str, path: str, status: int, code: str, message: str, rid: str
) -> None:
    """One line per refused request: no traceback for a caller's mistake."""
    logger.info("%s %s -> %d %s: %s [request %s]", method, path, status, code, message[:300], rid)
