"""The one identity check: a validly signed token whose user is gone (deleted, soft-deleted,
banned) is a 401 on every user route, and the per-process memory of answers is bounded in
time and size (api/identity.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.identity import UserDirectory, user_is_known
from engine.db.store import JobStore

if TYPE_CHECKING:
    # Annotation only: at run time several conftest modules share the name `conftest`.
    from conftest import ApiUser

START_BODY = {"workflow_id": "demo_offline_v1", "input_data": {"text": "hi"}}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingLookup:
    """A lookup answering from a set of current users, counting its calls."""

    def __init__(self, *known: str) -> None:
        self.known = set(known)
        self.calls: list[str] = []

    def __call__(self, user_id: str) -> bool:
        self.calls.append(user_id)
        return user_id in self.known


def test_answers_are_remembered_for_the_cache_time_only() -> None:
    """Within cache_seconds a user is looked up once; after it, again (a deletion shows)."""
    clock, lookup = FakeClock(), CountingLookup("a")
    users = UserDirectory(lookup, cache_seconds=5, clock=clock)

    assert [users.is_known("a") for _ in range(3)] == [True, True, True]
    assert lookup.calls == ["a"]
    lookup.known.clear()
    clock.now += 4.9
    assert users.is_known("a") is True  # the documented staleness
    clock.now += 0.2
    assert users.is_known("a") is False
    assert lookup.calls == ["a", "a"]


def test_unknown_answers_are_remembered_too() -> None:
    """A flood of one unknown user's token costs one lookup per cache period."""
    clock, lookup = FakeClock(), CountingLookup()
    users = UserDirectory(lookup, cache_seconds=5, clock=clock)
    assert [users.is_known("gone") for _ in range(10)] == [False] * 10
    assert lookup.calls == ["gone"]


def test_zero_cache_looks_every_request_up() -> None:
    """cache_seconds=0 remembers nothing."""
    lookup = CountingLookup("a")
    users = UserDirectory(lookup, cache_seconds=0)
    assert [users.is_known("a") for _ in range(3)] == [True] * 3
    assert lookup.calls == ["a"] * 3


def test_memory_is_bounded_oldest_first() -> None:
    """Past max_entries the oldest answer is forgotten (and looked up again when asked)."""
    lookup = CountingLookup("a", "b", "c")
    users = UserDirectory(lookup, cache_seconds=60, max_entries=2, clock=FakeClock())
    for user in ("a", "b", "c"):
        users.is_known(user)
    users.is_known("c")
    users.is_known("a")
    assert lookup.calls == ["a", "b", "c", "a"]


def test_negative_cache_time_is_refused() -> None:
    """A negative cache time is a programming error."""
    with pytest.raises(ValueError, match="negative"):
        UserDirectory(CountingLookup(), cache_seconds=-1)


@pytest.mark.parametrize(
    ("change", "known"),
    [
        (None, True),
        ("delete from auth.users where id = %s", False),
        ("update auth.users set deleted_at = now() where id = %s", False),
        ("update auth.users set banned_until = now() + interval '1 day' where id = %s", False),
        ("update auth.users set banned_until = now() - interval '1 day' where id = %s", True),
    ],
    ids=["current", "deleted", "soft-deleted", "banned", "ban-over"],
)
def test_lookup_reads_auth_users(
    job_store: JobStore,
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
    change: str | None,
    known: bool,
) -> None:
    """A current user is known; a deleted, soft-deleted or banned one is not."""
    user = make_user()
    if change:
        db.execute(change, [user.user_id])
    assert user_is_known(job_store, user.user_id) is known
    assert user_is_known(job_store, str(uuid.uuid4())) is False


@pytest.mark.parametrize(
    "change",
    [
        "update auth.users set deleted_at = now() where id = %s",
        "update auth.users set banned_until = now() + interval '1 day' where id = %s",
    ],
    ids=["soft-deleted", "banned"],
)
def test_gone_users_are_refused_by_every_group(
    client: TestClient,
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
    change: str,
) -> None:
    """A soft-deleted or banned user's still-valid token reads nothing and starts nothing."""
    user = make_user()
    db.execute(change, [user.user_id])
    for response in (
        client.get("/jobs", headers=user.headers),
        client.get("/workflows", headers=user.headers),
        client.post("/workflows/start", json=START_BODY, headers=user.headers),
    ):
        assert response.status_code == 401, response.text
        assert response.json()["error"]["message"] == "token subject is not a known user"


def test_deletion_shows_at_once_without_a_cache(
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
) -> None:
    """AUTH_USER_CACHE_SECONDS=0: a user deleted between two requests gets 401 on the next."""
    client = make_client(auth_user_cache_seconds=0)
    user = make_user()
    assert client.get("/jobs", headers=user.headers).status_code == 200
    db.execute("delete from auth.users where id = %s", [user.user_id])
    assert client.get("/jobs", headers=user.headers).status_code == 401


def test_unknown_users_spend_the_anonymous_budget(
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
) -> None:
    """A gone user's token is a failed authentication: it spends the address's "anon" budget
    (429 once spent), like any other bad token."""
    client = make_client(rate_limits="anon=2/minute")
    user = make_user()
    db.execute("delete from auth.users where id = %s", [user.user_id])
    statuses = [client.get("/jobs", headers=user.headers).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
