"""The one table from domain errors to problem+json (RFC 9457) responses."""

from __future__ import annotations

from http import HTTPStatus

from litestar.exceptions import HTTPException
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException

from threadline.domain.errors import (
    Conflict,
    IdempotencyMismatch,
    InvalidInput,
    NotFound,
    RateLimited,
    ThreadlineError,
    Unavailable,
)
from threadline.http.rate_limits import quota_headers

STATUS_BY_ERROR: dict[type[ThreadlineError], int] = {
    NotFound: 404,
    InvalidInput: 422,
    IdempotencyMismatch: 422,
    Conflict: 409,
    Unavailable: 503,
    RateLimited: 429,
}

TITLES = {
    404: "Not found",
    409: "Conflict",
    422: "Invalid request",
    429: "Too many requests",
    503: "Unavailable",
}


def status_of(error: ThreadlineError) -> int:
    return next((STATUS_BY_ERROR[kind] for kind in type(error).__mro__ if kind in STATUS_BY_ERROR), 400)


def to_problem(error: ThreadlineError) -> ProblemDetailsException:
    status = status_of(error)
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s is not None else None
    if isinstance(error, RateLimited) and error.quota is not None:
        headers = {**(headers or {}), **quota_headers(error.quota)}
    return ProblemDetailsException(
        detail=error.message,
        status_code=status,
        type_=f"urn:threadline:problem:{error.code}",
        title=TITLES.get(status, "Bad request"),
        headers=headers,
        extra={"code": error.code},
    )


def expected_errors() -> set[int | type[Exception]]:
    """Errors that are answers, not faults: logged as one access line, never with a traceback."""
    kinds: set[type[Exception]] = {UnicodeDecodeError, RecursionError}
    pending: list[type[Exception]] = [ThreadlineError]
    while pending:
        kind = pending.pop()
        kinds.add(kind)
        pending.extend(kind.__subclasses__())
    return {*range(400, 500), 503, *kinds}


def http_problem(error: HTTPException) -> ProblemDetailsException:
    """Litestar's own errors (validation, auth, size): the status phrase as title, the reason as detail."""
    status = error.status_code
    return ProblemDetailsException(
        detail=error.detail or HTTPStatus(status).phrase,
        status_code=status,
        title=HTTPStatus(status).phrase,
        headers=error.headers,
        extra=error.extra,
    )


def undecodable_body(error: Exception) -> ProblemDetailsException:
    """msgspec raises these, outside its own error types, for invalid UTF-8 and absurd nesting."""
    detail = (
        "The request body is nested too deeply."
        if isinstance(error, RecursionError)
        else "The request body is not valid UTF-8."
    )
    return ProblemDetailsException(
        detail=detail, status_code=400, title="Bad request", type_="urn:threadline:problem:undecodable_body"
    )


def problem_details_config() -> ProblemDetailsConfig:
    return ProblemDetailsConfig(
        enable_for_all_http_exceptions=True,
        exception_to_problem_detail_map={
            HTTPException: http_problem,
            ThreadlineError: to_problem,
            UnicodeDecodeError: undecodable_body,
            RecursionError: undecodable_body,
        },
    )
