"""Row level security of public.job_waits, as PostgREST (supabase-js) exercises it.

Approvals show to exactly the users allowed to decide them: the job's owner when the step
names no deciders; otherwise the users whose verified JWT claim is one of the rule's values,
the owner excluded under forbid_self_approval. Sleeps and events show to the job's owner.
Nobody but the service writes, and anon reads nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from dbfixtures import create_user, insert_job, insert_workflow
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]

PERMISSION_DENIED = "42501"
REVIEWERS = {"claim": "app_metadata.role", "in": ["reviewer", "admin"]}


@contextmanager
def as_caller(conn: Conn, claims: dict[str, Any], role: str = "authenticated") -> Iterator[Conn]:
    """One transaction as `role` with these request.jwt.claims (as PostgREST sets them)."""
    with conn.transaction():
        conn.execute(
            "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
            (role, json.dumps(claims)),
        )
        yield conn


def user_claims(user_id: str, **app_metadata: Any) -> dict[str, Any]:
    """A signed-in user's claims with these app_metadata entries."""
    return {
        "sub": user_id,
        "role": "authenticated",
        "aud": "authenticated",
        "app_metadata": {"provider": "email", **app_metadata},
    }


def insert_wait(conn: Conn, job_id: str, owner: str, step_id: str, **columns: Any) -> str:
    """A job_waits row as the service writes it."""
    values = {"job_id": job_id, "user_id": owner, "step_id": step_id, "kind": "approval"}
    values.update(columns)
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    params = [Jsonb(v) if isinstance(v, dict | list) else v for v in values.values()]
    row = conn.execute(
        f"insert into public.job_waits ({names}) values ({marks}) returning id",  # type: ignore[arg-type]
        params,
    ).fetchone()
    assert row is not None
    return str(row[0])


@dataclass(frozen=True)
class World:
    """An owner's job with four waits, a reviewer, a viewer and a stranger."""

    owner: str
    reviewer: str
    viewer: str
    stranger: str
    owner_only: str
    by_rule: str
    by_rule_not_self: str
    sleep: str


@pytest.fixture
def world(db: Conn) -> World:
    """Write the world as the service."""
    owner, reviewer, viewer, stranger = (create_user(db) for _ in range(4))
    job = insert_job(db, owner, insert_workflow(db, "wf_waits_rls"))
    return World(
        owner=owner,
        reviewer=reviewer,
        viewer=viewer,
        stranger=stranger,
        owner_only=insert_wait(db, job, owner, "a"),
        by_rule=insert_wait(db, job, owner, "b", deciders=REVIEWERS),
        by_rule_not_self=insert_wait(
            db, job, owner, "c", deciders=REVIEWERS, forbid_self_approval=True
        ),
        sleep=insert_wait(db, job, owner, "d", kind="sleep"),
    )


def visible(db: Conn, claims: dict[str, Any], role: str = "authenticated") -> set[str]:
    """The wait ids `claims` can select."""
    with as_caller(db, claims, role) as conn:
        return {str(r[0]) for r in conn.execute("select id from public.job_waits").fetchall()}


@pytest.mark.parametrize(
    ("caller", "metadata", "expected"),
    [
        ("owner", {}, {"owner_only", "sleep"}),
        ("owner", {"role": "reviewer"}, {"owner_only", "by_rule", "sleep"}),
        ("reviewer", {"role": "reviewer"}, {"by_rule", "by_rule_not_self"}),
        ("reviewer", {"role": ["viewer", "admin"]}, {"by_rule", "by_rule_not_self"}),
        ("viewer", {"role": "viewer"}, set()),
        ("viewer", {"role": ["viewer"]}, set()),
        ("viewer", {"role": True}, set()),
        ("stranger", {}, set()),
    ],
)
def test_authenticated_callers_see_exactly_what_they_may_decide(
    db: Conn, world: World, caller: str, metadata: dict[str, Any], expected: set[str]
) -> None:
    """Each caller sees exactly the approvals the rule lets them decide (and the owner its
    job's sleeps and events); a claim of another type or value shows nothing."""
    ids = {
        name: getattr(world, name)
        for name in ("owner_only", "by_rule", "by_rule_not_self", "sleep")
    }
    seen = visible(db, user_claims(getattr(world, caller), **metadata))
    assert seen == {ids[name] for name in expected}


def test_anon_reads_nothing(db: Conn, world: World) -> None:
    """The anon key has no privilege on the table at all."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
        visible(db, {"role": "anon"}, role="anon")
    assert raised.value.sqlstate == PERMISSION_DENIED


@pytest.mark.parametrize(
    "statement",
    [
        "update public.job_waits set status = 'decided', decided_at = now()",
        "delete from public.job_waits",
        "insert into public.job_waits (job_id, step_id, kind) "
        "select job_id, 'x', 'approval' from public.job_waits limit 1",
    ],
)
def test_no_user_writes_a_wait(db: Conn, world: World, statement: str) -> None:
    """Deciders read under RLS; every write (a decision too) goes through the engine."""
    claims = user_claims(world.reviewer, role="reviewer")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_caller(db, claims) as conn:
        conn.execute(statement)
