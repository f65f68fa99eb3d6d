"""Fixtures for flow tests: the engine on a fresh database and a real Prefect server, local
HTTP services (see flow_services.py for the handlers and definition helpers).

Fixtures:
  flow_store    the engine's JobStore on the test database (Prefect server running)
  user_id       a confirmed auth user owning the test's jobs
  http_server   a THREADED HTTP server on 127.0.0.1 (parallel steps must overlap on it)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from dbfixtures import create_user
from pytest_httpserver import HTTPServer

from engine.db.connection import shared_store
from engine.db.store import JobStore


@pytest.fixture
def flow_store(engine_env: str, prefect_api_url: str) -> JobStore:
    """The engine's store on the test database; flows called in the test report to Prefect."""
    return shared_store()


@pytest.fixture
def user_id(db: psycopg.Connection[Any]) -> str:
    """A user who owns the jobs of the test."""
    return create_user(db)


@pytest.fixture
def http_server() -> Iterator[HTTPServer]:
    """A threaded HTTP server on 127.0.0.1 (the engine's allow-listed address)."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        if server.is_running():
            server.stop()
