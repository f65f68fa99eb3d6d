"""The real Supabase CLI deploys our migrations, and it and our runner share one ledger.

Needs the CLI binary: `npm i -E supabase@2.117.0` in .data/supabase-cli (or SUPABASE_CLI set to
a binary, or `supabase` on PATH). Skipped, with that reason, only when it is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest

from engine.db.migrate import (
    MIGRATIONS_DIR,
    applied_migrations,
    apply_bootstrap,
    apply_migrations,
    discover_migrations,
    pending_migrations,
)
from engine.settings import PROJECT_ROOT

CLI_VERSION = "2.117.0"
INSTALL_HINT = (
    f"Supabase CLI not installed: run `npm i -E supabase@{CLI_VERSION}` in "
    f"{PROJECT_ROOT / '.data' / 'supabase-cli'} or set SUPABASE_CLI"
)
ALL_VERSIONS = [m.version for m in discover_migrations()]


def find_cli() -> str | None:
    """The Supabase CLI binary: SUPABASE_CLI, the project's scratch install, or PATH."""
    candidates = [
        os.environ.get("SUPABASE_CLI"),
        str(PROJECT_ROOT / ".data" / "supabase-cli" / "node_modules" / ".bin" / "supabase"),
        shutil.which("supabase"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def cli_db_url(url: str) -> str:
    """The URL the CLI gets: same database, TLS off (local server without certificates)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("sslmode", "disable")
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.fixture(scope="module")
def supabase_cli() -> str:
    """Path of the CLI binary; skips the module when it is missing."""
    cli = find_cli()
    if cli is None:
        pytest.skip(INSTALL_HINT)
    return cli


@pytest.fixture
def cli_workdir(tmp_path: Path) -> Path:
    """A scratch project holding a copy of supabase/migrations (the CLI writes into workdir)."""
    target = tmp_path / "project" / "supabase" / "migrations"
    shutil.copytree(MIGRATIONS_DIR, target)
    (tmp_path / "home").mkdir()
    return tmp_path / "project"


def run_cli(cli: str, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI non-interactively with a scratch HOME; fail with its output on error."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir.parent / "home"),
        "SUPABASE_TELEMETRY_DISABLED": "1",
        "DO_NOT_TRACK": "1",
    }
    proc = subprocess.run(
        [cli, *args, "--workdir", str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"supabase {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


SCHEMA_FINGERPRINT = """
select 'column', c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' ' || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
from pg_attribute a join pg_class c on c.oid = a.attrelid
join pg_namespace n on n.oid = c.relnamespace
left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
where n.nspname = 'public' and a.attnum > 0 and not a.attisdropped
union all
select 'constraint', conrelid::regclass || ' ' || pg_get_constraintdef(oid) from pg_constraint
where connamespace = 'public'::regnamespace
union all
select 'index', indexdef from pg_indexes where schemaname = 'public'
union all
select 'trigger', pg_get_triggerdef(t.oid) from pg_trigger t
join pg_class c on c.oid = t.tgrelid where c.relnamespace = 'public'::regnamespace
  and not t.tgisinternal
union all
select 'function', pg_get_functiondef(p.oid) from pg_proc p
where p.pronamespace = 'public'::regnamespace
union all
select 'policy', tablename || ' ' || policyname || ' ' || cmd || ' ' || roles::text || ' '
       || coalesce(qual, '') from pg_policies where schemaname = 'public'
union all
select 'acl', c.relname || ' ' || coalesce(c.relacl::text, '') || ' ' || c.relrowsecurity
from pg_class c where c.relnamespace = 'public'::regnamespace
order by 1, 2
"""


def schema_fingerprint(url: str) -> list[tuple[str, str]]:
    """Everything the migrations define in public, as comparable text."""
    with psycopg.connect(url) as conn:
        return [(str(r[0]), str(r[1])) for r in conn.execute(SCHEMA_FINGERPRINT).fetchall()]


def test_cli_version(supabase_cli: str, cli_workdir: Path) -> None:
    """The pinned CLI version is the one installed."""
    proc = run_cli(supabase_cli, cli_workdir, "--version")
    assert proc.stdout.strip() == CLI_VERSION


def test_db_push_applies_our_migrations_and_runner_skips_them(
    supabase_cli: str, cli_workdir: Path, empty_database_url: str, database_url: str
) -> None:
    """`supabase db push` deploys every file, yielding the very schema our runner builds
    (`database_url` is a runner-migrated database); our runner then finds nothing to do."""
    apply_bootstrap(empty_database_url)
    proc = run_cli(
        supabase_cli,
        cli_workdir,
        "db",
        "push",
        "--db-url",
        cli_db_url(empty_database_url),
        "--yes",
    )
    for version in ALL_VERSIONS:
        assert version in proc.stdout + proc.stderr

    assert applied_migrations(empty_database_url) == ALL_VERSIONS
    assert pending_migrations(empty_database_url) == []
    assert apply_migrations(empty_database_url, bootstrap=True) == []
    with psycopg.connect(empty_database_url) as conn:
        names = conn.execute(
            "select name from supabase_migrations.schema_migrations order by version"
        ).fetchall()
        policies = conn.execute("select count(*) from pg_policies").fetchone()
    assert [n[0] for n in names] == [m.name for m in discover_migrations()]
    # jobs, job_events, workflows, workflow_versions, job_waits, job_callbacks, and four on
    # schedules (select, insert, update, delete)
    assert policies == (10,)
    assert schema_fingerprint(empty_database_url) == schema_fingerprint(database_url)


def test_runner_first_then_db_push_is_up_to_date(
    supabase_cli: str, cli_workdir: Path, empty_database_url: str
) -> None:
    """After our runner, `supabase db push` sees every version applied and changes nothing."""
    assert apply_migrations(empty_database_url, bootstrap=True) == ALL_VERSIONS
    proc = run_cli(
        supabase_cli,
        cli_workdir,
        "db",
        "push",
        "--db-url",
        cli_db_url(empty_database_url),
        "--yes",
    )
    assert "up to date" in (proc.stdout + proc.stderr).lower()
    listing = run_cli(
        supabase_cli,
        cli_workdir,
        "migration",
        "list",
        "--db-url",
        cli_db_url(empty_database_url),
    ).stdout
    for version in ALL_VERSIONS:
        # `migration list` prints local | remote | time; a version on both sides appears twice.
        assert listing.count(version) >= 2, listing
    assert applied_migrations(empty_database_url) == ALL_VERSIONS
