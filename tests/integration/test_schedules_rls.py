"""Row level security of public.schedules, exercised as PostgREST does (role and claims set in
one transaction): a signed-in user reads, creates, changes and deletes only their own
schedules, never the Prefect id or the firing columns; operator schedules (no owner) and
other users' are invisible; anon may do nothing. As in test_rls.py, a meta-test removes one
defence at a time and asserts the checks guarding it then fail."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from dbfixtures import as_user, create_user, insert_workflow
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]

PERMISSION_DENIED = "42501"  # insufficient_privilege: privileges, and RLS refusing a new row


@dataclass(frozen=True)
class World:
    """Two users with a schedule each, and an operator schedule (no owner)."""

    user_a: str
    user_b: str
    workflow: str
    schedule_a: str
    schedule_b: str
    operator: str


def _insert_schedule(
    conn: Conn, user_id: str | None, workflow: str, name: str | None = None
) -> str:
    row = conn.execute(
        "insert into public.schedules (user_id, name, workflow_id, kind, cron, input_data) "
        "values (%s, %s, %s, 'cron', '*/5 * * * *', %s) returning id",
        (user_id, name, workflow, Jsonb({"text": "x"})),
    ).fetchone()
    assert row is not None
    return str(row[0])


def seed(conn: Conn) -> World:
    """Write the world as the service."""
    user_a, user_b = create_user(conn), create_user(conn)
    workflow = insert_workflow(conn, "wf_schedules_rls")
    return World(
        user_a=user_a,
        user_b=user_b,
        workflow=workflow,
        schedule_a=_insert_schedule(conn, user_a, workflow),
        schedule_b=_insert_schedule(conn, user_b, workflow),
        operator=_insert_schedule(conn, None, workflow, name="nightly"),
    )


def _ids(conn: Conn, query: str, *params: Any) -> set[str]:
    return {str(row[0]) for row in conn.execute(query, params).fetchall()}


def _touched(conn: Conn, user_id: str | None, role: str, query: str, *params: Any) -> int:
    """Rows `query` touched as the caller (the transaction is rolled back)."""
    touched = -1
    with as_user(conn, user_id, role) as c:
        touched = c.execute(query, params).rowcount
        raise psycopg.Rollback()
    return touched


def _expect_refused(conn: Conn, user_id: str | None, role: str, query: str, *params: Any) -> None:
    """`query` as the caller must fail with 42501 (a privilege or RLS refusing the row)."""
    try:
        with as_user(conn, user_id, role) as c:
            touched = c.execute(query, params).rowcount
    except psycopg.errors.InsufficientPrivilege as exc:
        assert exc.sqlstate == PERMISSION_DENIED
        return
    raise AssertionError(f"{role} was allowed to run {query!r} ({touched} rows)")


def _owner(conn: Conn, schedule_id: str) -> tuple[Any, ...]:
    row = conn.execute(
        "select user_id::text, active, prefect_schedule_id from public.schedules where id = %s",
        (schedule_id,),
    ).fetchone()
    assert row is not None
    return tuple(row)


# ---------------------------------------------------------------------------------------------
# The rules.


def check_user_reads_only_own(conn: Conn, w: World) -> None:
    """A sees their schedule, neither B's nor the operator's, listed or by id."""
    with as_user(conn, w.user_a) as c:
        assert _ids(c, "select id from public.schedules") == {w.schedule_a}
        assert _ids(c, "select id from public.schedules where id = %s", w.schedule_b) == set()


def check_user_creates_own(conn: Conn, w: World) -> None:
    """A may insert a schedule they own."""
    try:
        with as_user(conn, w.user_a) as c:
            c.execute(
                "insert into public.schedules (user_id, workflow_id, kind, interval_seconds) "
                "values (%s, %s, 'interval', 3600)",
                (w.user_a, w.workflow),
            )
            raise psycopg.Rollback()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise AssertionError(f"A may not create their own schedule: {exc}") from exc


def check_user_cannot_create_for_others(conn: Conn, w: World) -> None:
    """A may not insert a schedule owned by B, nor an operator schedule (no owner)."""
    query = (
        "insert into public.schedules (user_id, workflow_id, kind, cron) "
        "values (%s, %s, 'cron', '* * * * *')"
    )
    _expect_refused(conn, w.user_a, "authenticated", query, w.user_b, w.workflow)
    _expect_refused(conn, w.user_a, "authenticated", query, None, w.workflow)


def check_user_changes_only_own(conn: Conn, w: World) -> None:
    """A may pause their own schedule; an update of B's or the operator's touches nothing."""
    query = "update public.schedules set active = false where id = %s"
    assert _touched(conn, w.user_a, "authenticated", query, w.schedule_a) == 1
    assert _touched(conn, w.user_a, "authenticated", query, w.schedule_b) == 0
    assert _touched(conn, w.user_a, "authenticated", query, w.operator) == 0
    assert _owner(conn, w.schedule_b)[1] is True


def check_user_cannot_give_away_or_touch_service_columns(conn: Conn, w: World) -> None:
    """A may not change the owner of their schedule, nor the Prefect id or firing columns."""
    for column, value in (
        ("user_id", w.user_b),
        ("prefect_schedule_id", "00000000-0000-0000-0000-000000000001"),
        ("last_status", "completed"),
        ("consecutive_failures", 0),
    ):
        _expect_refused(
            conn,
            w.user_a,
            "authenticated",
            f"update public.schedules set {column} = %s where id = %s",
            value,
            w.schedule_a,
        )
    _expect_refused(
        conn,
        w.user_a,
        "authenticated",
        "insert into public.schedules (user_id, workflow_id, kind, cron, prefect_schedule_id) "
        "values (%s, %s, 'cron', '* * * * *', gen_random_uuid())",
        w.user_a,
        w.workflow,
    )


def check_user_deletes_only_own(conn: Conn, w: World) -> None:
    """A may delete their own schedule; deleting B's or the operator's touches nothing."""
    query = "delete from public.schedules where id = %s"
    assert _touched(conn, w.user_a, "authenticated", query, w.schedule_a) == 1
    assert _touched(conn, w.user_a, "authenticated", query, w.schedule_b) == 0
    assert _touched(conn, w.user_a, "authenticated", query, w.operator) == 0


def check_anon_may_do_nothing(conn: Conn, w: World) -> None:
    """anon can neither read, create, change nor delete schedules."""
    for query, params in (
        ("select id from public.schedules", ()),
        (
            "insert into public.schedules (user_id, workflow_id, kind, cron) "
            "values (%s, %s, 'cron', '* * * * *')",
            (w.user_a, w.workflow),
        ),
        ("update public.schedules set active = false where id = %s", (w.schedule_a,)),
        ("delete from public.schedules where id = %s", (w.schedule_a,)),
    ):
        _expect_refused(conn, None, "anon", query, *params)


CHECKS: list[Callable[[Conn, World], None]] = [
    check_user_reads_only_own,
    check_user_creates_own,
    check_user_cannot_create_for_others,
    check_user_changes_only_own,
    check_user_cannot_give_away_or_touch_service_columns,
    check_user_deletes_only_own,
    check_anon_may_do_nothing,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_rule_holds(db: Conn, check: Callable[[Conn, World], None]) -> None:
    """Every rule holds on the shipped schema."""
    check(db, seed(db))


#: One defence removed, and the check that must then fail.
SABOTAGE: list[tuple[str, str, Callable[[Conn, World], None]]] = [
    (
        "no RLS",
        "alter table public.schedules disable row level security",
        check_user_reads_only_own,
    ),
    (
        "select policy open to all",
        "drop policy schedules_select_own on public.schedules; "
        "create policy schedules_select_own on public.schedules for select to authenticated "
        "using (true)",
        check_user_reads_only_own,
    ),
    (
        "insert policy open to all",
        "drop policy schedules_insert_own on public.schedules; "
        "create policy schedules_insert_own on public.schedules for insert to authenticated "
        "with check (true)",
        check_user_cannot_create_for_others,
    ),
    (
        "no insert policy",
        "drop policy schedules_insert_own on public.schedules",
        check_user_creates_own,
    ),
    (
        # The select policy guards a update too (its WHERE reads the rows): open both.
        "update and select policies open to all",
        "drop policy schedules_select_own on public.schedules; "
        "create policy schedules_select_own on public.schedules for select to authenticated "
        "using (true); "
        "drop policy schedules_update_own on public.schedules; "
        "create policy schedules_update_own on public.schedules for update to authenticated "
        "using (true)",
        check_user_changes_only_own,
    ),
    (
        "update of every column granted",
        "grant update on public.schedules to authenticated",
        check_user_cannot_give_away_or_touch_service_columns,
    ),
    (
        # The select policy guards a delete too (its WHERE reads the rows): open both.
        "delete and select policies open to all",
        "drop policy schedules_select_own on public.schedules; "
        "create policy schedules_select_own on public.schedules for select to authenticated "
        "using (true); "
        "drop policy schedules_delete_own on public.schedules; "
        "create policy schedules_delete_own on public.schedules for delete to authenticated "
        "using (true)",
        check_user_deletes_only_own,
    ),
    (
        "anon granted everything, with an open policy",
        "grant all on public.schedules to anon; "
        "create policy schedules_anon on public.schedules to anon using (true)",
        check_anon_may_do_nothing,
    ),
]


@pytest.mark.parametrize(
    ("sabotage", "check"),
    [(sql, check) for _, sql, check in SABOTAGE],
    ids=[name for name, _, _ in SABOTAGE],
)
def test_check_fails_without_its_defence(
    db: Conn, sabotage: str, check: Callable[[Conn, World], None]
) -> None:
    """Removing one defence makes the check guarding it fail: no rule passes vacuously."""
    world = seed(db)
    db.execute(sabotage)
    with pytest.raises(AssertionError):
        check(db, world)


def test_every_check_is_proven_by_a_sabotage() -> None:
    """Each rule has at least one defence whose removal it detects."""
    assert {c for _, _, c in SABOTAGE} == set(CHECKS)
