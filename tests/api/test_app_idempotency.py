"""Idempotency-Key on POST /workflows/start, against the real app and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from fastapi.testclient import TestClient

if TYPE_CHECKING:
    # Annotation only: at run time several conftest modules share the name `conftest`.
    from conftest import ApiUser

BODY = {"workflow_id": "demo_offline_v1", "input_data": {"text": "once"}}


def post(
    client: TestClient, user: ApiUser, body: Any, key: str | None
) -> tuple[int, dict[str, Any]]:
    """POST /workflows/start with an optional Idempotency-Key; (status, body)."""
    headers = dict(user.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    response = client.post("/workflows/start", json=body, headers=headers)
    return response.status_code, response.json()


def jobs_with_key(db: psycopg.Connection[Any], key: str) -> list[tuple[str, str]]:
    """(id, user_id) of every job stored with this idempotency key."""
    return [
        (str(r[0]), str(r[1]))
        for r in db.execute(
            "select id, user_id from public.jobs where idempotency_key = %s order by created_at",
            [key],
        ).fetchall()
    ]


def created_events(db: psycopg.Connection[Any]) -> int:
    """How many `created` events exist."""
    row = db.execute("select count(*) from public.job_events where kind = 'created'").fetchone()
    assert row is not None
    return int(row[0])


def test_replay_returns_the_same_job(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """Same key and body: 201 the first time, 200 with the same job on every replay; one
    row, one `created` event."""
    user = make_user()
    first_status, first = post(client, user, BODY, "order-42")
    replays = [post(client, user, BODY, "order-42") for _ in range(2)]

    assert first_status == 201
    assert replays == [(200, first), (200, first)]
    assert jobs_with_key(db, "order-42") == [(first["job_id"], user.user_id)]
    assert created_events(db) == 1


def test_replay_matches_the_body_by_content_not_by_bytes(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """Key order and whitespace do not make a different request."""
    user = make_user()
    _, first = post(client, user, BODY, "k")
    response = client.post(
        "/workflows/start",
        content=b'{ "input_data": {"text": "once"},\n  "workflow_id": "demo_offline_v1" }',
        headers={**user.headers, "Idempotency-Key": "k", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == first
    assert len(jobs_with_key(db, "k")) == 1


@pytest.mark.parametrize(
    "other_body",
    [
        {"workflow_id": "demo_offline_v1", "input_data": {"text": "twice"}},
        {
            "workflow_id": "audio_transcription_v1",
            "input_data": {
                "audio_url": "https://example.com/a.mp3",
                "callback_url": "https://example.com/h",
            },
        },
    ],
    ids=["other-input", "other-workflow"],
)
def test_same_key_with_another_body_is_409(
    client: TestClient,
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
    other_body: dict[str, Any],
) -> None:
    """Same key, different request: 409 in the error shape, and nothing new is written."""
    user = make_user()
    _, first = post(client, user, BODY, "k")
    status, body = post(client, user, other_body, "k")

    assert status == 409
    assert set(body) == {"error"}
    assert body["error"]["code"] == "conflict"
    assert "Idempotency-Key" in body["error"]["message"]
    assert body["error"]["details"] == {"job_id": first["job_id"]}
    assert jobs_with_key(db, "k") == [(first["job_id"], user.user_id)]
    assert created_events(db) == 1
    # The original request still replays.
    assert post(client, user, BODY, "k") == (200, first)


def test_same_key_from_another_user_is_an_independent_job(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """Keys belong to the user who sent them: B's identical request is B's own new job."""
    a, b = make_user(), make_user()
    a_status, a_job = post(client, a, BODY, "shared")
    b_status, b_job = post(client, b, BODY, "shared")

    assert (a_status, b_status) == (201, 201)
    assert a_job["job_id"] != b_job["job_id"]
    assert sorted(jobs_with_key(db, "shared")) == sorted(
        [(a_job["job_id"], a.user_id), (b_job["job_id"], b.user_id)]
    )
    assert post(client, b, BODY, "shared") == (200, b_job)


def test_without_a_key_every_request_is_a_new_job(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """No Idempotency-Key: identical requests start separate jobs."""
    user = make_user()
    ids = {post(client, user, BODY, None)[1]["job_id"] for _ in range(3)}
    assert len(ids) == 3
    assert created_events(db) == 3


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_key_outside_the_allowed_length_is_422(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any], key: str
) -> None:
    """An empty or over-long Idempotency-Key is refused, naming the header; nothing written."""
    status, body = post(client, make_user(), BODY, key)
    assert status == 422
    assert body["error"]["code"] == "invalid_request"
    assert [d["location"] for d in body["error"]["details"]] == ["header.Idempotency-Key"]
    assert created_events(db) == 0


def test_concurrent_replays_create_one_job(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """Eight simultaneous requests with one key: one 201, seven 200, all the same job, one
    row (the unique index decides; the losers read the winner's row)."""
    user = make_user()
    barrier = threading.Barrier(8)

    def send(_: int) -> tuple[int, dict[str, Any]]:
        barrier.wait()
        return post(client, user, BODY, "race")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, range(8)))

    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 7 + [201]
    assert len({body["job_id"] for _, body in results}) == 1
    assert len(jobs_with_key(db, "race")) == 1
    assert created_events(db) == 1
