"""Fixtures for executor tests: settings that allow-list 127.0.0.1, step contexts, servers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from engine.settings import Settings
from tasks.context import StepContext


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings isolated from the developer's `.env`, storing files under `tmp_path`."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "local_storage_dir": tmp_path / "storage",
        "http_allowlist": "127.0.0.1",
        "storage_backend": "local",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings that allow-list 127.0.0.1 (where the test servers listen)."""
    return make_settings(tmp_path)


@pytest.fixture
def make_ctx(settings: Settings) -> Callable[..., StepContext]:
    """Build a StepContext; keyword arguments override the defaults."""

    def build(**overrides: Any) -> StepContext:
        values: dict[str, Any] = {
            "job_id": "00000000-0000-0000-0000-000000000001",
            "workflow_id": "wf",
            "step_id": "step",
            "transformer_id": "tr",
            "attempt": 1,
            "user_id": None,
            "settings": settings,
        }
        values.update(overrides)
        return StepContext(**values)

    return build


@pytest.fixture
def ctx(make_ctx: Callable[..., StepContext]) -> StepContext:
    """A default StepContext."""
    return make_ctx()


def _serve(host: str) -> Iterator[HTTPServer]:
    server = HTTPServer(host=host, port=0)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        if server.is_running():
            server.stop()


@pytest.fixture(scope="session")
def _server_127_0_0_1() -> Iterator[HTTPServer]:
    yield from _serve("127.0.0.1")


@pytest.fixture(scope="session")
def _server_127_0_0_2() -> Iterator[HTTPServer]:
    yield from _serve("127.0.0.2")


@pytest.fixture
def httpserver(_server_127_0_0_1: HTTPServer) -> Iterator[HTTPServer]:
    """An HTTP server on 127.0.0.1, cleared after each test (the plugin's default host is
    "localhost", whose addresses vary between machines; the tests allow-list 127.0.0.1)."""
    yield _server_127_0_0_1
    _server_127_0_0_1.clear()


@pytest.fixture
def await_server_log(httpserver: HTTPServer) -> Callable[[int], None]:
    """`await_server_log(n)` waits until the 127.0.0.1 server has handled n requests."""
    return lambda count: wait_for_log(httpserver, count)


def wait_for_log(server: HTTPServer, count: int = 1, limit_seconds: float = 5.0) -> None:
    """Wait until the server has logged `count` handled requests, so a slow handler left over
    from a timeout test cannot finish during (and pollute the log of) the next test."""
    deadline = time.monotonic() + limit_seconds
    while len(server.log) < count and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture
def second_server(_server_127_0_0_2: HTTPServer) -> Iterator[HTTPServer]:
    """An HTTP server on 127.0.0.2 (another loopback address), for redirect tests."""
    yield _server_127_0_0_2
    _server_127_0_0_2.clear()
