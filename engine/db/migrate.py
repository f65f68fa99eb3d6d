"""Schema migrations: apply supabase/migrations/*.sql and record them where the Supabase CLI does.

The ledger is `supabase_migrations.schema_migrations`, the table `supabase db push` reads and
writes. Either tool may deploy the schema; a version one of them recorded is skipped by the
other. Each migration runs in its own transaction under a session advisory lock, so two
runners started together (API and worker on one fresh database) apply every file once.

`apply_bootstrap` runs supabase/local/bootstrap.sql, which makes a plain PostgreSQL look like
Supabase (roles, auth schema); it refuses to run on a real Supabase database.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from engine.settings import PROJECT_ROOT

logger = logging.getLogger(__name__)

SUPABASE_DIR = PROJECT_ROOT / "supabase"
MIGRATIONS_DIR = SUPABASE_DIR / "migrations"
BOOTSTRAP_FILE = SUPABASE_DIR / "local" / "bootstrap.sql"
_SQL_DIR = Path(__file__).resolve().parent / "sql"

# The Supabase CLI's file pattern (pkg/migration/file.go): version digits, underscore, name.
_MIGRATION_FILE = re.compile(r"^(?P<version>[0-9]+)_(?P<name>.*)\.sql$")

# Advisory lock keys (arbitrary constants, fixed forever): one for migrating, one for the
# bootstrap. The same session may hold both; advisory locks are re-entrant per session.
MIGRATION_LOCK_KEY = 0x5F5F_6D69_6772_6174  # "__migrat"
BOOTSTRAP_LOCK_KEY = 0x5F5F_626F_6F74_7374  # "__bootst"


class MigrationError(RuntimeError):
    """A migration file is malformed or failed to apply."""


@dataclass(frozen=True)
class Migration:
    """One file of supabase/migrations: `<version>_<name>.sql`."""

    version: str
    name: str
    path: Path

    def script(self) -> str:
        """The file's SQL text."""
        return self.path.read_text(encoding="utf-8")


def _sql(name: str) -> str:
    """The runner's own SQL from engine/db/sql/migrations_<name>.sql."""
    return (_SQL_DIR / f"migrations_{name}.sql").read_text(encoding="utf-8")


def parse_migration_filename(filename: str) -> tuple[str, str] | None:
    """(version, name) of a migration file name as the Supabase CLI parses it, else None."""
    match = _MIGRATION_FILE.match(filename)
    if match is None:
        return None
    return match["version"], match["name"]


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file in `directory`, in filename order (the order both tools apply).

    Raises MigrationError for a `.sql` file that does not follow the naming pattern (the CLI
    would silently skip it, which hides a mistake) or for two files with one version.
    """
    migrations: list[Migration] = []
    seen: dict[str, Path] = {}
    for path in sorted(directory.glob("*.sql"), key=lambda p: p.name):
        parsed = parse_migration_filename(path.name)
        if parsed is None:
            raise MigrationError(f"not a migration file name (<version>_<name>.sql): {path}")
        version, name = parsed
        if version in seen:
            raise MigrationError(f"version {version} used twice: {seen[version]} and {path}")
        seen[version] = path
        migrations.append(Migration(version=version, name=name, path=path))
    return migrations


def plan_pending(available: Sequence[Migration], applied: Iterable[str]) -> list[Migration]:
    """The migrations of `available` whose version is not in `applied`, in order.

    A version recorded in the ledger but absent locally (a newer deployment migrated the
    database) is ignored; older code keeps running against a newer compatible schema.
    """
    done = set(applied)
    return [m for m in available if m.version not in done]


def _connect(database_url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(database_url, autocommit=True)


@contextmanager
def _connection(
    conn_or_url: str | psycopg.Connection[tuple[object, ...]],
) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    if isinstance(conn_or_url, str):
        with _connect(conn_or_url) as conn:
            yield conn
    else:
        yield conn_or_url


def apply_bootstrap(conn_or_url: str | psycopg.Connection[tuple[object, ...]]) -> None:
    """Run supabase/local/bootstrap.sql in one transaction (local PostgreSQL only).

    Idempotent. Raises psycopg.errors.RaiseException, leaving the database untouched, when the
    database looks like a real Supabase database.
    """
    script = BOOTSTRAP_FILE.read_text(encoding="utf-8")
    with _connection(conn_or_url) as conn, conn.transaction():
        conn.execute(_sql("xact_lock"), {"key": BOOTSTRAP_LOCK_KEY})
        conn.execute(script)


def _ledger_exists(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute(_sql("ledger_exists")).fetchone()
    return bool(row and row[0])


def _applied_versions(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    if not _ledger_exists(conn):
        return []
    return [str(row[0]) for row in conn.execute(_sql("applied_versions")).fetchall()]


def applied_migrations(database_url: str) -> list[str]:
    """Versions recorded in the ledger, ascending (empty when there is no ledger)."""
    with _connect(database_url) as conn:
        return _applied_versions(conn)


def pending_migrations(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Versions of local migration files not yet recorded in the database's ledger."""
    with _connect(database_url) as conn:
        applied = _applied_versions(conn)
    return [m.version for m in plan_pending(discover_migrations(directory), applied)]


def apply_migrations(
    database_url: str, *, bootstrap: bool, directory: Path = MIGRATIONS_DIR
) -> list[str]:
    """Apply every pending migration in order; return the versions applied (maybe none).

    With `bootstrap=True` the local compatibility bootstrap runs first (never on Supabase).
    Each file runs as one script in its own transaction together with its ledger row, so a
    failing file leaves neither partial schema nor a ledger entry, and raises MigrationError.
    """
    migrations = discover_migrations(directory)
    applied_now: list[str] = []
    with _connect(database_url) as conn:
        conn.execute(_sql("lock"), {"key": MIGRATION_LOCK_KEY})
        try:
            if bootstrap:
                apply_bootstrap(conn)
            with conn.transaction():
                conn.execute(_sql("create_ledger"))
            # Read the ledger only once the lock is held: a runner that waited sees what the
            # other one applied.
            for migration in plan_pending(migrations, _applied_versions(conn)):
                _apply_one(conn, migration)
                applied_now.append(migration.version)
        finally:
            conn.execute(_sql("unlock"), {"key": MIGRATION_LOCK_KEY})
    return applied_now


def _apply_one(conn: psycopg.Connection[tuple[object, ...]], migration: Migration) -> None:
    script = migration.script()
    logger.info("applying migration %s_%s", migration.version, migration.name)
    try:
        with conn.transaction():
            # Without parameters psycopg sends the text as one simple-protocol query, so a
            # whole multi-statement file runs as written.
            conn.execute(script)
            # The CLI stores the file split into statements; the whole script as one element
            # keeps the same information without re-implementing its SQL splitter.
            conn.execute(
                _sql("record_version"),
                {
                    "version": migration.version,
                    "name": migration.name,
                    "statements": [script.strip()],
                },
            )
    except psycopg.Error as exc:
        raise MigrationError(
            f"migration {migration.path.name} failed: {exc.__class__.__name__}: {exc}"
        ) from exc


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m engine.db.migrate [--bootstrap] [--database-url URL]`: migrate a database."""
    from engine.settings import get_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL")
    parser.add_argument(
        "--bootstrap", action="store_true", help="run the local Supabase bootstrap first"
    )
    args = parser.parse_args(argv)
    url = args.database_url or get_settings().database_url
    if not url:
        parser.error("no database: pass --database-url or set DATABASE_URL")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    applied = apply_migrations(url, bootstrap=args.bootstrap)
    logger.info("applied %d migration(s): %s", len(applied), ", ".join(applied) or "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
