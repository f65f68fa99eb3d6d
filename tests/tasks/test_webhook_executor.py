"""execute-webhook-call against a local receiver that verifies signatures."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from engine.errors import ErrorKind, StepError
from engine.security.signing import verify
from tasks.context import StepContext
from tasks.webhook import WebhookCallConfig, execute_webhook_call

SECRET = "receiver-shared-secret"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)


def _config(**values: Any) -> WebhookCallConfig:
    values.setdefault("secret_env_var", "TEST_WEBHOOK_SECRET")
    return WebhookCallConfig.model_validate(values)


def test_signed_delivery_is_verified_by_receiver(httpserver: HTTPServer, ctx: StepContext) -> None:
    """The receiver checks the HMAC over the raw body; payload is input minus 'url'."""
    received: list[tuple[bool, Any, dict[str, str]]] = []

    def receiver(request: Request) -> Response:
        body = request.get_data()
        headers = dict(request.headers.items())
        received.append((verify(SECRET.encode(), headers, body), json.loads(body), headers))
        return Response(json.dumps({"ok": True}), status=202, content_type="application/json")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(receiver)
    out = execute_webhook_call(
        _config(), {"url": httpserver.url_for("/hook"), "transcript": [{"text": "hé"}]}, ctx
    )
    assert out == {"status": 202, "body": {"ok": True}}
    valid, payload, headers = received[0]
    assert valid
    assert payload == {"transcript": [{"text": "hé"}]}
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Supaflow-Delivery"] == f"{ctx.job_id}:{ctx.step_id}"
    assert abs(int(headers["X-Supaflow-Timestamp"]) - time.time()) < 3600


def test_payload_key_and_url_template(httpserver: HTTPServer, ctx: StepContext) -> None:
    """input.payload is sent as is; url_template is filled (encoded) from the input."""
    httpserver.expect_request("/hooks/a/b", method="POST").respond_with_data("thanks")
    out = execute_webhook_call(
        _config(url_template=httpserver.url_for("/hooks/{name}")),
        {"name": "a/b", "payload": [1, 2, 3]},
        ctx,
    )
    assert out == {"status": 200, "body": "thanks"}
    request = httpserver.log[0][0]
    assert json.loads(request.get_data()) == [1, 2, 3]
    assert request.environ["REQUEST_URI"] == "/hooks/a%2Fb"  # one path segment


def test_tampered_body_fails_verification(httpserver: HTTPServer, ctx: StepContext) -> None:
    """The signature covers the exact bytes: a changed body does not verify."""
    bodies: list[tuple[bytes, dict[str, str]]] = []

    def receiver(request: Request) -> Response:
        bodies.append((request.get_data(), dict(request.headers.items())))
        return Response("ok")

    httpserver.expect_request("/hook").respond_with_handler(receiver)
    execute_webhook_call(_config(), {"url": httpserver.url_for("/hook"), "a": 1}, ctx)
    body, headers = bodies[0]
    assert verify(SECRET.encode(), headers, body)
    assert not verify(SECRET.encode(), headers, body.replace(b"1", b"2"))


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ErrorKind.CLIENT_ERROR),
        (404, ErrorKind.CLIENT_ERROR),
        (408, ErrorKind.RATE_LIMITED),
        (429, ErrorKind.RATE_LIMITED),
        (503, ErrorKind.SERVER_ERROR),
        (500, ErrorKind.SERVER_ERROR),
        (301, ErrorKind.INVALID_RESPONSE),
    ],
)
def test_status_classification(
    httpserver: HTTPServer, ctx: StepContext, status: int, kind: ErrorKind
) -> None:
    """Non-2xx answers raise StepError of the matching kind (redirects are not followed)."""
    httpserver.expect_request("/hook").respond_with_data(
        "upstream said no", status=status, headers={"Location": "/elsewhere"}
    )
    with pytest.raises(StepError) as info:
        execute_webhook_call(_config(), {"url": httpserver.url_for("/hook")}, ctx)
    assert info.value.kind is kind
    assert f"HTTP {status}" in info.value.message
    assert len(httpserver.log) == 1


def test_timeout(
    httpserver: HTTPServer, ctx: StepContext, await_server_log: Callable[[int], None]
) -> None:
    """A receiver slower than request_timeout_seconds gives TIMEOUT."""

    def slow(_request: Request) -> Response:
        time.sleep(0.5)
        return Response("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    with pytest.raises(StepError) as info:
        execute_webhook_call(
            _config(request_timeout_seconds=0.1), {"url": httpserver.url_for("/slow")}, ctx
        )
    assert info.value.kind is ErrorKind.TIMEOUT
    await_server_log(1)


def test_connection_refused(ctx: StepContext) -> None:
    """Nothing listening gives CONNECTION."""
    with pytest.raises(StepError) as info:
        execute_webhook_call(_config(), {"url": "http://127.0.0.1:9/hook"}, ctx)
    assert info.value.kind is ErrorKind.CONNECTION


def test_missing_secret_names_variable(
    monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer, ctx: StepContext
) -> None:
    """An unset secret variable is a CONFIG error naming the variable; nothing is sent."""
    monkeypatch.delenv("TEST_WEBHOOK_SECRET")
    with pytest.raises(StepError) as info:
        execute_webhook_call(_config(), {"url": httpserver.url_for("/hook")}, ctx)
    assert info.value.kind is ErrorKind.CONFIG
    assert "TEST_WEBHOOK_SECRET" in info.value.message
    assert httpserver.log == []


def test_bad_or_forbidden_url(ctx: StepContext) -> None:
    """A URL that is not http(s) is a CLIENT_ERROR; a private one is FORBIDDEN_ADDRESS."""
    with pytest.raises(StepError) as info:
        execute_webhook_call(_config(), {"url": "gopher://x/"}, ctx)
    assert info.value.kind is ErrorKind.CLIENT_ERROR
    with pytest.raises(StepError) as info:
        execute_webhook_call(_config(), {"url": "http://192.168.0.1/hook"}, ctx)
    assert info.value.kind is ErrorKind.FORBIDDEN_ADDRESS
