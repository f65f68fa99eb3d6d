"""Recording restarts of the engine's processes (table service_restarts, operator-only)."""

from __future__ import annotations

import psycopg
from psycopg_pool import ConnectionPool

from engine.db.pool import query
from engine.db.rows import Row


def record_restart(
    pool: ConnectionPool[psycopg.Connection[Row]], service: str, host: str, exit_code: int | None
) -> None:
    """One restart of `service` on `host`, which had exited with `exit_code`."""
    with pool.connection() as conn:
        conn.execute(
            query("service_restart_insert"),
            {"service": service, "host": host, "exit_code": exit_code},
        )
