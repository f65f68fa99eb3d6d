"""execute-http-request against a local API server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from engine.errors import ErrorKind, StepError
from tasks.context import StepContext
from tasks.http_request import HttpRequestConfig, execute_http_request


def _config(**values: Any) -> HttpRequestConfig:
    return HttpRequestConfig.model_validate(values)


def test_get_with_encoded_url_and_secret_header(
    httpserver: HTTPServer, ctx: StepContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """URL values are encoded, the secret header comes from its variable, JSON is parsed."""
    monkeypatch.setenv("TEST_API_TOKEN", "tok-123")
    httpserver.expect_request(
        "/v1/items/a b/c",
        query_string="q=x%26y",
        headers={"Authorization": "Bearer tok-123", "Accept": "application/json"},
    ).respond_with_json({"id": 7}, headers={"X-Rate": "5", "Set-Cookie": "s=1"})
    config = _config(
        url_template=f"http://127.0.0.1:{httpserver.port}/v1/items/{{id}}?q={{q}}",
        headers={"Accept": "application/json"},
        secret_headers={"Authorization": {"env_var": "TEST_API_TOKEN", "prefix": "Bearer "}},
    )
    out = execute_http_request(config, {"id": "a b/c", "q": "x&y"}, ctx)
    assert out["status"] == 200
    assert out["body"] == {"id": 7}
    assert out["headers"]["x-rate"] == "5"
    assert "set-cookie" not in out["headers"]
    # The slash in the value was encoded, so the server saw one path segment "a b/c"
    # only after decoding: the raw request line keeps %2F.
    assert "%2F" in httpserver.log[0][0].environ["REQUEST_URI"]


def test_post_json_body_and_expected_statuses(httpserver: HTTPServer, ctx: StepContext) -> None:
    """input.body is sent as JSON; a 404 listed in expected_statuses is a success."""
    httpserver.expect_request("/things", method="POST", json={"name": "n"}).respond_with_data(
        "created", status=201
    )
    httpserver.expect_request("/missing", method="DELETE").respond_with_data("", status=404)
    base = f"http://127.0.0.1:{httpserver.port}"
    out = execute_http_request(
        _config(method="POST", url_template=base + "/things"), {"body": {"name": "n"}}, ctx
    )
    assert out["status"] == 201 and out["body"] == "created"
    out = execute_http_request(
        _config(method="DELETE", url_template=base + "/missing", expected_statuses=[204, 404]),
        {},
        ctx,
    )
    assert out["status"] == 404 and out["body"] is None


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, ErrorKind.CLIENT_ERROR), (429, ErrorKind.RATE_LIMITED), (502, ErrorKind.SERVER_ERROR)],
)
def test_unexpected_status(
    httpserver: HTTPServer, ctx: StepContext, status: int, kind: ErrorKind
) -> None:
    """Statuses outside the expected set are classified."""
    httpserver.expect_request("/x").respond_with_json({"error": "bad"}, status=status)
    with pytest.raises(StepError) as info:
        execute_http_request(_config(url_template=httpserver.url_for("/x")), {}, ctx)
    assert info.value.kind is kind
    assert "bad" in info.value.message


def test_secret_header_dropped_on_cross_origin_redirect(
    httpserver: HTTPServer,
    second_server: HTTPServer,
    make_ctx: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Secret headers follow same-origin redirects but are dropped when the origin changes."""
    from engine.settings import Settings

    monkeypatch.setenv("TEST_API_KEY", "k-1")
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        http_allowlist="127.0.0.1,127.0.0.2",
    )
    ctx = make_ctx(settings=settings)
    httpserver.expect_request("/start").respond_with_data(
        "", status=302, headers={"Location": "/same"}
    )
    httpserver.expect_request("/same").respond_with_data(
        "", status=302, headers={"Location": second_server.url_for("/other")}
    )
    second_server.expect_request("/other").respond_with_data("done")
    config = _config(
        url_template=httpserver.url_for("/start"),
        secret_headers={"X-Api-Key": {"env_var": "TEST_API_KEY"}},
    )
    out = execute_http_request(config, {}, ctx)
    assert out["body"] == "done"
    assert [r.headers.get("X-Api-Key") for r, _ in httpserver.log] == ["k-1", "k-1"]
    assert second_server.log[0][0].headers.get("X-Api-Key") is None


def test_response_size_cap(httpserver: HTTPServer, ctx: StepContext) -> None:
    """A response larger than max_response_bytes is TOO_LARGE."""
    httpserver.expect_request("/big").respond_with_data("x" * 5000)
    with pytest.raises(StepError) as info:
        execute_http_request(
            _config(url_template=httpserver.url_for("/big"), max_response_bytes=1000), {}, ctx
        )
    assert info.value.kind is ErrorKind.TOO_LARGE


def test_get_with_body_and_missing_placeholder(ctx: StepContext) -> None:
    """A GET with input.body is refused; a template value missing from the input is MAPPING."""
    with pytest.raises(StepError) as info:
        execute_http_request(_config(url_template="https://api.example/"), {"body": {}}, ctx)
    assert info.value.kind is ErrorKind.CLIENT_ERROR
    with pytest.raises(StepError) as info:
        execute_http_request(_config(url_template="https://api.example/{id}"), {}, ctx)
    assert info.value.kind is ErrorKind.MAPPING


def test_secret_with_line_break_refused(
    httpserver: HTTPServer, ctx: StepContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret value holding CR/LF is refused (CONFIG) and never sent or echoed."""
    monkeypatch.setenv("TEST_API_TOKEN", "abc\r\nX-Evil: 1")
    config = _config(
        url_template=httpserver.url_for("/x"),
        secret_headers={"Authorization": {"env_var": "TEST_API_TOKEN"}},
    )
    with pytest.raises(StepError) as info:
        execute_http_request(config, {}, ctx)
    assert info.value.kind is ErrorKind.CONFIG
    assert "abc" not in info.value.message
    assert httpserver.log == []
    assert json.dumps(info.value.details) == "null"
