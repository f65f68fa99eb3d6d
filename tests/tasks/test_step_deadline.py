"""The step deadline (tasks/deadline.py) bounds what an executor waits for: every request of
the guarded HTTP client, a response body trickling in, and sleeps. Outside a step nothing is
cut."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from engine.errors import ErrorKind, StepError
from engine.settings import Settings
from tasks.deadline import Deadline, bounded_sleep, step_deadline
from tasks.http_client import make_client


def slow_answer(seconds: float) -> Callable[[Request], Response]:
    """A handler answering after `seconds`."""

    def handler(_request: Request) -> Response:
        time.sleep(seconds)
        return Response("late")

    return handler


def test_a_request_is_cut_at_the_deadline(
    httpserver: HTTPServer, settings: Settings, await_server_log: Callable[[int], None]
) -> None:
    """A read timeout of 10 s, an upstream answering after 1.5 s, 0.3 s left in the step:
    the request gives up at the deadline."""
    httpserver.expect_request("/slow").respond_with_handler(slow_answer(1.5))
    started = time.monotonic()
    with (
        make_client(settings, timeout=10) as client,
        step_deadline(0.3),
        pytest.raises(httpx.ReadTimeout),
    ):
        client.get(httpserver.url_for("/slow"))
    assert time.monotonic() - started < 1.2
    await_server_log(1)


def test_nothing_is_sent_once_the_deadline_passed(
    httpserver: HTTPServer, settings: Settings
) -> None:
    """A request made after the deadline fails at once without reaching the server."""
    httpserver.expect_request("/never").respond_with_data("no")
    with make_client(settings, timeout=10) as client, step_deadline(0.01):
        time.sleep(0.05)
        with pytest.raises(httpx.ConnectTimeout):
            client.get(httpserver.url_for("/never"))
    assert httpserver.log == []


def test_a_trickling_body_stops_at_the_deadline(
    httpserver: HTTPServer, settings: Settings, await_server_log: Callable[[int], None]
) -> None:
    """A body sent a chunk every 0.1 s for 3 s: each read is quick, but reading stops at the
    first chunk after the step's 0.5 s deadline."""

    def trickle(_request: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            for _ in range(30):
                yield b"x" * 10
                time.sleep(0.1)

        return Response(chunks(), content_type="application/octet-stream")

    httpserver.expect_request("/trickle").respond_with_handler(trickle)
    started = time.monotonic()
    received = 0
    with (
        make_client(settings, timeout=10) as client,
        step_deadline(0.5),
        client.stream("GET", httpserver.url_for("/trickle")) as response,
        pytest.raises(httpx.ReadTimeout),
    ):
        for chunk in response.iter_bytes():
            received += len(chunk)
    assert 0 < received < 300
    assert time.monotonic() - started < 1.5
    await_server_log(1)


def test_outside_a_step_requests_keep_their_own_timeout(
    httpserver: HTTPServer, settings: Settings
) -> None:
    """With no step deadline the client's timeout alone applies."""
    httpserver.expect_request("/slowish").respond_with_handler(slow_answer(0.3))
    with make_client(settings, timeout=5) as client:
        assert client.get(httpserver.url_for("/slowish")).text == "late"


def test_bounded_sleep_ends_at_the_deadline_with_a_timeout() -> None:
    """Inside a step a sleep longer than the time left waits until the deadline and fails
    as TIMEOUT; a shorter one (or one outside a step) just sleeps."""
    bounded_sleep(0.01)
    started = time.monotonic()
    with step_deadline(0.2), pytest.raises(StepError) as info:
        bounded_sleep(0.05)
        bounded_sleep(5)
    assert info.value.kind is ErrorKind.TIMEOUT
    assert info.value.message == "the step timed out after 0.2 second(s)"
    assert 0.18 <= time.monotonic() - started < 1.0


def test_cut_timeouts_never_exceed_the_time_left() -> None:
    """Every httpx timeout, set or not, is cut to the time left; shorter ones stay."""
    deadline = Deadline(time.monotonic() + 2, 2)
    cut = deadline.cut({"connect": 0.5, "read": 30, "write": None})
    assert cut["connect"] == 0.5
    assert all(0 < cut[key] <= 2 for key in ("read", "write", "pool"))
    assert Deadline(time.monotonic() - 1, 1).cut({"read": 5})["read"] > 0
