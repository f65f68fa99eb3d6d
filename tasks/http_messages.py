"""What goes over the guarded HTTP client: URLs, header values, status codes and bodies.

URLs and header values are checked and built here (pure), and every HTTP failure becomes a
`StepError` whose kind decides whether the step is retried.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from engine.errors import ErrorKind, StepError
from engine.security.sanitize import snippet
from engine.settings import Settings
from tasks.http_client import make_client

# ---------------------------------------------------------------------------------------------
# URLs and headers (pure)
# ---------------------------------------------------------------------------------------------


def check_url(url: object) -> str:
    """`url` if it is an absolute http(s) URL without credentials or whitespace.

    Raises StepError(CLIENT_ERROR): a wrong URL in the input will not get better on retry.
    """
    if not isinstance(url, str) or not url:
        raise StepError(ErrorKind.CLIENT_ERROR, "the URL must be a non-empty string")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise StepError(ErrorKind.CLIENT_ERROR, "the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise StepError(ErrorKind.CLIENT_ERROR, f"malformed URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StepError(ErrorKind.CLIENT_ERROR, "the URL must be absolute http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise StepError(ErrorKind.CLIENT_ERROR, "the URL must not carry user:password@")
    return url


def redact_url(url: str | httpx.URL) -> str:
    """The URL without credentials, query or fragment, for messages and logs."""
    parts = urlsplit(str(url))
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    try:
        if parts.port:
            netloc += f":{parts.port}"
    except ValueError:
        pass
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _url_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise StepError(
        ErrorKind.MAPPING,
        f"URL placeholder {{{name}}} needs a string or number, got {type(value).__name__}",
    )


def build_url(template: str, values: Mapping[str, Any]) -> str:
    """Fill the `{name}` placeholders of `template`, URL-encoding every value.

    Every character of a value outside the unreserved set is percent-encoded ('/' too), so a
    value can neither add path segments nor change the host or the query. A missing value
    raises StepError(MAPPING); the result is checked with `check_url`.
    """
    pieces: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise StepError(ErrorKind.CONFIG, f"malformed URL template: {exc}") from exc
    for literal, field, _spec, _conversion in parsed:
        pieces.append(literal)
        if field is None:
            continue
        if field not in values or values[field] is None:
            raise StepError(
                ErrorKind.MAPPING, f"URL template needs {{{field}}}, which the step input lacks"
            )
        pieces.append(quote(_url_value(field, values[field]), safe=""))
    return check_url("".join(pieces))


def check_header_value(name: str, value: str) -> str:
    """`value` if it is safe to send as header `name`; never echoes the value in errors.

    Raises StepError(CONFIG): header values come from config or environment variables.
    """
    if not name or any(ch in name for ch in "\r\n\0:") or name != name.strip():
        raise StepError(ErrorKind.CONFIG, f"invalid header name {name!r}")
    if any(ch in value for ch in "\r\n\0"):
        raise StepError(
            ErrorKind.CONFIG, f"the value of header {name!r} contains a line break or NUL"
        )
    return value


# ---------------------------------------------------------------------------------------------
# Responses and errors
# ---------------------------------------------------------------------------------------------


def status_kind(status: int) -> ErrorKind:
    """The error kind an unexpected HTTP status means."""
    if status in (408, 429):
        return ErrorKind.RATE_LIMITED
    if 400 <= status < 500:
        return ErrorKind.CLIENT_ERROR
    if status >= 500:
        return ErrorKind.SERVER_ERROR
    return ErrorKind.INVALID_RESPONSE


def http_status_error(response: httpx.Response, *, body: bytes | None = None) -> StepError:
    """A StepError for a response whose status is not a success.

    `body` is the content already read from a streamed response (for the message excerpt).
    """
    try:
        content = response.content if body is None else body
    except (httpx.ResponseNotRead, httpx.StreamError):
        content = b""
    excerpt = snippet(content[:2000].decode("utf-8", errors="replace")) if content else ""
    try:
        message = f"{response.request.method} {redact_url(response.request.url)}"
    except RuntimeError:  # a response built without a request
        message = "upstream"
    message += f" answered HTTP {response.status_code}"
    if excerpt:
        message += f": {excerpt}"
    details: dict[str, Any] = {"status": response.status_code}
    retry_after = response.headers.get("retry-after")
    if retry_after:
        details["retry_after"] = retry_after[:64]
    return StepError(status_kind(response.status_code), message, details=details)


def transport_error(exc: Exception, what: str) -> StepError:
    """A StepError for an httpx failure while doing `what`."""
    if isinstance(exc, StepError):
        return exc
    if isinstance(exc, httpx.TimeoutException):
        return StepError(ErrorKind.TIMEOUT, f"{what}: timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.TooManyRedirects):
        return StepError(ErrorKind.CLIENT_ERROR, f"{what}: too many redirects")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return StepError(ErrorKind.CLIENT_ERROR, f"{what}: {exc}")
    if isinstance(exc, httpx.DecodingError):
        return StepError(ErrorKind.INVALID_RESPONSE, f"{what}: undecodable response: {exc}")
    if isinstance(exc, httpx.TransportError):
        return StepError(ErrorKind.CONNECTION, f"{what}: {type(exc).__name__}: {exc}")
    return StepError(ErrorKind.INTERNAL, f"{what}: {type(exc).__name__}: {exc}")


@contextmanager
def classify_errors(what: str) -> Iterator[None]:
    """Turn httpx failures inside the block into classified StepErrors."""
    try:
        yield
    except StepError:
        raise
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise transport_error(exc, what) from exc


@contextmanager
def guarded_call(
    settings: Settings, what: str, *, timeout: float, **client_options: Any
) -> Iterator[httpx.Client]:
    """A client from `make_client` (SSRF-guarded) whose httpx failures inside the block become
    StepErrors naming `what`; `client_options` go to `make_client`."""
    with make_client(settings, timeout=timeout, **client_options) as client, classify_errors(what):
        yield client


def read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """The body of a streamed response, refusing more than `max_bytes` (StepError TOO_LARGE)."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise StepError(
            ErrorKind.TOO_LARGE,
            f"response declares {int(declared)} bytes, more than the limit of {max_bytes}",
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise StepError(ErrorKind.TOO_LARGE, f"response exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_body(content: bytes, content_type: str | None) -> Any:
    """JSON-decoded body when the content type says JSON, else text (or None when empty)."""
    if not content:
        return None
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            return json.loads(content)
        except ValueError:
            pass
    return content.decode("utf-8", errors="replace")
