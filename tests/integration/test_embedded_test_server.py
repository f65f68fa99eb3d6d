"""The test session's fallback server: the embedded PostgreSQL, started when nothing answers."""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from admin_server import ADMIN_URL_ENV, Source, ensure_admin_url
from dbfixtures import TEST_DB_PREFIX, create_database, drop_database, throwaway_name

from engine.settings import PROJECT_ROOT


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A data folder of its own under .data/ (the session's own server may be embedded too,
    and must not be stopped by this test)."""
    path = PROJECT_ROOT / ".data" / f"test-embedded-{uuid.uuid4().hex[:8]}"
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_with_no_server_answering_tests_create_and_drop_databases_on_the_embedded_one(
    embedded_data_dir: Path,
) -> None:
    """No URL given and a closed local port: the embedded server starts, its URL is
    exported, and a database can be created, used and dropped through it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"postgresql://postgres@127.0.0.1:{sock.getsockname()[1]}/postgres"
    environ: dict[str, str] = {}
    source, admin, server = ensure_admin_url(environ, local_url=closed, data_dir=embedded_data_dir)
    try:
        assert source is Source.EMBEDDED
        assert environ[ADMIN_URL_ENV] == admin
        assert (embedded_data_dir / "postgres" / "PG_VERSION").exists()
        name = throwaway_name(TEST_DB_PREFIX)
        url = create_database(admin, name)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                assert conn.execute("select current_database()").fetchone() == (name,)
        finally:
            drop_database(admin, name)
        with psycopg.connect(admin, autocommit=True) as conn:
            left = conn.execute("select 1 from pg_database where datname = %s", (name,))
            assert left.fetchone() is None
    finally:
        server.cleanup()
