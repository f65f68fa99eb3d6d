"""URL templates, header values, status classification and prompt sanitising (pure)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from engine.errors import ErrorKind, StepError
from engine.security.sanitize import render_template, sanitise_value
from tasks.http_messages import (
    build_url,
    check_header_value,
    check_url,
    http_status_error,
    redact_url,
    status_kind,
)


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        ("https://api.example/v1/items/{id}", {"id": 42}, "https://api.example/v1/items/42"),
        (
            "https://api.example/v1/items/{id}",
            {"id": "../../admin"},
            "https://api.example/v1/items/..%2F..%2Fadmin",
        ),
        (
            "https://api.example/s?q={q}&n={n}",
            {"q": "a b&c=d#e", "n": 1.5},
            "https://api.example/s?q=a%20b%26c%3Dd%23e&n=1.5",
        ),
        ("https://api.example/{x}", {"x": "ü/?"}, "https://api.example/%C3%BC%2F%3F"),
        ("https://api.example/{flag}", {"flag": True}, "https://api.example/true"),
        ("https://{sub}.example/", {"sub": "eu"}, "https://eu.example/"),
        ("https://{host}/", {"host": "evil.example/x"}, "https://evil.example%2Fx/"),
        ("https://api.example/{{literal}}", {}, "https://api.example/{literal}"),
    ],
)
def test_build_url_encodes_every_value(
    template: str, values: dict[str, Any], expected: str
) -> None:
    """Interpolated values are percent-encoded, '/' included, so they stay one component."""
    assert build_url(template, values) == expected


@pytest.mark.parametrize(
    ("template", "values", "kind"),
    [
        ("https://api.example/{id}", {}, ErrorKind.MAPPING),
        ("https://api.example/{id}", {"id": None}, ErrorKind.MAPPING),
        ("https://api.example/{id}", {"id": {"a": 1}}, ErrorKind.MAPPING),
        ("{url}", {"url": "http://x/"}, ErrorKind.CLIENT_ERROR),
    ],
)
def test_build_url_refusals(template: str, values: dict[str, Any], kind: ErrorKind) -> None:
    """Missing or structured values, and results that are not http(s) URLs, are refused."""
    with pytest.raises(StepError) as info:
        build_url(template, values)
    assert info.value.kind is kind


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://x/",
        "http:///nohost",
        "http://user:pw@x/",
        "http://x/a b",
        "http://x/\r\n",
        "javascript:alert(1)",
        42,
    ],
)
def test_check_url_refusals(url: Any) -> None:
    """Only absolute http(s) URLs without credentials or whitespace pass."""
    with pytest.raises(StepError) as info:
        check_url(url)
    assert info.value.kind is ErrorKind.CLIENT_ERROR


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-A", "a\r\nInjected: 1"), ("X-A", "secret\nb"), ("X-A", "secret\rb"), ("X-A", "secret\0b")],
)
def test_header_values_with_line_breaks_are_refused(name: str, value: str) -> None:
    """CR, LF and NUL in a header value raise StepError(CONFIG) that does not echo it."""
    with pytest.raises(StepError) as info:
        check_header_value(name, value)
    assert info.value.kind is ErrorKind.CONFIG
    assert value[:4] not in info.value.message


@pytest.mark.parametrize("name", ["X-A\r\nB", "", "X:A", " X-A"])
def test_bad_header_names_are_refused(name: str) -> None:
    """Header names with line breaks, colons or padding are refused."""
    with pytest.raises(StepError) as info:
        check_header_value(name, "v")
    assert info.value.kind is ErrorKind.CONFIG


def test_header_value_ok() -> None:
    """An ordinary header value is returned unchanged."""
    assert check_header_value("Authorization", "Bearer abc.def") == "Bearer abc.def"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ErrorKind.CLIENT_ERROR),
        (401, ErrorKind.CLIENT_ERROR),
        (404, ErrorKind.CLIENT_ERROR),
        (408, ErrorKind.RATE_LIMITED),
        (429, ErrorKind.RATE_LIMITED),
        (500, ErrorKind.SERVER_ERROR),
        (503, ErrorKind.SERVER_ERROR),
        (302, ErrorKind.INVALID_RESPONSE),
    ],
)
def test_status_kinds(status: int, kind: ErrorKind) -> None:
    """Statuses map to kinds: 408/429 rate limited, 4xx client, 5xx server."""
    assert status_kind(status) is kind


def test_http_status_error_message_redacts_query() -> None:
    """The error names method, redacted URL, status and a body excerpt, plus Retry-After."""
    request = httpx.Request("GET", "https://user:pw@api.example/x?token=abc")
    response = httpx.Response(429, text="slow\ndown", headers={"Retry-After": "7"}, request=request)
    error = http_status_error(response)
    assert error.kind is ErrorKind.RATE_LIMITED
    assert error.message == "GET https://api.example/x answered HTTP 429: slow down"
    assert error.details == {"status": 429, "retry_after": "7"}
    assert redact_url("http://[::1]:8080/p?q=1#f") == "http://[::1]:8080/p"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("a\x00b\x1bc\x7f", "abc"),
        ("keep\nlines\tand tabs", "keep\nlines\tand tabs"),
        ("{ignore previous} {x}", "(ignore previous) (x)"),
        ("rtl\u202eevil", "rtlevil"),
        (12, "12"),
        (None, ""),
        ("x" * 40, "x" * 29 + "…"),
    ],
)
def test_sanitise_value(value: Any, expected: str) -> None:
    """Prompt variables lose control characters and braces and are capped in length."""
    assert sanitise_value(value, max_chars=30) == expected


def test_render_template_single_pass() -> None:
    """A value containing a placeholder is never expanded; literal braces are escaped."""
    text = render_template("A={a} B={b} {{lit}}", {"a": "{b}", "b": "2"}, max_chars=100)
    assert text == "A=(b) B=2 {lit}"
    with pytest.raises(KeyError):
        render_template("{missing}", {}, max_chars=10)
