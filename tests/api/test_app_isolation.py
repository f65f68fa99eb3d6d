"""Two users never see each other's jobs through any endpoint, and Row Level Security is what
guarantees it: a store whose user path forgets the role switch fails the very same check."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from cli.definition_files import sync_definitions
from engine.db.store import JobStore, Row

if TYPE_CHECKING:
    # Annotation only: at run time several conftest modules share the name `conftest`.
    from conftest import ApiUser

DEMO = {"workflow_id": "demo_offline_v1", "input_data": {"text": "private to A"}}
OTHER_DEMO = {"workflow_id": "demo_offline_v1", "input_data": {"text": "B's own"}}


def start(
    client: TestClient, user: ApiUser, body: Mapping[str, Any], key: str | None = None
) -> tuple[int, dict[str, Any]]:
    """POST /workflows/start; (status code, body)."""
    headers = dict(user.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    response = client.post("/workflows/start", json=dict(body), headers=headers)
    return response.status_code, response.json()


def listed_ids(client: TestClient, user: ApiUser, **params: Any) -> list[str]:
    """Every job id GET /jobs shows `user` with these filters, following every cursor."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        query = dict(params)
        if cursor is not None:
            query["cursor"] = cursor
        response = client.get("/jobs", params=query, headers=user.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        ids.extend(job["job_id"] for job in body["jobs"])
        cursor = body["next_cursor"]
        if cursor is None:
            return ids


def assert_users_isolated(client: TestClient, a: ApiUser, b: ApiUser) -> None:
    """Check that `b` cannot see or reach `a`'s jobs through any endpoint, and vice versa.

    Raises AssertionError naming the endpoint that leaked. Used on the real app (it must pass)
    and on an app whose store skips the role switch (it must fail).
    """
    status, a_first = start(client, a, DEMO, key="key-1")
    assert status == 201
    status, a_second = start(client, a, {**DEMO, "input_data": {"text": "second"}}, key="key-2")
    assert status == 201
    a_jobs = {a_first["job_id"], a_second["job_id"]}
    status, b_own = start(client, b, OTHER_DEMO)
    assert status == 201

    # GET /jobs/{id}: another user's job answers exactly like a job that does not exist.
    for job_id in sorted(a_jobs):
        foreign = client.get(f"/jobs/{job_id}", headers=b.headers)
        missing_id = str(uuid.uuid4())
        missing = client.get(f"/jobs/{missing_id}", headers=b.headers)
        assert foreign.status_code == 404, f"GET /jobs/{{id}} leaked A's job to B: {foreign.text}"
        assert missing.status_code == 404
        assert foreign.json() == json.loads(missing.text.replace(missing_id, job_id)), (
            "GET /jobs/{id} tells a foreign job from a missing one"
        )
        assert {k: v for k, v in foreign.headers.items() if k != "date"} == {
            k: v for k, v in missing.headers.items() if k != "date"
        }
        assert client.get(f"/jobs/{job_id}", headers=a.headers).status_code == 200

    # GET /jobs under every filter, and through every page.
    filters: list[dict[str, Any]] = [
        {},
        {"limit": 1},
        {"status": "pending"},
        {"workflow_id": "demo_offline_v1"},
        {"status": "pending", "workflow_id": "demo_offline_v1", "limit": 1},
    ]
    for params in filters:
        assert listed_ids(client, b, **params) == [b_own["job_id"]], (
            f"GET /jobs {params} shows B someone else's jobs"
        )
        assert set(listed_ids(client, a, **params)) == a_jobs, f"GET /jobs {params} for A"

    # Idempotency keys are per user: B reusing A's keys starts B's own jobs (same body or
    # not), and never learns A's job id from a replay or a conflict.
    status, replay = start(client, b, DEMO, key="key-1")
    assert status == 201, f"B's use of A's Idempotency-Key was not a new job: {status} {replay}"
    assert replay["job_id"] not in a_jobs
    status, other_body = start(client, b, OTHER_DEMO, key="key-2")
    assert status == 201, f"B's use of A's Idempotency-Key conflicted: {status} {other_body}"
    assert other_body["job_id"] not in a_jobs
    assert client.get(f"/jobs/{replay['job_id']}", headers=b.headers).status_code == 200
    assert client.get(f"/jobs/{replay['job_id']}", headers=a.headers).status_code == 404

    # And A's own replay still finds A's job.
    status, again = start(client, a, DEMO, key="key-1")
    assert (status, again["job_id"]) == (200, a_first["job_id"])


def test_users_cannot_see_each_others_jobs(
    client: TestClient,
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
) -> None:
    """The real app and store: no endpoint shows one user's jobs to another."""
    a, b = make_user(), make_user()
    assert_users_isolated(client, a, b)
    owners = db.execute(
        "select user_id::text, count(*) from public.jobs group by user_id order by 2"
    ).fetchall()
    assert sorted(owners) == sorted([(a.user_id, 2), (b.user_id, 3)])


class ClaimsWithoutRoleStore(JobStore):
    """A store whose user path sets the caller's claims but forgets to become
    `authenticated`: queries run as the connection's owner, which RLS does not restrict."""

    @contextmanager
    def as_user(self, claims: Mapping[str, Any]) -> Iterator[psycopg.Connection[Row]]:
        """The user path without `set_config('role', ...)`."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "select set_config('request.jwt.claims', %s, true)", [json.dumps(dict(claims))]
            )
            yield conn


class NoSwitchStore(JobStore):
    """A store whose user path is the service path: no role, no claims."""

    @contextmanager
    def as_user(self, claims: Mapping[str, Any]) -> Iterator[psycopg.Connection[Row]]:
        """A plain pooled connection in a transaction."""
        with self.pool.connection() as conn, conn.transaction():
            yield conn


@pytest.mark.parametrize("store_class", [ClaimsWithoutRoleStore, NoSwitchStore])
def test_isolation_check_fails_when_the_role_switch_is_missing(
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    database_url: str,
    store_class: type[JobStore],
) -> None:
    """RLS is the read barrier: with a user path that does not switch to `authenticated`, the
    same isolation check fails because B reads A's job by id. (GET /jobs keeps its own
    `user_id` predicate for the index, so the leak shows on GET /jobs/{id} first.)"""
    broken = store_class(database_url, max_size=2)
    try:
        sync_definitions(broken)
        client = make_client(store=broken)
        with pytest.raises(AssertionError, match=r"GET /jobs/\{id\} leaked A's job to B"):
            assert_users_isolated(client, make_user(), make_user())
    finally:
        broken.close()


def test_real_user_path_runs_as_authenticated_with_the_callers_claims(
    database_url: str, make_user: Callable[..., ApiUser]
) -> None:
    """What the user path does inside its transaction: role `authenticated`, the claims set,
    and `auth.uid()` naming the caller; nothing of it survives on the pooled connection."""
    user = make_user()
    claims = {"sub": user.user_id, "role": "authenticated", "aud": "authenticated"}
    store = JobStore(database_url, min_size=1, max_size=1)  # one connection: reuse is certain
    try:
        with store.as_user(claims) as conn:
            inside = conn.execute(
                "select pg_backend_pid() as pid, current_user as role, auth.uid()::text as uid,"
                " current_setting('request.jwt.claims') as claims"
            ).fetchone()
        with store.pool.connection() as conn:
            after = conn.execute(
                "select pg_backend_pid() as pid, current_user as role,"
                " current_setting('request.jwt.claims', true) as claims"
            ).fetchone()
    finally:
        store.close()
    assert inside is not None and after is not None
    assert inside["role"] == "authenticated"
    assert inside["uid"] == user.user_id
    assert json.loads(inside["claims"]) == claims
    assert after["pid"] == inside["pid"]
    assert after["role"] != "authenticated"
    assert not after["claims"]
