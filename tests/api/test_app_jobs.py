"""The real app on real PostgreSQL with real tokens: starting jobs, reading them, listing them,
workflows, health and the OpenAPI document."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from engine.db.store import JobStore, Transition
from engine.dispatch import RunStarter
from engine.jobs.transitions import JobStatus

if TYPE_CHECKING:
    # Annotation only: at run time several conftest modules share the name `conftest`.
    from conftest import ApiUser

#: Every field of GET /jobs/{id}, as SPEC.md's jobs row with `id` named `job_id`, and why a
#: failed job failed (`error_kind`).
JOB_FIELDS = {
    "job_id",
    "workflow_id",
    "workflow_version",
    "status",
    "current_step_id",
    "input_data",
    "step_data",
    "final_result",
    "error_message",
    "retry_count",
    "max_retries",
    "next_retry_at",
    "state_history",
    "created_at",
    "started_at",
    "last_updated_at",
    "completed_at",
    "error_kind",
    "waiting_for",
    "deadline_at",
    "parent_job_id",
    "parent_step_id",
    "callback",
    "scheduled_for",
}

AUDIO_INPUT = {
    "audio_url": "https://example.com/a.mp3",
    "callback_url": "https://example.com/hook",
}


def row_counts(db: psycopg.Connection[Any]) -> tuple[int, int]:
    """(jobs, job_events) row counts, read as the service."""
    row = db.execute(
        "select (select count(*) from public.jobs), (select count(*) from public.job_events)"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def start(
    client: TestClient, user: ApiUser, workflow_id: str = "demo_offline_v1", **input_data: Any
) -> dict[str, Any]:
    """Start a job and return the 201 body."""
    response = client.post(
        "/workflows/start",
        json={"workflow_id": workflow_id, "input_data": input_data or {"text": "hello"}},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_error_shape(body: Any, code: str) -> dict[str, Any]:
    """The uniform error body `{error: {code, message, details}}` with this code."""
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


# --- POST /workflows/start ---------------------------------------------------------------------


def test_start_records_a_pending_job_for_the_caller(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """201 with {job_id, status pending, created_at, scheduled_for null}; the row belongs to
    the caller, holds the input, has a `created` event, and (Prefect being unreachable) no
    flow run id."""
    user = make_user()
    response = client.post(
        "/workflows/start",
        json={"workflow_id": "demo_offline_v1", "input_data": {"text": "hello"}},
        headers=user.headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"job_id", "status", "created_at", "scheduled_for"}
    assert body["status"] == "pending" and body["scheduled_for"] is None
    assert response.headers["location"] == f"/jobs/{body['job_id']}"
    row = db.execute(
        "select user_id::text, workflow_id, status, input_data, created_at, prefect_flow_run_id"
        " from public.jobs where id = %s",
        [body["job_id"]],
    ).fetchone()
    assert row is not None
    user_id, workflow_id, status, input_data, created_at, flow_run_id = row
    assert (user_id, workflow_id, status, input_data) == (
        user.user_id,
        "demo_offline_v1",
        "pending",
        {"text": "hello"},
    )
    assert datetime.fromisoformat(body["created_at"]) == created_at
    assert flow_run_id is None
    events = db.execute(
        "select kind, status, user_id::text from public.job_events where job_id = %s",
        [body["job_id"]],
    ).fetchall()
    assert events == [("created", "pending", user.user_id)]


def test_unreachable_prefect_fails_fast(closed_starter: RunStarter) -> None:
    """The closed-port starter gives up at once (no client retries): None, and unhealthy.

    Not a timing assertion: it guards the precondition the other tests rely on, that
    PREFECT_CLIENT_MAX_RETRIES=0 reaches the client, by checking the setting itself.
    """
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES

    assert PREFECT_CLIENT_MAX_RETRIES.value() == 0
    assert closed_starter.try_start(str(uuid.uuid4())) is None
    assert closed_starter.healthy() is False


def test_unknown_workflow_is_404_and_writes_nothing(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """A workflow id that does not exist: 404 in the error shape, no row."""
    user = make_user()
    response = client.post(
        "/workflows/start",
        json={"workflow_id": "no_such_workflow", "input_data": {}},
        headers=user.headers,
    )
    assert response.status_code == 404
    error = assert_error_shape(response.json(), "not_found")
    assert "no_such_workflow" in error["message"]
    assert row_counts(db) == (0, 0)


@pytest.mark.parametrize(
    ("workflow_id", "input_data", "expected"),
    [
        (
            "demo_offline_v1",
            {},
            {"/input_data/text": "'text' is a required property"},
        ),
        (
            "demo_offline_v1",
            {"text": 5},
            {"/input_data/text": "5 is not of type 'string'"},
        ),
        (
            "demo_offline_v1",
            {"text": ""},
            {"/input_data/text": "should be non-empty"},
        ),
        (
            "audio_transcription_v1",
            {"audio_url": "not a uri", "callback_url": 3, "extra": True},
            {
                "/input_data": "Additional properties are not allowed",
                "/input_data/audio_url": "is not a 'uri'",
                "/input_data/callback_url": "3 is not of type 'string'",
            },
        ),
    ],
    ids=["missing", "wrong-type", "too-short", "several"],
)
def test_input_schema_failures_list_each_pointer(
    client: TestClient,
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
    workflow_id: str,
    input_data: dict[str, Any],
    expected: dict[str, str],
) -> None:
    """input_data breaking the workflow's input_schema: 422 listing every failing JSON pointer
    under /input_data with its reason; nothing is written."""
    user = make_user()
    response = client.post(
        "/workflows/start",
        json={"workflow_id": workflow_id, "input_data": input_data},
        headers=user.headers,
    )
    assert response.status_code == 422
    error = assert_error_shape(response.json(), "invalid_input")
    details = error["details"]
    assert sorted(d["pointer"] for d in details) == sorted(expected)
    for detail in details:
        assert expected[detail["pointer"]] in detail["message"]
    assert row_counts(db) == (0, 0)


@pytest.mark.parametrize(
    ("body", "location", "error_type"),
    [
        ({"input_data": {"text": "x"}}, "body.workflow_id", "missing"),
        ({"workflow_id": "", "input_data": {"text": "x"}}, "body.workflow_id", "string_too_short"),
        ({"workflow_id": 7, "input_data": {"text": "x"}}, "body.workflow_id", "string_type"),
        ({"workflow_id": "demo_offline_v1", "input_data": [1]}, "body.input_data", "dict_type"),
        ({"workflow_id": "demo_offline_v1", "input_data": "x"}, "body.input_data", "dict_type"),
        (
            {"workflow_id": "demo_offline_v1", "input_data": {"text": "x"}, "user_id": "me"},
            "body.user_id",
            "extra_forbidden",
        ),
        ([], "body", "model_attributes_type"),
    ],
    ids=[
        "no-workflow",
        "empty-workflow",
        "int-workflow",
        "list-input",
        "str-input",
        "extra",
        "list",
    ],
)
def test_malformed_start_body_is_422_naming_the_field(
    client: TestClient,
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
    body: Any,
    location: str,
    error_type: str,
) -> None:
    """A body that is not a start request: 422 whose details name the field; nothing written.

    An extra field such as `user_id` is refused rather than ignored, so no one can believe
    they chose the job's owner."""
    user = make_user()
    response = client.post("/workflows/start", json=body, headers=user.headers)
    assert response.status_code == 422
    error = assert_error_shape(response.json(), "invalid_request")
    assert {"location": location, "type": error_type} in [
        {"location": d["location"], "type": d["type"]} for d in error["details"]
    ]
    assert row_counts(db) == (0, 0)


def test_non_json_body_is_422(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """A body that is not JSON at all is refused in the error shape; nothing written."""
    user = make_user()
    response = client.post(
        "/workflows/start",
        content=b"{not json",
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert_error_shape(response.json(), "invalid_request")
    assert row_counts(db) == (0, 0)


def test_body_over_the_limit_is_413_and_writes_nothing(
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
) -> None:
    """With API_MAX_BODY_BYTES=256 a larger start request is 413 in the error shape, whether
    it declares its length or streams it chunked; a small one still works."""
    client = make_client(api_max_body_bytes=256)
    user = make_user()
    big = {"workflow_id": "demo_offline_v1", "input_data": {"text": "x" * 1000}}

    declared = client.post("/workflows/start", json=big, headers=user.headers)
    assert declared.status_code == 413
    assert assert_error_shape(declared.json(), "request_too_large")["details"] == {"max_bytes": 256}

    def chunks() -> Any:
        yield b'{"workflow_id": "demo_offline_v1", "input_data": {"text": "'
        for _ in range(10):
            yield b"x" * 100
        yield b'"}}'

    chunked = client.post(
        "/workflows/start",
        content=chunks(),
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert chunked.status_code == 413
    assert_error_shape(chunked.json(), "request_too_large")
    assert row_counts(db) == (0, 0)

    start(client, user, text="small")
    assert row_counts(db) == (1, 1)


# --- GET /jobs/{id} ----------------------------------------------------------------------------


def test_get_job_returns_every_spec_field(
    client: TestClient, make_user: Callable[..., ApiUser]
) -> None:
    """GET /jobs/{id} answers the full job as SPEC.md shows it, and nothing internal (no
    user_id, flow run id, idempotency key or request hash)."""
    user = make_user()
    started = start(client, user, text="hello")

    response = client.get(f"/jobs/{started['job_id']}", headers=user.headers)

    assert response.status_code == 200
    job = response.json()
    assert set(job) == JOB_FIELDS
    assert job["job_id"] == started["job_id"]
    assert job["created_at"] == started["created_at"]
    assert job["workflow_id"] == "demo_offline_v1"
    assert job["status"] == "pending"
    assert job["input_data"] == {"text": "hello"}
    assert job["step_data"] == {}
    assert job["final_result"] is None and job["error_message"] is None
    assert job["current_step_id"] is None
    assert (job["retry_count"], job["max_retries"], job["next_retry_at"]) == (0, 3, None)
    assert [entry["status"] for entry in job["state_history"]] == ["pending"]
    assert job["started_at"] is None and job["completed_at"] is None
    assert job["last_updated_at"] is not None


def test_get_job_with_malformed_id_is_422(
    client: TestClient, make_user: Callable[..., ApiUser]
) -> None:
    """A job id that is not a UUID is a 422 naming the path parameter (never a 500 from SQL)."""
    response = client.get("/jobs/not-a-uuid", headers=make_user().headers)
    assert response.status_code == 422
    error = assert_error_shape(response.json(), "invalid_request")
    assert [d["location"] for d in error["details"]] == ["path.job_id"]


def test_missing_job_is_404(client: TestClient, make_user: Callable[..., ApiUser]) -> None:
    """A well-formed id that names no job: 404 in the error shape."""
    response = client.get(f"/jobs/{uuid.uuid4()}", headers=make_user().headers)
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")


# --- GET /jobs ---------------------------------------------------------------------------------


def test_list_pages_newest_first_with_cursor(
    client: TestClient, make_user: Callable[..., ApiUser]
) -> None:
    """Five jobs with limit=2: three pages (2, 2, 1), newest first, no duplicates, every job
    once, next_cursor null on the last page."""
    user = make_user()
    created = [start(client, user, text=f"job {i}")["job_id"] for i in range(5)]

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        response = client.get("/jobs", params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"jobs", "next_cursor"}
        assert all(set(job) == JOB_FIELDS for job in body["jobs"])
        pages.append([job["job_id"] for job in body["jobs"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 5, "pagination does not end"

    assert [len(page) for page in pages] == [2, 2, 1]
    listed = [job_id for page in pages for job_id in page]
    assert listed == list(reversed(created))


def test_list_without_limit_returns_everything_under_the_default(
    client: TestClient, make_user: Callable[..., ApiUser]
) -> None:
    """No parameters: one page with every job and no cursor; an empty list for a new user."""
    user = make_user()
    created = [start(client, user, text=str(i))["job_id"] for i in range(3)]
    body = client.get("/jobs", headers=user.headers).json()
    assert [job["job_id"] for job in body["jobs"]] == list(reversed(created))
    assert body["next_cursor"] is None
    assert client.get("/jobs", headers=make_user().headers).json() == {
        "jobs": [],
        "next_cursor": None,
    }


def test_list_filters_by_status_and_workflow(
    client: TestClient, make_user: Callable[..., ApiUser], job_store: JobStore
) -> None:
    """status and workflow_id filters, alone and together, also across pages."""
    user = make_user()
    demo = [start(client, user, text=str(i))["job_id"] for i in range(3)]
    audio = [start(client, user, "audio_transcription_v1", **AUDIO_INPUT)["job_id"]]
    # Move one demo job on through the engine's own transition path.
    assert job_store.transition(demo[1], Transition(status=JobStatus.RUNNING, step_id="receive"))

    def listed(**params: Any) -> list[str]:
        response = client.get("/jobs", params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        return [job["job_id"] for job in response.json()["jobs"]]

    assert listed(status="running") == [demo[1]]
    assert listed(status="pending") == [audio[0], demo[2], demo[0]]
    assert listed(status="completed") == []
    assert listed(workflow_id="audio_transcription_v1") == audio
    assert listed(workflow_id="demo_offline_v1") == [demo[2], demo[1], demo[0]]
    assert listed(workflow_id="demo_offline_v1", status="pending") == [demo[2], demo[0]]
    assert listed(workflow_id="nope") == []

    first = client.get(
        "/jobs", params={"workflow_id": "demo_offline_v1", "limit": 1}, headers=user.headers
    ).json()
    rest = client.get(
        "/jobs",
        params={"workflow_id": "demo_offline_v1", "limit": 10, "cursor": first["next_cursor"]},
        headers=user.headers,
    ).json()
    assert [j["job_id"] for j in first["jobs"] + rest["jobs"]] == [demo[2], demo[1], demo[0]]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "location"),
    [
        ({"limit": 101}, "query.limit"),
        ({"limit": 0}, "query.limit"),
        ({"limit": "ten"}, "query.limit"),
        ({"status": "done"}, "query.status"),
        ({"cursor": "x" * 201}, "query.cursor"),
    ],
    ids=["limit-over-100", "limit-zero", "limit-text", "unknown-status", "cursor-too-long"],
)
def test_list_rejects_bad_parameters(
    client: TestClient,
    make_user: Callable[..., ApiUser],
    params: dict[str, Any],
    location: str,
) -> None:
    """Out-of-range or malformed query parameters: 422 naming the parameter."""
    response = client.get("/jobs", params=params, headers=make_user().headers)
    assert response.status_code == 422
    error = assert_error_shape(response.json(), "invalid_request")
    assert location in [d["location"] for d in error["details"]]


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "!!!",
        "WzEsMl0",  # [1,2]
        "eyJhIjoxfQ",  # {"a":1}
        "WyJ5ZXN0ZXJkYXkiLCJub3QtYS11dWlkIl0",  # ["yesterday","not-a-uuid"]
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwibm90LWEtdXVpZCJd",  # [date, "not-a-uuid"]
    ],
)
def test_list_rejects_a_bad_cursor_naming_it(
    client: TestClient, make_user: Callable[..., ApiUser], cursor: str
) -> None:
    """A cursor GET /jobs did not hand out: 422 whose details name `cursor` (never a 500)."""
    response = client.get("/jobs", params={"cursor": cursor}, headers=make_user().headers)
    assert response.status_code == 422
    error = assert_error_shape(response.json(), "invalid_request")
    assert [d["location"] for d in error["details"]] == ["query.cursor"]


# --- GET /workflows, /health, /openapi.json ----------------------------------------------------


def test_workflows_lists_shipped_workflows_with_input_schemas(
    client: TestClient, make_user: Callable[..., ApiUser]
) -> None:
    """Both shipped workflows are listed (read under RLS as `authenticated`) with the input
    schema their input_data must satisfy."""
    response = client.get("/workflows", headers=make_user().headers)
    assert response.status_code == 200
    workflows = {w["id"]: w for w in response.json()["workflows"]}
    assert {"demo_offline_v1", "audio_transcription_v1"} <= set(workflows)
    assert workflows["demo_offline_v1"]["input_schema"]["required"] == ["text"]
    assert workflows["audio_transcription_v1"]["input_schema"]["required"] == [
        "audio_url",
        "callback_url",
    ]
    assert all(w["description"] for w in workflows.values())


def test_workflows_needs_a_token(client: TestClient) -> None:
    """The workflow list is for signed-in users only."""
    response = client.get("/workflows")
    assert response.status_code == 401
    assert_error_shape(response.json(), "unauthorized")


#: /health's rate-limit part without REDIS_URL (tests/api/test_ratelimit_fallback.py: Redis).
MEMORY_RATE_LIMIT = {"storage": "memory", "scope": "local", "fallback_since": None}


def test_health_reports_prefect_down(client: TestClient) -> None:
    """Database up, Prefect unreachable: 200, status degraded, prefect false; no token needed."""
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "database": True,
        "prefect": False,
        "rate_limit": MEMORY_RATE_LIMIT,
    }


def test_health_reports_prefect_up(
    make_client: Callable[..., TestClient], prefect_api_url: str
) -> None:
    """With a starter at the running Prefect server: status ok, both true."""
    starter = RunStarter.own_client(
        "run-workflow/run-workflow", api_url=prefect_api_url, fail_fast=True
    )
    try:
        response = make_client(starter=starter).get("/health")
    finally:
        starter.close()
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": True,
        "prefect": True,
        "rate_limit": MEMORY_RATE_LIMIT,
    }


def test_openapi_documents_the_endpoints_and_the_start_example(client: TestClient) -> None:
    """The OpenAPI document has the four job/workflow paths, the Bearer scheme, the request
    example and the uniform error body."""
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    assert "post" in paths["/workflows/start"]
    assert "get" in paths["/jobs/{job_id}"]
    assert "get" in paths["/jobs"]
    assert "get" in paths["/workflows"]
    schemas = doc["components"]["schemas"]
    example = schemas["StartRequest"]["examples"][0]
    assert example["workflow_id"] == "audio_transcription_v1"
    assert set(example["input_data"]) == {"audio_url", "callback_url"}
    assert doc["components"]["securitySchemes"]["SupabaseJWT"]["scheme"] == "bearer"
    start_responses = paths["/workflows/start"]["post"]["responses"]
    assert {"201", "401", "404", "409", "413", "422", "429"} <= set(start_responses)
    assert "ErrorBody" in schemas
    assert set(schemas["Job"]["properties"]) == JOB_FIELDS
