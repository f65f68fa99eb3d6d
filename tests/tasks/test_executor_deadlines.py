"""Every executor that waits on the network or a clock keeps to the step's deadline
(tasks/deadline.py), whatever its own request timeout: an upstream holding its answer for
seconds, a request timeout of 60 s, 0.4 s left in the step, and the attempt fails as
`timeout` at the deadline. The Gemini executor goes through google-genai, whose requests use
the guarded client handed to it, so they are cut the same way."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.gemini_server import FakeGemini, Reply
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from engine.errors import ErrorKind, StepError
from engine.settings import Settings
from tasks.context import StepContext
from tasks.deadline import step_deadline
from tasks.registry import CATALOG, get_executor

#: The step's time; every executor's own timeout below is far longer.
STEP_SECONDS = 0.4
#: An attempt must end this soon after it started (the deadline plus scheduling slack).
ENDS_WITHIN = 2.0
REQUEST_TIMEOUT = 60


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set after the test: the held requests answer then, freeing the test server."""
    event = threading.Event()
    yield event
    event.set()


def held(release: threading.Event) -> Callable[[Request], Response]:
    """A handler answering only when released (at most 5 s)."""

    def handler(_request: Request) -> Response:
        release.wait(5)
        return Response('{"late": true}', content_type="application/json")

    return handler


def _http_request(server: HTTPServer, ctx: StepContext, **_: Any) -> Callable[[], Any]:
    config = CATALOG.parse_config(
        "http_request",
        {"url_template": server.url_for("/held"), "request_timeout_seconds": REQUEST_TIMEOUT},
    )
    return lambda: get_executor("execute-http-request")(config, {}, ctx)


def _webhook(
    server: HTTPServer, ctx: StepContext, monkeypatch: pytest.MonkeyPatch, **_: Any
) -> Callable[[], Any]:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", "secret")
    config = CATALOG.parse_config(
        "webhook_call",
        {"secret_env_var": "TEST_WEBHOOK_SECRET", "request_timeout_seconds": REQUEST_TIMEOUT},
    )
    step_input = {"url": server.url_for("/held"), "payload": {"a": 1}}
    return lambda: get_executor("execute-webhook-call")(config, step_input, ctx)


def _download(server: HTTPServer, ctx: StepContext, **_: Any) -> Callable[[], Any]:
    config = CATALOG.parse_config("http_download", {"request_timeout_seconds": REQUEST_TIMEOUT})
    step_input = {"url": server.url_for("/held")}
    return lambda: get_executor("execute-http-download")(config, step_input, ctx)


def _edge_function(
    server: HTTPServer,
    ctx: StepContext,
    tmp_path: Path,
    handler: Callable[[Request], Response],
    **_: Any,
) -> Callable[[], Any]:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        http_allowlist="",
        supabase_url=f"http://127.0.0.1:{server.port}",
        supabase_service_role_key="key",
    )
    server.expect_request("/functions/v1/f").respond_with_handler(handler)
    config = CATALOG.parse_config(
        "edge_function", {"function_name": "f", "request_timeout_seconds": REQUEST_TIMEOUT}
    )
    edge_ctx = dataclasses.replace(ctx, settings=settings)
    return lambda: get_executor("invoke-edge-function")(config, {}, edge_ctx)


def _gemini_config(fake: FakeGemini) -> Any:
    return CATALOG.parse_config(
        "gemini_prompt",
        {
            "prompt_template": "Say hello.",
            "base_url": fake.base_url,
            "response_format": "text",
            "request_timeout_seconds": REQUEST_TIMEOUT,
        },
    )


def _gemini(
    server: HTTPServer, ctx: StepContext, monkeypatch: pytest.MonkeyPatch, **_: Any
) -> Callable[[], Any]:
    fake = FakeGemini(server)
    monkeypatch.setenv("GEMINI_API_KEY", fake.api_key)
    slow = Reply.text("hello")
    slow.delay_seconds = 2  # the fake holds the generateContent answer
    fake.queue_reply(slow)
    config = _gemini_config(fake)
    return lambda: get_executor("execute-gemini-prompt")(config, {}, ctx)


def _gemini_audio_url(
    server: HTTPServer, ctx: StepContext, monkeypatch: pytest.MonkeyPatch, **_: Any
) -> Callable[[], Any]:
    fake = FakeGemini(server)
    monkeypatch.setenv("GEMINI_API_KEY", fake.api_key)
    config = _gemini_config(fake)
    step_input = {"audio": server.url_for("/held")}
    return lambda: get_executor("execute-gemini-prompt")(config, step_input, ctx)


def _delay(server: HTTPServer, ctx: StepContext, **_: Any) -> Callable[[], Any]:
    config = CATALOG.parse_config("delay", {"seconds": 30})
    return lambda: get_executor("execute-delay")(config, {}, ctx)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(_http_request, id="http_request"),
        pytest.param(_webhook, id="webhook"),
        pytest.param(_download, id="http_download"),
        pytest.param(_edge_function, id="edge_function"),
        pytest.param(_gemini, id="gemini-generate"),
        pytest.param(_gemini_audio_url, id="gemini-audio-url"),
        pytest.param(_delay, id="delay"),
    ],
)
def test_the_step_deadline_bounds_the_executor(
    build: Callable[..., Callable[[], Any]],
    httpserver: HTTPServer,
    ctx: StepContext,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    release: threading.Event,
) -> None:
    """The attempt fails as `timeout` at the step's deadline, long before the executor's
    own request timeout or the upstream's answer."""
    handler = held(release)
    httpserver.expect_request("/held").respond_with_handler(handler)
    run = build(
        server=httpserver, ctx=ctx, monkeypatch=monkeypatch, tmp_path=tmp_path, handler=handler
    )
    started = time.monotonic()
    with step_deadline(STEP_SECONDS), pytest.raises(StepError) as info:
        run()
    elapsed = time.monotonic() - started
    assert info.value.kind is ErrorKind.TIMEOUT, info.value
    assert elapsed < ENDS_WITHIN, f"the attempt ran {elapsed:.2f} s past a {STEP_SECONDS} s step"
