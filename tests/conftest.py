"""Shared fixtures: every test that needs a database gets a fresh, fully migrated one.

Once per session a template database is built (local bootstrap + all migrations); each test
then gets `CREATE DATABASE t_... TEMPLATE <template>` (a file copy, fast) and it is dropped
afterwards. The server comes from TEST_ADMIN_DATABASE_URL (default: postgres on 127.0.0.1).

Fixtures:
  admin_database_url   session: the maintenance URL
  database_template    session: name of the migrated template database
  database_url         function: URL of a fresh migrated database
  db                   function: autocommit psycopg connection to `database_url`
  empty_database_url   function: URL of a fresh, completely empty database (template0)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from dbfixtures import (
    TEMPLATE_PREFIX,
    TEST_DB_PREFIX,
    admin_url,
    create_database,
    drop_database,
    drop_stale_databases,
    throwaway_name,
)

from engine.migrate import apply_migrations


@pytest.fixture(scope="session")
def admin_database_url() -> str:
    """The URL tests use to create and drop databases."""
    return admin_url()


@pytest.fixture(scope="session")
def database_template(admin_database_url: str) -> Iterator[str]:
    """A database with bootstrap and every migration applied, cloned by each test."""
    drop_stale_databases(admin_database_url)
    name = throwaway_name(TEMPLATE_PREFIX)
    url = create_database(admin_database_url, name)
    try:
        apply_migrations(url, bootstrap=True)
        yield name
    finally:
        drop_database(admin_database_url, name)


@pytest.fixture
def database_url(admin_database_url: str, database_template: str) -> Iterator[str]:
    """URL of a fresh database holding the full schema, dropped after the test."""
    name = throwaway_name(TEST_DB_PREFIX)
    url = create_database(admin_database_url, name, template=database_template)
    try:
        yield url
    finally:
        drop_database(admin_database_url, name)


@pytest.fixture
def empty_database_url(admin_database_url: str) -> Iterator[str]:
    """URL of a fresh empty database (no bootstrap, no migrations), dropped after the test."""
    name = throwaway_name(TEST_DB_PREFIX)
    url = create_database(admin_database_url, name)
    try:
        yield url
    finally:
        drop_database(admin_database_url, name)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the test's fresh database, as the owner (the service)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn
