"""Shared fixtures: every test that needs a database gets a fresh, fully migrated one.

Once per session a template database is built (local bootstrap + all migrations); each test
then gets `CREATE DATABASE t_... TEMPLATE <template>` (a file copy, fast) and it is dropped
afterwards. The server is TEST_ADMIN_DATABASE_URL, else the local one at 127.0.0.1:5432 if it
answers, else the embedded server started for the session (see admin_server.py).

Fixtures:
  postgres_server      session, autouse: chooses (and maybe starts) the server, exports its URL
  admin_database_url   session: the maintenance URL
  database_template    session: name of the migrated template database
  database_url         function: URL of a fresh migrated database
  db                   function: autocommit psycopg connection to `database_url`
  empty_database_url   function: URL of a fresh, completely empty database (template0)
  flow_store           function: the engine's JobStore on the test database (Prefect running)
  user_id              function: a confirmed auth user owning the test's jobs
  http_server          function: a THREADED HTTP server on 127.0.0.1
"""

from __future__ import annotations

import os
from pathlib import Path

# Before anything imports Prefect: keep its home and telemetry inside the project.
_DATA = Path(__file__).resolve().parent.parent / ".data"
os.environ.setdefault("PREFECT_HOME", str(_DATA / "test-prefect-home"))
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A test that reaches a stopped Prefect should learn it at once, not after client retries.
os.environ.setdefault("PREFECT_CLIENT_MAX_RETRIES", "0")

from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import psycopg  # noqa: E402
import pytest  # noqa: E402
from admin_server import ensure_admin_url  # noqa: E402
from dbfixtures import (  # noqa: E402
    TEMPLATE_PREFIX,
    TEST_DB_PREFIX,
    admin_url,
    create_database,
    create_user,
    drop_database,
    drop_stale_databases,
    throwaway_name,
)
from hypothesis import settings as hypothesis_settings  # noqa: E402
from pytest_httpserver import HTTPServer  # noqa: E402

from cli.services import sigint_inheritable  # noqa: E402
from engine.db.connection import shared_store  # noqa: E402
from engine.db.migrate import apply_migrations  # noqa: E402
from engine.db.store import JobStore  # noqa: E402

# Property tests draw the same examples on every run of the suite, so a run's verdict never
# depends on luck; `--hypothesis-profile=explore` draws new ones when hunting for bugs.
hypothesis_settings.register_profile("suite", derandomize=True)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile("suite")
# A suite started in the background has SIGINT ignored; the workers and servers the tests
# start and stop with SIGINT would inherit that and each stop would wait out its grace.
sigint_inheritable()


@pytest.fixture(scope="session", autouse=True)
def postgres_server() -> Iterator[str]:
    """The server of the session, exported as TEST_ADMIN_DATABASE_URL before any test runs.

    Chosen in this process, so every subprocess a test starts (bench and fault scripts)
    inherits the URL, and an embedded server started here outlives them all; it stops when
    the session ends (unless another session still uses it).
    """
    _source, url, embedded = ensure_admin_url(os.environ)
    try:
        yield url
    finally:
        if embedded is not None:
            embedded.cleanup()


@pytest.fixture(scope="session")
def admin_database_url(postgres_server: str) -> str:
    """The URL tests use to create and drop databases."""
    return admin_url()


@pytest.fixture(scope="session")
def database_template(admin_database_url: str) -> Iterator[str]:
    """A database with bootstrap and every migration applied, cloned by each test."""
    drop_stale_databases(admin_database_url)
    name = throwaway_name(TEMPLATE_PREFIX)
    url = create_database(admin_database_url, name)
    try:
        apply_migrations(url, bootstrap=True)
        yield name
    finally:
        drop_database(admin_database_url, name)


@pytest.fixture
def database_url(admin_database_url: str, database_template: str) -> Iterator[str]:
    """URL of a fresh database holding the full schema, dropped after the test."""
    name = throwaway_name(TEST_DB_PREFIX)
    url = create_database(admin_database_url, name, template=database_template)
    try:
        yield url
    finally:
        drop_database(admin_database_url, name)


@pytest.fixture
def empty_database_url(admin_database_url: str) -> Iterator[str]:
    """URL of a fresh empty database (no bootstrap, no migrations), dropped after the test."""
    name = throwaway_name(TEST_DB_PREFIX)
    url = create_database(admin_database_url, name)
    try:
        yield url
    finally:
        drop_database(admin_database_url, name)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the test's fresh database, as the owner (the service)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def prefect_api_url() -> Iterator[str]:
    """A real Prefect server for the session (Prefect's test harness: SQLite, a subprocess).

    Flows called in tests run in the test process and report to it; worker subprocesses are
    pointed at it through PREFECT_API_URL.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        url = PREFECT_API_URL.value()
        assert url
        previous = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = url
        try:
            yield url
        finally:
            if previous is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = previous


@pytest.fixture
def prefect_client_retries() -> Iterator[None]:
    """Let Prefect's client retry (the session turns retries off, so that a test reaching a
    stopped Prefect learns it at once): the session's SQLite server answers 503 while it is
    busy writing, which on a loaded machine is often. Used by every flow and worker test."""
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 5}):
        yield


@pytest.fixture
def engine_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the engine's settings at the test's database and folders; reset afterwards.

    Outbound HTTP may reach 127.0.0.1 only because this allow-list says so.
    """
    from engine.db.connection import close_shared_stores
    from engine.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HTTP_ALLOWLIST", "127.0.0.1")
    monkeypatch.setenv("STORAGE_BACKEND", "local")
    get_settings.cache_clear()
    try:
        yield database_url
    finally:
        close_shared_stores()
        get_settings.cache_clear()


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """Local fake services listen on 127.0.0.1, the address tests allow-list explicitly."""
    return ("127.0.0.1", 0)


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
