"""The statuses each endpoint documents in the OpenAPI document, with the error body.

Every route passes `error_responses(...)` the statuses its own dependencies and code answer; the
app adds `ALWAYS` to every route (app.py). tests/api/test_openapi_responses.py compares each
route's documented statuses with a table, and the property test checks that every status it
provokes is documented.
"""

from __future__ import annotations

from typing import Any

from api.models import ErrorBody
from api.server import MAX_HEADER_BYTES

#: What each error status means here (the OpenAPI description of that response).
MEANING: dict[int, str] = {
    400: "The HTTP request itself is malformed (a header value with a CR or NUL); answered "
    "by the server before any route runs.",
    401: "No bearer token, or one that is invalid, expired, or names no current user "
    "(`WWW-Authenticate` says which).",
    403: "Operator endpoints are disabled: METRICS_TOKEN is not set.",
    404: "Not found (another user's job is not found either).",
    409: "The Idempotency-Key was used before with another body.",
    413: "The request body is larger than API_MAX_BODY_BYTES.",
    422: "A parameter or the body is not valid: the input rules (no NUL, lone surrogates, "
    "non-finite numbers, nesting beyond API_MAX_JSON_DEPTH), the schema, or the "
    "workflow's input_schema; `details` names each location.",
    429: "Rate limited; `Retry-After` says when to try again.",
    431: f"The request line and headers exceed {MAX_HEADER_BYTES} bytes; answered by the "
    "server before any route runs.",
    500: "Unexpected server error (the details are in the server log).",
    503: "The signing keys cannot be fetched right now; `Retry-After` says when to retry.",
}

#: Statuses every route can answer: the server's refusals of malformed or oversized requests
#: (api/server.py), the body-size limit, the input rules on any parameter, an unexpected error.
ALWAYS = (400, 413, 422, 431, 500)
#: Statuses of the user identity check (api.deps.authenticated): no or a bad token, a limit,
#: the signing keys out of reach.
USER_CHECK = (401, 429, 503)
#: Statuses of the operator token check (api.deps.require_operator): a wrong token, a limit,
#: or no METRICS_TOKEN configured.
OPERATOR_CHECK = (401, 403, 429)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the uniform error body."""
    return {status: {"model": ErrorBody, "description": MEANING[status]} for status in statuses}
