"""One error body for every 4xx and 5xx answer, and the handlers that produce it.

Every error response is `{"error": {"code": str, "message": str, "details": any}}`. Engine
errors map to statuses here, so routes just raise them; anything unexpected becomes a 500 with
a generic message while the traceback goes to the log.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import AuthError, AuthUnavailableError
from api.decoding import InputProblem, printable
from api.ratelimit import RateLimitedError
from engine.errors import (
    ConflictError,
    DefinitionError,
    EngineError,
    InputValidationError,
    NotFoundError,
)

logger = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal server error"


class RequestTooLargeError(EngineError):
    """The request body is larger than the API accepts (413)."""

    code = "request_too_large"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"request body exceeds {max_bytes} bytes", details={"max_bytes": max_bytes}
        )
        self.max_bytes = max_bytes


class InputPolicyError(StarletteHTTPException):
    """The request breaks the input policy of api/decoding.py (422 `invalid_request`).

    An HTTPException so that FastAPI, which turns other errors raised while it reads a body
    into a bare 400, lets it through to the handler below.
    """

    def __init__(self, problems: list[InputProblem]) -> None:
        super().__init__(422, "request is not valid")
        self.problems = problems


#: Status of each engine error the API answers with; looked up along the class's MRO.
STATUS_BY_ERROR: dict[type[EngineError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    InputValidationError: 422,
    DefinitionError: 422,
    AuthError: 401,
    AuthUnavailableError: 503,
    RateLimitedError: 429,
    RequestTooLargeError: 413,
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The JSON body of every error response."""
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error response in the uniform shape."""
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def status_for(exc: EngineError) -> int | None:
    """The HTTP status of `exc`, or None when the API has no public answer for it."""
    for cls in type(exc).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return None


def headers_for(exc: EngineError) -> dict[str, str] | None:
    """Extra headers the status of `exc` calls for (a challenge, a retry hint)."""
    if isinstance(exc, AuthError):
        return {"WWW-Authenticate": exc.www_authenticate}
    if isinstance(exc, RateLimitedError):
        return {"Retry-After": str(exc.retry_after_seconds)}
    if isinstance(exc, AuthUnavailableError):
        return {"Retry-After": "30"}
    return None


def status_code_name(status: int) -> str:
    """A snake_case code for an HTTP status: 404 -> "not_found", 405 -> "method_not_allowed"."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return f"http_{status}"
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


def validation_details(errors: Any) -> list[dict[str, str]]:
    """Request validation errors as `{location, message, type}`; the offending input is left
    out so a secret or a large value sent by mistake is not echoed back."""
    details: list[dict[str, str]] = []
    for err in errors:
        # printable: a location naming a bad key must still encode as UTF-8.
        location = ".".join(str(printable(part)) for part in err.get("loc", ()))
        details.append(
            {
                "location": location,
                "message": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return details


async def _engine_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EngineError)
    status = status_for(exc)
    if status is None:
        # An engine error with no public meaning here (configuration, mapping, ...) is a bug
        # or an outage on our side; its message may name internals.
        return await _unhandled(request, exc)
    return error_response(status, exc.code, exc.message, exc.details, headers_for(exc))


def invalid_request(errors: Any) -> JSONResponse:
    """The 422 `invalid_request` answer listing each of `errors` (pydantic's error shape)."""
    return error_response(
        422, "invalid_request", "request is not valid", validation_details(errors)
    )


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return invalid_request(exc.errors())


async def _input_policy(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InputPolicyError)
    return invalid_request(
        [{"loc": p.location, "msg": p.message, "type": p.type} for p in exc.problems]
    )


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else None
    details = None if message is not None or exc.detail is None else exc.detail
    return error_response(
        exc.status_code,
        status_code_name(exc.status_code),
        message or HTTPStatus(exc.status_code).phrase,
        details,
        dict(exc.headers) if exc.headers else None,
    )


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    logger.error(
        "unhandled error on %s %s",
        request.method,
        request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return error_response(500, "internal_error", INTERNAL_MESSAGE)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error `app` answers use the uniform body.

    The `Exception` handler runs in Starlette's outermost middleware, which re-raises after
    answering so the server still sees the failure; test clients need
    `raise_server_exceptions=False` to observe the 500.
    """
    app.add_exception_handler(EngineError, _engine_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(InputPolicyError, _input_policy)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(Exception, _unhandled)
