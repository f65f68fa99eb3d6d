"""Row level security, proven the way PostgREST exercises it.

Each rule is a check function run as the API caller (role and request.jwt.claims set locally in
one transaction, as PostgREST does). The checks pass on the shipped schema; the meta-test then
removes one defence at a time (a policy, RLS on a table, a revoked privilege) in a fresh
database and asserts that the checks guarding it now fail, so no rule is tested vacuously.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from dbfixtures import (
    as_user,
    create_user,
    insert_job,
    insert_job_event,
    insert_transformer,
    insert_workflow,
    set_request_claims,
)

Conn = psycopg.Connection[Any]

PERMISSION_DENIED = "42501"  # insufficient_privilege: "permission denied for table ..."


@dataclass(frozen=True)
class World:
    """Two users with one job and one event each, plus a workflow and a transformer."""

    user_a: str
    user_b: str
    workflow: str
    transformer: str
    job_a: str
    job_b: str
    event_a: int
    event_b: int


def seed(conn: Conn) -> World:
    """Write the world as the service."""
    user_a, user_b = create_user(conn, "a@example.com"), create_user(conn, "b@example.com")
    workflow = insert_workflow(conn, "wf_rls")
    transformer = insert_transformer(conn, "tr-rls", config={"api_key_env_var": "X_KEY"})
    job_a, job_b = insert_job(conn, user_a, workflow), insert_job(conn, user_b, workflow)
    return World(
        user_a=user_a,
        user_b=user_b,
        workflow=workflow,
        transformer=transformer,
        job_a=job_a,
        job_b=job_b,
        event_a=insert_job_event(conn, job_a),
        event_b=insert_job_event(conn, job_b),
    )


# ---------------------------------------------------------------------------------------------
# Assertion helpers: every failure is an AssertionError, so the meta-test can expect it.


def _ids(conn: Conn, query: str, *params: Any) -> set[str]:
    return {str(row[0]) for row in conn.execute(query, params).fetchall()}


def _expect_permission_denied(
    conn: Conn, user_id: str | None, role: str, query: str, *params: Any
) -> None:
    """`query` as the caller must fail with 'permission denied' (not just touch 0 rows)."""
    try:
        with as_user(conn, user_id, role) as c:
            cur = c.execute(query, params)
            touched = cur.rowcount
    except psycopg.errors.InsufficientPrivilege as exc:
        assert exc.sqlstate == PERMISSION_DENIED
        assert "permission denied" in str(exc), f"denied by something else: {exc}"
        return
    raise AssertionError(f"{role} was allowed to run {query!r} ({touched} rows)")


def _service_row_count(conn: Conn, table: str) -> int:
    row = conn.execute(f"select count(*) from public.{table}").fetchone()
    assert row is not None
    return int(row[0])


# ---------------------------------------------------------------------------------------------
# The rules. Each takes the owner connection and the seeded world.


def check_user_reads_own_jobs(conn: Conn, w: World) -> None:
    """A signed-in user sees their own job."""
    with as_user(conn, w.user_a) as c:
        assert w.job_a in _ids(c, "select id from public.jobs")


def check_user_cannot_read_others_jobs(conn: Conn, w: World) -> None:
    """A signed-in user never sees another user's job, listed or by id."""
    with as_user(conn, w.user_a) as c:
        assert w.job_b not in _ids(c, "select id from public.jobs")
        assert _ids(c, "select id from public.jobs where id = %s", w.job_b) == set()


def check_user_reads_own_events(conn: Conn, w: World) -> None:
    """A signed-in user sees the events of their own job."""
    with as_user(conn, w.user_a) as c:
        assert str(w.event_a) in _ids(c, "select id from public.job_events")


def check_user_cannot_read_others_events(conn: Conn, w: World) -> None:
    """A signed-in user never sees events of another user's job."""
    with as_user(conn, w.user_a) as c:
        assert str(w.event_b) not in _ids(c, "select id from public.job_events")
        assert _ids(c, "select id from public.job_events where job_id = %s", w.job_b) == set()


def check_user_cannot_insert_jobs(conn: Conn, w: World) -> None:
    """Jobs are created by the engine only, never directly by a user."""
    _expect_permission_denied(
        conn,
        w.user_a,
        "authenticated",
        "insert into public.jobs (user_id, workflow_id) values (%s, %s)",
        w.user_a,
        w.workflow,
    )


def check_user_cannot_update_jobs(conn: Conn, w: World) -> None:
    """A user can change neither their own job nor anyone else's."""
    for job in (w.job_a, w.job_b):
        _expect_permission_denied(
            conn,
            w.user_a,
            "authenticated",
            "update public.jobs set status = 'completed' where id = %s",
            job,
        )
    assert _ids(conn, "select id from public.jobs where status = 'completed'") == set()


def check_user_cannot_delete_jobs(conn: Conn, w: World) -> None:
    """A user can delete neither their own job nor anyone else's."""
    for job in (w.job_a, w.job_b):
        _expect_permission_denied(
            conn, w.user_a, "authenticated", "delete from public.jobs where id = %s", job
        )
    assert _service_row_count(conn, "jobs") == 2


def check_user_cannot_insert_events(conn: Conn, w: World) -> None:
    """Events are written by the engine only."""
    _expect_permission_denied(
        conn,
        w.user_a,
        "authenticated",
        "insert into public.job_events (job_id, kind) values (%s, 'forged')",
        w.job_a,
    )


def check_user_cannot_update_events(conn: Conn, w: World) -> None:
    """A user cannot rewrite history, their own or anyone else's."""
    for event in (w.event_a, w.event_b):
        _expect_permission_denied(
            conn,
            w.user_a,
            "authenticated",
            "update public.job_events set kind = 'forged' where id = %s",
            event,
        )


def check_user_cannot_delete_events(conn: Conn, w: World) -> None:
    """A user cannot erase history, their own or anyone else's."""
    for event in (w.event_a, w.event_b):
        _expect_permission_denied(
            conn, w.user_a, "authenticated", "delete from public.job_events where id = %s", event
        )


def _rls_blocks_writes_with_grants(conn: Conn, w: World, table: str) -> None:
    """Second layer: even if write privileges came back, RLS lets no write through.

    The grants are made inside a transaction that is rolled back, so nothing persists.
    """
    own, other, column = {
        "jobs": (w.job_a, w.job_b, "status"),
        "job_events": (str(w.event_a), str(w.event_b), "kind"),
        "workflows": (w.workflow, w.workflow, "description"),
    }[table]
    with conn.transaction(force_rollback=True):
        conn.execute(f"grant insert, update, delete on public.{table} to authenticated")
        set_request_claims(conn, w.user_a, "authenticated")
        reached = 0
        for row_id in {own, other}:
            for query in (
                f"update public.{table} set {column} = {column} where id = %s",
                f"delete from public.{table} where id = %s",
            ):
                try:
                    with conn.transaction():
                        reached += conn.execute(query, (row_id,)).rowcount
                except psycopg.errors.IntegrityError:
                    # A trigger or foreign key stopped it: the row was reachable all the same.
                    reached += 1
        assert reached == 0, f"RLS let an authenticated user reach {reached} {table} rows"
        inserts = {
            "jobs": (
                "insert into public.jobs (user_id, workflow_id) values (%s, %s)",
                (w.user_a, w.workflow),
            ),
            "job_events": (
                "insert into public.job_events (job_id, kind) values (%s, 'x')",
                (w.job_a,),
            ),
            "workflows": ("insert into public.workflows (id, definition) values ('x', '{}')", ()),
        }
        query, params = inserts[table]
        try:
            with conn.transaction():
                conn.execute(query, params)
        except psycopg.errors.InsufficientPrivilege as exc:
            assert "row-level security" in str(exc)
        else:
            raise AssertionError(f"RLS let an authenticated user insert into {table}")


def check_rls_blocks_job_writes_even_with_grants(conn: Conn, w: World) -> None:
    """jobs has RLS without write policies, independently of the revoked privileges."""
    _rls_blocks_writes_with_grants(conn, w, "jobs")


def check_rls_blocks_event_writes_even_with_grants(conn: Conn, w: World) -> None:
    """job_events has RLS without write policies, independently of the revoked privileges."""
    _rls_blocks_writes_with_grants(conn, w, "job_events")


def check_rls_blocks_workflow_writes_even_with_grants(conn: Conn, w: World) -> None:
    """workflows has RLS without write policies, independently of the revoked privileges."""
    _rls_blocks_writes_with_grants(conn, w, "workflows")


def check_authenticated_reads_workflows(conn: Conn, w: World) -> None:
    """Signed-in users may read workflow definitions (to know what they can start)."""
    with as_user(conn, w.user_a) as c:
        assert _ids(c, "select id from public.workflows") == {w.workflow}


def check_authenticated_cannot_write_workflows(conn: Conn, w: World) -> None:
    """Only the service defines workflows."""
    for query, params in (
        ("insert into public.workflows (id, definition) values ('x', '{}')", ()),
        ("update public.workflows set description = 'x' where id = %s", (w.workflow,)),
        ("delete from public.workflows where id = %s", (w.workflow,)),
    ):
        _expect_permission_denied(conn, w.user_a, "authenticated", query, *params)


def check_authenticated_cannot_read_transformers(conn: Conn, w: World) -> None:
    """Transformer configs (endpoints, secret env var names) are service-only."""
    _expect_permission_denied(conn, w.user_a, "authenticated", "select id from public.transformers")


def check_anon_cannot_read_transformers(conn: Conn, w: World) -> None:
    """Transformer configs are invisible to the anon key."""
    _expect_permission_denied(conn, None, "anon", "select id from public.transformers")


def check_rls_hides_transformers_even_with_grants(conn: Conn, w: World) -> None:
    """transformers has RLS without any policy: a stray grant still shows no rows."""
    with conn.transaction(force_rollback=True):
        conn.execute("grant select on public.transformers to authenticated")
        set_request_claims(conn, w.user_a, "authenticated")
        rows = _ids(conn, "select id from public.transformers")
    assert rows == set(), "RLS let an authenticated user read transformers"


def check_authenticated_cannot_write_transformers(conn: Conn, w: World) -> None:
    """Only the service configures transformers."""
    for query, params in (
        (
            "insert into public.transformers (id, type, config, target_function) "
            "values ('x', 'x', '{}', 'x')",
            (),
        ),
        ("update public.transformers set description = 'x' where id = %s", (w.transformer,)),
        ("delete from public.transformers where id = %s", (w.transformer,)),
    ):
        _expect_permission_denied(conn, w.user_a, "authenticated", query, *params)


def check_anon_cannot_read_jobs(conn: Conn, w: World) -> None:
    """The anon key reads no jobs."""
    _expect_permission_denied(conn, None, "anon", "select id from public.jobs")


def check_anon_cannot_read_events(conn: Conn, w: World) -> None:
    """The anon key reads no events."""
    _expect_permission_denied(conn, None, "anon", "select id from public.job_events")


def check_anon_cannot_read_workflows(conn: Conn, w: World) -> None:
    """Workflow definitions are for signed-in users only."""
    _expect_permission_denied(conn, None, "anon", "select id from public.workflows")


def check_anon_cannot_write(conn: Conn, w: World) -> None:
    """The anon key writes nothing anywhere."""
    for query, params in (
        ("insert into public.jobs (user_id, workflow_id) values (%s, %s)", (w.user_a, w.workflow)),
        ("update public.jobs set status = 'failed' where id = %s", (w.job_a,)),
        ("delete from public.jobs where id = %s", (w.job_a,)),
        ("insert into public.job_events (job_id, kind) values (%s, 'x')", (w.job_a,)),
        ("insert into public.workflows (id, definition) values ('x', '{}')", ()),
        ("delete from public.workflows where id = %s", (w.workflow,)),
        (
            "insert into public.transformers (id, type, config, target_function) "
            "values ('x', 'x', '{}', 'x')",
            (),
        ),
    ):
        _expect_permission_denied(conn, None, "anon", query, *params)


def check_signed_in_user_without_sub_sees_no_jobs(conn: Conn, w: World) -> None:
    """Role authenticated but no sub claim (a malformed token) matches no job."""
    with as_user(conn, None, "authenticated") as c:
        assert _ids(c, "select id from public.jobs") == set()
        assert _ids(c, "select id from public.job_events") == set()


CHECKS: list[Callable[[Conn, World], None]] = [
    check_user_reads_own_jobs,
    check_user_cannot_read_others_jobs,
    check_user_reads_own_events,
    check_user_cannot_read_others_events,
    check_user_cannot_insert_jobs,
    check_user_cannot_update_jobs,
    check_user_cannot_delete_jobs,
    check_user_cannot_insert_events,
    check_user_cannot_update_events,
    check_user_cannot_delete_events,
    check_rls_blocks_job_writes_even_with_grants,
    check_rls_blocks_event_writes_even_with_grants,
    check_rls_blocks_workflow_writes_even_with_grants,
    check_authenticated_reads_workflows,
    check_authenticated_cannot_write_workflows,
    check_authenticated_cannot_read_transformers,
    check_anon_cannot_read_transformers,
    check_rls_hides_transformers_even_with_grants,
    check_authenticated_cannot_write_transformers,
    check_anon_cannot_read_jobs,
    check_anon_cannot_read_events,
    check_anon_cannot_read_workflows,
    check_anon_cannot_write,
    check_signed_in_user_without_sub_sees_no_jobs,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_rule_holds(db: Conn, check: Callable[[Conn, World], None]) -> None:
    """Each RLS / privilege rule holds on the shipped schema."""
    check(db, seed(db))


# One row per defence: removing it must make the listed check fail.
SABOTAGE: list[tuple[str, str, Callable[[Conn, World], None]]] = [
    ("drop_jobs_policy", "drop policy jobs_select_own on public.jobs", check_user_reads_own_jobs),
    (
        "jobs_policy_using_true",
        "drop policy jobs_select_own on public.jobs; "
        "create policy jobs_select_own on public.jobs for select to authenticated using (true)",
        check_user_cannot_read_others_jobs,
    ),
    (
        "disable_rls_jobs",
        "alter table public.jobs disable row level security",
        check_user_cannot_read_others_jobs,
    ),
    (
        "disable_rls_jobs_writes",
        "alter table public.jobs disable row level security",
        check_rls_blocks_job_writes_even_with_grants,
    ),
    (
        "drop_events_policy",
        "drop policy job_events_select_own on public.job_events",
        check_user_reads_own_events,
    ),
    (
        "events_policy_using_true",
        "drop policy job_events_select_own on public.job_events; create policy "
        "job_events_select_own on public.job_events for select to authenticated using (true)",
        check_user_cannot_read_others_events,
    ),
    (
        "disable_rls_events",
        "alter table public.job_events disable row level security",
        check_user_cannot_read_others_events,
    ),
    (
        "disable_rls_events_writes",
        "alter table public.job_events disable row level security",
        check_rls_blocks_event_writes_even_with_grants,
    ),
    (
        "grant_insert_jobs",
        "grant insert on public.jobs to authenticated",
        check_user_cannot_insert_jobs,
    ),
    (
        "grant_update_jobs",
        "grant update on public.jobs to authenticated",
        check_user_cannot_update_jobs,
    ),
    (
        "grant_delete_jobs",
        "grant delete on public.jobs to authenticated",
        check_user_cannot_delete_jobs,
    ),
    (
        "grant_insert_events",
        "grant insert on public.job_events to authenticated",
        check_user_cannot_insert_events,
    ),
    (
        "grant_update_events",
        "grant update on public.job_events to authenticated",
        check_user_cannot_update_events,
    ),
    (
        "grant_delete_events",
        "grant delete on public.job_events to authenticated",
        check_user_cannot_delete_events,
    ),
    (
        "drop_workflows_policy",
        "drop policy workflows_select_authenticated on public.workflows",
        check_authenticated_reads_workflows,
    ),
    (
        "grant_insert_workflows",
        "grant insert on public.workflows to authenticated",
        check_authenticated_cannot_write_workflows,
    ),
    (
        "grant_update_workflows",
        "grant update on public.workflows to authenticated",
        check_authenticated_cannot_write_workflows,
    ),
    (
        "grant_delete_workflows",
        "grant delete on public.workflows to authenticated",
        check_authenticated_cannot_write_workflows,
    ),
    (
        "disable_rls_workflows",
        "alter table public.workflows disable row level security",
        check_rls_blocks_workflow_writes_even_with_grants,
    ),
    (
        "grant_select_transformers_authenticated",
        "grant select on public.transformers to authenticated",
        check_authenticated_cannot_read_transformers,
    ),
    (
        "grant_select_transformers_anon",
        "grant select on public.transformers to anon",
        check_anon_cannot_read_transformers,
    ),
    (
        "disable_rls_transformers",
        "alter table public.transformers disable row level security",
        check_rls_hides_transformers_even_with_grants,
    ),
    (
        "transformers_policy_using_true",
        "create policy transformers_open on public.transformers for select "
        "to authenticated using (true)",
        check_rls_hides_transformers_even_with_grants,
    ),
    (
        "grant_insert_transformers",
        "grant insert on public.transformers to authenticated",
        check_authenticated_cannot_write_transformers,
    ),
    ("grant_select_jobs_anon", "grant select on public.jobs to anon", check_anon_cannot_read_jobs),
    (
        "grant_select_events_anon",
        "grant select on public.job_events to anon",
        check_anon_cannot_read_events,
    ),
    (
        "grant_select_workflows_anon",
        "grant select on public.workflows to anon",
        check_anon_cannot_read_workflows,
    ),
    ("grant_insert_jobs_anon", "grant insert on public.jobs to anon", check_anon_cannot_write),
    ("grant_all_workflows_anon", "grant all on public.workflows to anon", check_anon_cannot_write),
    (
        "policy_ignores_sub",
        "drop policy jobs_select_own on public.jobs; create policy jobs_select_own on "
        "public.jobs for select to authenticated using (user_id = auth.uid() or auth.uid() "
        "is null)",
        check_signed_in_user_without_sub_sees_no_jobs,
    ),
]


@pytest.mark.parametrize(
    ("sabotage", "check"), [(s, c) for _, s, c in SABOTAGE], ids=[n for n, _, _ in SABOTAGE]
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


def test_every_policy_is_named_and_listed(db: Conn) -> None:
    """The schema has exactly the policies the checks above are about."""
    rows = db.execute(
        "select tablename, policyname, cmd, roles::text[] from pg_policies "
        "where schemaname = 'public' order by tablename, policyname"
    ).fetchall()
    assert rows == [
        ("job_callbacks", "job_callbacks_select_own", "SELECT", ["authenticated"]),
        ("job_events", "job_events_select_own", "SELECT", ["authenticated"]),
        ("job_waits", "job_waits_select_deciders", "SELECT", ["authenticated"]),
        ("jobs", "jobs_select_own", "SELECT", ["authenticated"]),
        ("schedules", "schedules_delete_own", "DELETE", ["authenticated"]),
        ("schedules", "schedules_insert_own", "INSERT", ["authenticated"]),
        ("schedules", "schedules_select_own", "SELECT", ["authenticated"]),
        ("schedules", "schedules_update_own", "UPDATE", ["authenticated"]),
        (
            "workflow_versions",
            "workflow_versions_select_authenticated",
            "SELECT",
            ["authenticated"],
        ),
        ("workflows", "workflows_select_authenticated", "SELECT", ["authenticated"]),
    ]


def test_rls_enabled_on_every_public_table(db: Conn) -> None:
    """No table in public is without RLS (a new table must opt in explicitly)."""
    rows = db.execute(
        "select c.relname, c.relrowsecurity from pg_class c "
        "join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'public' and c.relkind in ('r', 'p') order by 1"
    ).fetchall()
    assert rows == [
        ("alerts", True),
        ("job_callbacks", True),
        ("job_events", True),
        ("job_waits", True),
        ("jobs", True),
        ("schedule_firing_counts", True),
        ("schedules", True),
        ("service_restarts", True),
        ("transformer_versions", True),
        ("transformers", True),
        ("workflow_versions", True),
        ("workflows", True),
    ]


def test_forgetting_the_role_switch_bypasses_rls(db: Conn) -> None:
    """As the table owner, claims alone change nothing: B's rows are visible.

    This is why every user-facing query in the job store must run inside `as_user` (role
    switch plus claims), never with claims alone.
    """
    w = seed(db)
    # No switch at all: the service view.
    assert _ids(db, "select id from public.jobs") == {w.job_a, w.job_b}
    # Claims of user A set, but the role left as the owner: RLS still does not apply.
    with db.transaction():
        db.execute(
            "select set_config('request.jwt.claims', %s, true)",
            (json.dumps({"sub": w.user_a, "role": "authenticated"}),),
        )
        assert _ids(db, "select id from public.jobs") == {w.job_a, w.job_b}
        assert _ids(db, "select id from public.job_events") == {str(w.event_a), str(w.event_b)}
    # With the switch, the same query is confined to A.
    with as_user(db, w.user_a) as c:
        assert _ids(c, "select id from public.jobs") == {w.job_a}


def test_role_switch_ends_with_the_transaction(db: Conn) -> None:
    """as_user's role and claims are transaction-local: afterwards the service is back."""
    w = seed(db)
    with as_user(db, w.user_a) as c:
        row = c.execute("select current_user, auth.uid()::text").fetchone()
        assert row == ("authenticated", w.user_a)
    row = db.execute("select current_user = session_user, auth.uid()").fetchone()
    assert row == (True, None)
    assert _ids(db, "select id from public.jobs") == {w.job_a, w.job_b}


def test_as_user_refuses_a_connection_inside_a_transaction(database_url: str) -> None:
    """A role set inside an outer transaction would outlive the block, so it is refused."""
    with psycopg.connect(database_url) as conn:  # not autocommit: a transaction opens
        conn.execute("select 1")
        with pytest.raises(ValueError, match="idle"), as_user(conn, None):
            pass
