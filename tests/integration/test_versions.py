"""Immutable versions of workflows and transformers, and jobs pinned to them (migration
20261203000300): numbering, history, pinning at insert, the default version, and who may read
the version tables."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from dbfixtures import as_user, create_user, insert_job, insert_transformer, insert_workflow
from psycopg.types.json import Jsonb

from engine.db.store import JobStore
from engine.errors import NotFoundError

Conn = psycopg.Connection[Any]
V1 = {"steps": [{"id": "a", "transformer": "tr-a"}]}
V2 = {"steps": [{"id": "a", "transformer": "tr-a"}, {"id": "b", "transformer": "tr-a"}]}


def _versions(db: Conn, table: str, key: str, value: str) -> list[tuple[Any, ...]]:
    return db.execute(
        f"select version, content_hash from public.{table} where {key} = %s order by version",
        [value],
    ).fetchall()


@pytest.fixture
def workflow(db: Conn) -> str:
    """Workflow `wf_v` (version 1) whose step uses transformer `tr-a` (version 1)."""
    insert_transformer(db, "tr-a", config={"url": "https://a.example/v1"})
    return insert_workflow(db, "wf_v", V1)


def test_a_changed_definition_is_a_new_version_and_the_old_one_stays(
    db: Conn, workflow: str
) -> None:
    """v1 on insert; a description alone keeps v1; a new definition is v2; v1's row is
    unchanged and cannot be rewritten."""
    db.execute(
        "update public.workflows set description = 'now described' where id = %s", [workflow]
    )
    assert db.execute("select version from public.workflows").fetchone() == (1,)
    db.execute("update public.workflows set definition = %s where id = %s", [Jsonb(V2), workflow])
    assert db.execute("select version from public.workflows").fetchone() == (2,)
    rows = _versions(db, "workflow_versions", "workflow_id", workflow)
    assert [r[0] for r in rows] == [1, 2] and rows[0][1] != rows[1][1]
    first = db.execute(
        "select definition from public.workflow_versions where version = 1"
    ).fetchone()
    assert first == (V1,)
    with pytest.raises(psycopg.errors.RestrictViolation, match="immutable"):
        db.execute("update public.workflow_versions set definition = '{}' where version = 1")


def test_a_changed_transformer_config_is_a_new_version(db: Conn, workflow: str) -> None:
    """Config, type or target function changes number a version; a description does not."""
    db.execute("update public.transformers set description = 'x' where id = 'tr-a'")
    db.execute(
        "update public.transformers set config = %s where id = 'tr-a'",
        [Jsonb({"url": "https://a.example/v2"})],
    )
    assert [r[0] for r in _versions(db, "transformer_versions", "transformer_id", "tr-a")] == [1, 2]


def test_jobs_are_pinned_to_the_default_version_and_current_transformers(
    db: Conn, workflow: str
) -> None:
    """A job without a version runs the latest; with default_version set, that one; the
    transformers' versions are those current at insert, whatever changes later."""
    user = create_user(db)
    first = insert_job(db, user, workflow)
    db.execute("update public.workflows set definition = %s where id = %s", [Jsonb(V2), workflow])
    db.execute("update public.transformers set config = '{\"url\": \"v2\"}' where id = 'tr-a'")
    second = insert_job(db, user, workflow)
    db.execute("update public.workflows set default_version = 1 where id = %s", [workflow])
    third = insert_job(db, user, workflow)
    rows = dict(
        (str(r[0]), (r[1], r[2]))
        for r in db.execute("select id, workflow_version, transformer_versions from public.jobs")
    )
    assert rows[first] == (1, {"tr-a": 1})
    assert rows[second] == (2, {"tr-a": 2})
    assert rows[third] == (1, {"tr-a": 2})


def test_a_default_version_that_does_not_exist_is_refused(db: Conn, workflow: str) -> None:
    """default_version must name an existing version."""
    with pytest.raises(psycopg.errors.CheckViolation, match="has no version 5"):
        db.execute("update public.workflows set default_version = 5 where id = %s", [workflow])


def test_store_names_a_missing_workflow_or_version(
    flow_store: JobStore, db: Conn, workflow: str
) -> None:
    """The start path's lookups: 404 naming the workflow, or the workflow and the version."""
    assert flow_store.get_workflow(workflow)["version"] == 1
    with pytest.raises(NotFoundError, match="workflow 'wf_v' has no version 3"):
        flow_store.get_workflow(workflow, 3)
    with pytest.raises(NotFoundError, match="workflow 'nope' does not exist"):
        flow_store.get_workflow("nope", 1)
    user = create_user(db)
    with pytest.raises(NotFoundError, match="workflow 'wf_v' has no version 9"):
        flow_store.create_job(user_id=user, workflow_id=workflow, input_data={}, workflow_version=9)


@pytest.mark.parametrize(
    ("role", "table", "readable"),
    [
        ("authenticated", "workflow_versions", True),
        ("anon", "workflow_versions", False),
        ("authenticated", "transformer_versions", False),
        ("anon", "transformer_versions", False),
    ],
)
def test_who_may_read_the_version_tables(
    db: Conn, workflow: str, role: str, table: str, readable: bool
) -> None:
    """Like their parents: signed-in users read workflow versions; transformer versions (which
    name endpoints) and anything for the anon key are refused."""
    user = create_user(db) if role == "authenticated" else None
    if readable:
        with as_user(db, user, role) as conn:
            assert conn.execute(f"select count(*) from public.{table}").fetchone() == (1,)
        return
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"),
        as_user(db, user, role) as conn,
    ):
        conn.execute(f"select * from public.{table}")


@pytest.mark.parametrize("role", ["authenticated", "anon"])
@pytest.mark.parametrize("table", ["workflow_versions", "transformer_versions"])
def test_api_roles_cannot_write_versions(db: Conn, workflow: str, role: str, table: str) -> None:
    """No API role inserts, changes or deletes a version."""
    user = create_user(db) if role == "authenticated" else None
    for statement in (f"delete from public.{table}", f"update public.{table} set version = 9"):
        with (
            pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"),
            as_user(db, user, role) as conn,
        ):
            conn.execute(statement)
