"""Database helpers for tests: throwaway databases, PostgREST-style role switching, seed rows.

`as_user` does exactly what PostgREST does for a request: in one transaction it sets `role` and
`request.jwt.claims` locally, so RLS sees the caller as Supabase would. The insert helpers
write as the service (the connection's own role, which bypasses RLS as the table owner).

Importable from tests as `import dbfixtures` (pytest puts tests/ on sys.path for its
conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TEMPLATE_PREFIX = "supaflow_tmpl_"
TEST_DB_PREFIX = "t_"
STALE_AFTER_SECONDS = 3600

# Throwaway names carry the creating pid and the creation time, so a later session can tell
# a crashed session's leftovers (old, pid gone) from databases in use.
_THROWAWAY = re.compile(r"^(?:supaflow_tmpl_|t_)(?P<pid>[0-9]+)_(?P<epoch>[0-9]+)_[0-9a-f]+$")


def admin_url() -> str:
    """The maintenance URL tests create databases through (env TEST_ADMIN_DATABASE_URL)."""
    return os.environ.get("TEST_ADMIN_DATABASE_URL") or DEFAULT_ADMIN_URL


def url_for_database(url: str, database: str) -> str:
    """`url` with its database replaced by `database`."""
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def throwaway_name(prefix: str) -> str:
    """A fresh database name `<prefix><pid>_<epoch>_<random>` (well under 63 bytes)."""
    return f"{prefix}{os.getpid()}_{int(time.time())}_{secrets.token_hex(4)}"


def is_stale_throwaway(name: str, now: float, *, pid_alive: bool) -> bool:
    """Whether `name` is a throwaway database left by a crashed session.

    Only names in our exact format count; they must be older than an hour and their creating
    process must be gone.
    """
    match = _THROWAWAY.match(name)
    if match is None:
        return False
    return (now - int(match["epoch"])) > STALE_AFTER_SECONDS and not pid_alive


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def create_database(admin: str, name: str, *, template: str | None = None) -> str:
    """CREATE DATABASE `name` (from `template`, else template0); returns its URL."""
    query = sql.SQL("create database {} template {}").format(
        sql.Identifier(name), sql.Identifier(template or "template0")
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(query)
    return url_for_database(admin, name)


def drop_database(admin: str, name: str) -> None:
    """DROP DATABASE `name` if it exists, disconnecting whoever still uses it."""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def drop_stale_databases(admin: str) -> list[str]:
    """Drop throwaway databases of crashed sessions (best effort); returns the names dropped."""
    dropped: list[str] = []
    now = time.time()
    with psycopg.connect(admin, autocommit=True) as conn:
        names = [
            str(row[0])
            for row in conn.execute(
                "select datname from pg_database where datname like 'supaflow\\_tmpl\\_%' "
                "or datname like 't\\_%'"
            ).fetchall()
        ]
        for name in names:
            match = _THROWAWAY.match(name)
            if match is None or not is_stale_throwaway(
                name, now, pid_alive=_pid_alive(int(match["pid"]))
            ):
                continue
            try:
                conn.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                )
                dropped.append(name)
            except psycopg.Error:
                continue  # another session is dropping it, or it is busy: try next time
    return dropped


def claims_for(user_id: str | None, role: str = "authenticated") -> dict[str, Any]:
    """The JWT claims PostgREST would put in request.jwt.claims for this caller.

    Signed-in users carry sub, role and aud; the anon key carries only its role.
    """
    if role == "anon" or user_id is None:
        return {"role": role}
    return {"sub": user_id, "role": role, "aud": "authenticated"}


def set_request_claims(
    conn: psycopg.Connection[Any], user_id: str | None, role: str = "authenticated"
) -> None:
    """Inside the current transaction, become `role` with the caller's claims (as PostgREST).

    Both settings are transaction-local, so they end with the transaction.
    """
    conn.execute(
        "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
        (role, json.dumps(claims_for(user_id, role))),
    )


@contextmanager
def as_user(
    conn: psycopg.Connection[Any], user_id: str | None, role: str = "authenticated"
) -> Iterator[psycopg.Connection[Any]]:
    """One transaction in which `conn` acts as the API caller (`user_id` None: no sub).

    Use role="anon" for a request with the anon key. The connection must be idle (autocommit
    and outside any transaction): a role set inside an outer transaction would outlive the
    block. An exception inside the block rolls the transaction back and propagates.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise ValueError("as_user needs an idle connection (autocommit, no open transaction)")
    with conn.transaction():
        set_request_claims(conn, user_id, role)
        yield conn


def _scalar(conn: psycopg.Connection[Any], query: sql.Composed | str, params: Any) -> Any:
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(query, params)
        row = cur.fetchone()
    assert row is not None
    return row[0]


def create_user(conn: psycopg.Connection[Any], email: str | None = None) -> str:
    """Insert a confirmed Supabase Auth user (as GoTrue would); returns its id."""
    user_id = str(uuid.uuid4())
    email = email or f"user-{user_id[:8]}@example.com"
    return str(
        _scalar(
            conn,
            "insert into auth.users (instance_id, id, aud, role, email, email_confirmed_at, "
            "raw_app_meta_data, raw_user_meta_data, created_at, updated_at) "
            "values ('00000000-0000-0000-0000-000000000000', %s, 'authenticated', "
            "'authenticated', %s, now(), %s, '{}'::jsonb, now(), now()) returning id",
            (user_id, email, json.dumps({"provider": "email", "providers": ["email"]})),
        )
    )


def _insert(conn: psycopg.Connection[Any], table: str, values: dict[str, Any]) -> Any:
    """INSERT one row of `values` (JSON-able dict/list values as jsonb); returns its id."""
    columns = list(values)
    params = [Jsonb(v) if isinstance(v, dict | list) else v for v in values.values()]
    query = sql.SQL("insert into public.{} ({}) values ({}) returning id").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    return _scalar(conn, query, params)


def insert_workflow(
    conn: psycopg.Connection[Any],
    workflow_id: str | None = None,
    definition: dict[str, Any] | None = None,
    **columns: Any,
) -> str:
    """Insert a workflows row as the service; returns its id."""
    values = {
        "id": workflow_id or f"wf_{secrets.token_hex(4)}",
        "definition": definition if definition is not None else {"steps": []},
        **columns,
    }
    return str(_insert(conn, "workflows", values))


def insert_transformer(
    conn: psycopg.Connection[Any],
    transformer_id: str | None = None,
    type: str = "http_download",
    config: dict[str, Any] | None = None,
    target_function: str = "execute-http-download",
    **columns: Any,
) -> str:
    """Insert a transformers row as the service; returns its id."""
    values = {
        "id": transformer_id or f"tr-{secrets.token_hex(4)}",
        "type": type,
        "config": config if config is not None else {},
        "target_function": target_function,
        **columns,
    }
    return str(_insert(conn, "transformers", values))


def insert_job(
    conn: psycopg.Connection[Any],
    user_id: str | None,
    workflow_id: str,
    **columns: Any,
) -> str:
    """Insert a jobs row as the service (any other column by keyword); returns its id."""
    values = {"user_id": user_id, "workflow_id": workflow_id, **columns}
    return str(_insert(conn, "jobs", values))


def insert_job_event(
    conn: psycopg.Connection[Any],
    job_id: str,
    kind: str = "status",
    **columns: Any,
) -> int:
    """Append a job_events row as the service (user_id is copied from the job); returns id."""
    values = {"job_id": job_id, "kind": kind, **columns}
    return int(_insert(conn, "job_events", values))
