"""service_restarts is the operators' record: the engine writes it, and neither a signed-in
user nor the anon key can read or write it (RLS on, no policy, privileges revoked)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from dbfixtures import as_user, create_user

from engine.db.restarts import record_restart
from engine.db.store import JobStore

PERMISSION_DENIED = "42501"


def test_the_engine_records_a_restart(flow_store: JobStore, db: psycopg.Connection[Any]) -> None:
    """A restart is one row: the service, the host and how the process had exited."""
    record_restart(flow_store.pool, "api", "host-b", -9)
    rows = db.execute("select service, host, exit_code from public.service_restarts").fetchall()
    assert rows == [("api", "host-b", -9)]


@pytest.mark.parametrize("role", ["authenticated", "anon"])
@pytest.mark.parametrize(
    "statement",
    [
        "select * from public.service_restarts",
        "insert into public.service_restarts (service, host) values ('api', 'x')",
        "delete from public.service_restarts",
    ],
)
def test_api_roles_may_not_touch_restarts(
    flow_store: JobStore, db: psycopg.Connection[Any], role: str, statement: str
) -> None:
    """Every statement of an API role on the table is refused with 'permission denied'."""
    record_restart(flow_store.pool, "api", "host-b", 1)
    user_id = create_user(db) if role == "authenticated" else None
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege) as refused,
        as_user(db, user_id, role) as conn,
    ):
        conn.execute(statement)
    assert refused.value.sqlstate == PERMISSION_DENIED
    assert db.execute("select count(*) from public.service_restarts").fetchone() == (1,)
