"""After a 500 the connection stays usable: the real app served by a real uvicorn, and an httpx
client that keeps its connection alive (api/unhandled.py says why this needed a middleware)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI, Request

from api.app import create_app
from engine.db.store import JobStore
from engine.dispatch import RunStarter
from engine.settings import Settings

SECRET = "password=hunter2"


def failing_app(settings: Settings, store: JobStore, starter: RunStarter) -> FastAPI:
    """The real app plus test routes: one that fails, one that fails after its answer (in a
    background task), and one that says which client port the connection uses."""
    app = create_app(settings, store=store, starter=starter)

    @app.get("/test/boom")
    def boom() -> None:
        raise RuntimeError(f"driver exploded: {SECRET}")

    @app.get("/test/late-boom")
    def late_boom(background: BackgroundTasks) -> dict[str, bool]:
        def fail() -> None:
            raise RuntimeError("background task exploded")

        background.add_task(fail)
        return {"answered": True}

    @app.get("/test/port")
    def port(request: Request) -> dict[str, int]:
        assert request.client is not None
        return {"port": request.client.port}

    return app


@pytest.fixture
def base_url(
    serve_app: Callable[[FastAPI], str],
    make_settings: Callable[..., Settings],
    job_store: JobStore,
    closed_starter: RunStarter,
) -> str:
    """The failing app behind a real uvicorn."""
    return serve_app(failing_app(make_settings(), job_store, closed_starter))


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    """One keep-alive connection at most: every request reuses it while the server keeps it."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=base_url, limits=limits) as client:
        yield client


@pytest.mark.parametrize("path", ["/test/boom", "/test/late-boom"])
def test_connection_stays_usable_after_a_500(
    http: httpx.Client, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 500 (or a failure after the answer) is a proper answer: the uniform JSON body for the
    500, nothing secret in it, the traceback in the log, and the next request travels on the
    same connection (same client port)."""
    before = http.get("/test/port").json()["port"]
    with caplog.at_level(logging.ERROR):
        response = http.get(path)
    if path == "/test/boom":
        assert response.status_code == 500
        assert response.json() == {
            "error": {"code": "internal_error", "message": "internal server error", "details": None}
        }
        assert SECRET not in response.text
    else:
        assert response.json() == {"answered": True}
    after = http.get("/test/port").json()["port"]
    assert after == before, "the server closed the connection after the failure"
    assert "exploded" in caplog.text


def test_next_request_on_the_same_socket_gets_an_answer(base_url: str) -> None:
    """What a client that sends at once sees (no time to notice a close): two requests written
    back to back on one socket after a 500 both get their answer, not a reset."""
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        request = b"GET %s HTTP/1.1\r\nHost: test\r\n\r\n"
        sock.sendall(request % b"/test/boom" + request % b"/health")
        received = b""
        while received.count(b"HTTP/1.1 ") < 2 or not received.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after: {received!r}"
            received += chunk
    assert received.startswith(b"HTTP/1.1 500 ")
    assert b"HTTP/1.1 200 " in received
