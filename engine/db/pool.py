"""The job store's connection pool and the plumbing every part of the store shares.

Two paths, never mixed:
- the **service path** (engine and API writes) runs as the connection's own role, which owns
  the tables or has BYPASSRLS, exactly like Supabase's service role;
- the **user path** (`as_user`) runs each query in a transaction that switches to role
  `authenticated` with `request.jwt.claims` set to the verified token's claims, as PostgREST
  does, so Row Level Security is the read barrier. User-facing reads exist only on this path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from engine.db.queries import load_sql
from engine.db.rows import Row


def query(name: str) -> LiteralString:
    """The text of a named query, typed for psycopg's execute."""
    # The text comes from our own package files, never from input.
    return load_sql(name)  # type: ignore[return-value,unused-ignore]


class PooledStore:
    """A psycopg connection pool (autocommit, dict rows) and the helpers built on it."""

    def __init__(self, database_url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            database_url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"row_factory": dict_row, "autocommit": True},
            connection_class=psycopg.Connection[Row],
            # A PostgreSQL restart (or a pooler dropping idle sessions) leaves every pooled
            # connection broken; without a check each one fails its next query once: a 500
            # from the API, a step that fails after its work was done. Checked at checkout,
            # a dead connection is replaced instead (one empty round trip per checkout).
            check=ConnectionPool.check_connection,
            open=True,
            name="supaflow",
        )

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.close()

    def _fetchall(self, name: str, params: Mapping[str, Any]) -> list[Row]:
        with self.pool.connection() as conn:
            return conn.execute(query(name), params).fetchall()

    def _fetchone(self, name: str, params: Mapping[str, Any]) -> Row | None:
        with self.pool.connection() as conn:
            return conn.execute(query(name), params).fetchone()

    @contextmanager
    def _use(self, conn: psycopg.Connection[Row] | None) -> Iterator[psycopg.Connection[Row]]:
        if conn is not None:
            yield conn
        else:
            with self.pool.connection() as pooled:
                yield pooled

    @contextmanager
    def as_user(self, claims: Mapping[str, Any]) -> Iterator[psycopg.Connection[Row]]:
        """A connection inside a transaction running as `authenticated` with these claims.

        `set_config(..., true)` is transaction-local, so nothing leaks to the next user of
        the pooled connection, even on error (the transaction rolls back).
        """
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(query("user_session_begin"), {"claims": json.dumps(dict(claims))})
            yield conn
