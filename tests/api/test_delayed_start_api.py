"""POST /workflows/start with `start_at` or `delay_seconds` on the real app and real
PostgreSQL (Prefect out of reach: the closed-port starter): the job is pending with its
`scheduled_for`, bad times are 422s naming the field with no row written, and an
Idempotency-Key replay answers the same job."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from waiting import wait_until

if TYPE_CHECKING:
    from conftest import ApiUser

START = {"workflow_id": "demo_offline_v1", "input_data": {"text": "hello"}}


def job_count(db: psycopg.Connection[Any]) -> int:
    """How many jobs exist (service view)."""
    row = db.execute("select count(*) from public.jobs").fetchone()
    assert row is not None
    return int(row[0])


def when(text: str | None) -> datetime | None:
    """A JSON time as an aware datetime."""
    return None if text is None else datetime.fromisoformat(text)


def test_delay_seconds_makes_a_pending_job_scheduled_that_far_after_its_creation(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """201 with `scheduled_for` = created_at + delay_seconds (one database clock); the job is
    pending and GET /jobs/{id} and GET /jobs show the same scheduled_for."""
    user = make_user()
    answer = client.post(
        "/workflows/start", json={**START, "delay_seconds": 90.5}, headers=user.headers
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "pending"
    scheduled, created = when(body["scheduled_for"]), when(body["created_at"])
    assert scheduled is not None and created is not None
    assert scheduled - created == timedelta(seconds=90.5)
    job = client.get(f"/jobs/{body['job_id']}", headers=user.headers).json()
    assert job["status"] == "pending" and when(job["scheduled_for"]) == scheduled
    listed = client.get("/jobs", headers=user.headers).json()["jobs"]
    assert [when(j["scheduled_for"]) for j in listed] == [scheduled]
    row = db.execute(
        "select scheduled_for, status from public.jobs where id = %s", (body["job_id"],)
    ).fetchone()
    assert row == (scheduled, "pending")


def test_start_at_with_an_offset_is_that_instant(
    client: TestClient, make_user: Callable[..., ApiUser]
) -> None:
    """A start_at written with a +01:00 offset is stored as the same instant; a job started
    without either field has scheduled_for null."""
    user = make_user()
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    local = at.astimezone(timezone(timedelta(hours=1))).isoformat()
    answer = client.post(
        "/workflows/start", json={**START, "start_at": local}, headers=user.headers
    )
    assert answer.status_code == 201, answer.text
    assert when(answer.json()["scheduled_for"]) == at
    plain = client.post("/workflows/start", json=START, headers=user.headers).json()
    assert (
        client.get(f"/jobs/{plain['job_id']}", headers=user.headers).json()["scheduled_for"] is None
    )


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


BAD_TIMES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("both", {"start_at": _in(60), "delay_seconds": 60}, ["body.start_at", "body.delay_seconds"]),
    ("naive", {"start_at": "2030-01-01T10:00:00"}, ["body.start_at"]),
    ("past", {"start_at": _in(-3600)}, ["body.start_at"]),
    ("start_at beyond the horizon", {"start_at": _in(31 * 24 * 3600)}, ["body.start_at"]),
    ("delay beyond the horizon", {"delay_seconds": 31 * 24 * 3600}, ["body.delay_seconds"]),
    ("start_at a number", {"start_at": 1900000000}, ["body.start_at"]),
    ("start_at not a time", {"start_at": "tomorrow"}, ["body.start_at"]),
    ("start_at a date only", {"start_at": "2030-01-01"}, ["body.start_at"]),
    ("start_at a digit string", {"start_at": "1900000000"}, ["body.start_at"]),
    ("start_at not a date", {"start_at": "2030-02-30T10:00:00Z"}, ["body.start_at"]),
    ("delay a string", {"delay_seconds": "5"}, ["body.delay_seconds"]),
    ("delay a boolean", {"delay_seconds": True}, ["body.delay_seconds"]),
    ("delay zero", {"delay_seconds": 0}, ["body.delay_seconds"]),
    ("delay negative", {"delay_seconds": -1}, ["body.delay_seconds"]),
]


@pytest.mark.parametrize(("case", "fields", "locations"), BAD_TIMES, ids=[c[0] for c in BAD_TIMES])
def test_a_bad_start_time_is_a_422_naming_the_field(
    client: TestClient,
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
    case: str,
    fields: dict[str, Any],
    locations: list[str],
) -> None:
    """Both fields, a naive or past start_at, either beyond MAX_START_DELAY_SECONDS (30 days
    by default), or a value of the wrong type: 422 `invalid_request` whose details name the
    field(s), and no job is written."""
    user = make_user()
    before = job_count(db)
    answer = client.post("/workflows/start", json={**START, **fields}, headers=user.headers)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert [d["location"] for d in error["details"]] == locations
    assert job_count(db) == before


def test_the_horizon_is_the_max_start_delay_setting(
    make_client: Callable[..., TestClient], make_user: Callable[..., ApiUser]
) -> None:
    """MAX_START_DELAY_SECONDS=100: a delay of 100 s starts, 101 s is a 422 naming
    body.delay_seconds whose message says the limit."""
    client = make_client(max_start_delay_seconds=100)
    user = make_user()
    ok = client.post("/workflows/start", json={**START, "delay_seconds": 100}, headers=user.headers)
    far = client.post(
        "/workflows/start", json={**START, "delay_seconds": 101}, headers=user.headers
    )
    assert ok.status_code == 201, ok.text
    assert far.status_code == 422
    detail = far.json()["error"]["details"][0]
    assert detail["location"] == "body.delay_seconds" and "100" in detail["message"]


def test_a_start_at_just_passed_starts_at_once(
    client: TestClient, make_user: Callable[..., ApiUser]
) -> None:
    """A start_at within the 5-s grace in the past is accepted: the job is pending with that
    scheduled_for (its flow run starts at once)."""
    user = make_user()
    at = datetime.now(UTC) - timedelta(seconds=2)
    answer = client.post(
        "/workflows/start", json={**START, "start_at": at.isoformat()}, headers=user.headers
    )
    assert answer.status_code == 201, answer.text
    assert when(answer.json()["scheduled_for"]) == at


def test_idempotency_key_replays_a_delayed_start(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """The same key and body: 200 with the same job and the same scheduled_for (a
    delay_seconds replay does not move it); another delay with that key is a 409; the same
    start_at written with another offset is the same body."""
    user = make_user()
    key = {**user.headers, "Idempotency-Key": "delayed-1"}
    first = client.post("/workflows/start", json={**START, "delay_seconds": 600}, headers=key)
    again = client.post("/workflows/start", json={**START, "delay_seconds": 600}, headers=key)
    other = client.post("/workflows/start", json={**START, "delay_seconds": 601}, headers=key)
    assert first.status_code == 201 and again.status_code == 200, again.text
    assert again.json() == first.json()
    assert other.status_code == 409

    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    key2 = {**user.headers, "Idempotency-Key": "delayed-2"}
    z = client.post("/workflows/start", json={**START, "start_at": at.isoformat()}, headers=key2)
    shifted = at.astimezone(timezone(timedelta(hours=-5))).isoformat()
    same = client.post("/workflows/start", json={**START, "start_at": shifted}, headers=key2)
    assert z.status_code == 201 and same.status_code == 200, same.text
    assert same.json()["job_id"] == z.json()["job_id"]


def test_a_replay_after_its_start_at_passed_answers_the_same_job(
    client: TestClient, make_user: Callable[..., ApiUser]
) -> None:
    """A start_at 3 s ago (inside the grace) with a key creates the job; replayed once that
    time is more than 5 s past, the same key and body answer 200 with that job (not a 422),
    while the same body without the key is a 422 naming body.start_at."""
    user = make_user()
    at = (datetime.now(UTC) - timedelta(seconds=3)).isoformat()
    key = {**user.headers, "Idempotency-Key": "delayed-past"}
    first = client.post("/workflows/start", json={**START, "start_at": at}, headers=key)
    assert first.status_code == 201, first.text
    wait_until(
        lambda: datetime.now(UTC) > datetime.fromisoformat(at) + timedelta(seconds=5.5),
        30,
        "start_at to be past the grace",
    )
    replay = client.post("/workflows/start", json={**START, "start_at": at}, headers=key)
    fresh = client.post("/workflows/start", json={**START, "start_at": at}, headers=user.headers)
    assert replay.status_code == 200, replay.text
    assert replay.json()["job_id"] == first.json()["job_id"]
    assert fresh.status_code == 422
    assert fresh.json()["error"]["details"][0]["location"] == "body.start_at"
