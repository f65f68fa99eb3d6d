"""on_finish through POST /workflows/start: the per-job URL overrides the definition's and is
stored resolved (no secret); a private or malformed URL is a 422 naming `on_finish.url`,
following HTTP_ALLOWLIST; a replay with the same key and callback is the same job."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from conftest import ApiUser

WORKFLOW = "demo_offline_v1"
DEFINED = {"url": "https://93.184.215.14/defined", "secret_env": "CB_SECRET", "max_attempts": 3}


@pytest.fixture
def with_target(db: psycopg.Connection[Any]) -> dict[str, Any]:
    """demo_offline_v1 gets a version whose definition has an on_finish target."""
    row = db.execute("select definition from public.workflows where id = %s", [WORKFLOW]).fetchone()
    assert row is not None
    definition = {**row[0], "on_finish": DEFINED}
    db.execute(
        "update public.workflows set definition = %s where id = %s", [Jsonb(definition), WORKFLOW]
    )
    return definition


def _start(client: TestClient, user: ApiUser, **body: Any) -> Any:
    return client.post(
        "/workflows/start",
        json={"workflow_id": WORKFLOW, "input_data": {"text": "hi"}, **body},
        headers=user.headers,
    )


def _stored(db: psycopg.Connection[Any], job_id: str) -> Any:
    row = db.execute("select on_finish from public.jobs where id = %s", [job_id]).fetchone()
    assert row is not None
    return row[0]


def test_the_start_stores_the_resolved_target(
    client: TestClient,
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
    with_target: dict[str, Any],
) -> None:
    """Without on_finish the job gets the definition's target; with one, its URL replaces the
    definition's and the rest stays; the stored target names the secret's variable only."""
    user = make_user()
    plain = _start(client, user)
    own = _start(client, user, on_finish={"url": "https://93.184.215.14/mine?job=1"})
    assert plain.status_code == own.status_code == 201, (plain.text, own.text)

    defaults = {"retry_delay_seconds": 10.0}
    assert _stored(db, plain.json()["job_id"]) == {**DEFINED, **defaults}
    assert _stored(db, own.json()["job_id"]) == {
        **DEFINED,
        **defaults,
        "url": "https://93.184.215.14/mine?job=1",
    }


def test_a_workflow_without_target_and_a_start_without_one_store_none(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """No target anywhere: jobs.on_finish is null; a start's own URL alone is a target."""
    user = make_user()
    plain = _start(client, user)
    own = _start(client, user, on_finish={"url": "https://93.184.215.14/only"})
    assert _stored(db, plain.json()["job_id"]) is None
    assert _stored(db, own.json()["job_id"])["url"] == "https://93.184.215.14/only"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:8080/cb", "address not allowed: 127.0.0.1"),
        ("http://10.0.0.5/cb", "address not allowed: 10.0.0.5"),
        ("http://169.254.169.254/latest/meta-data", "address not allowed: 169.254.169.254"),
        ("http://localhost/cb", "address not allowed: localhost"),
        ("http://[::ffff:192.168.0.1]/cb", "address not allowed: ::ffff:192.168.0.1"),
        ("ftp://93.184.215.14/cb", "must be an absolute http:// or https:// URL"),
        ("not a url", "must not contain whitespace"),
        ("https://user:pw@93.184.215.14/cb", "must not carry credentials"),
    ],
)
def test_a_private_or_malformed_url_is_a_422_naming_the_field(
    client: TestClient,
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
    url: str,
    message: str,
) -> None:
    """422 whose details name body.on_finish.url and say why; no job is written."""
    response = _start(client, make_user(), on_finish={"url": url})

    assert response.status_code == 422, response.text
    (detail,) = response.json()["error"]["details"]
    assert detail["location"] == "body.on_finish.url"
    assert message in detail["message"]
    assert db.execute("select count(*) from public.jobs").fetchone() == (0,)


def test_the_allowlist_permits_a_local_receiver(
    make_client: Callable[..., TestClient], make_user: Callable[..., ApiUser]
) -> None:
    """With HTTP_ALLOWLIST=127.0.0.1 (a local setup), a loopback callback is accepted."""
    client = make_client(http_allowlist="127.0.0.1")
    response = _start(client, make_user(), on_finish={"url": "http://127.0.0.1:8080/cb"})
    assert response.status_code == 201, response.text


def test_a_definitions_private_target_is_refused_at_start(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """A definition whose target the policy refuses: 422 naming workflow.on_finish.url."""
    row = db.execute("select definition from public.workflows where id = %s", [WORKFLOW]).fetchone()
    assert row is not None
    definition = {**row[0], "on_finish": {"url": "http://10.0.0.5/cb"}}
    db.execute(
        "update public.workflows set definition = %s where id = %s", [Jsonb(definition), WORKFLOW]
    )
    response = _start(client, make_user())
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["location"] == "workflow.on_finish.url"


def test_an_idempotent_replay_keys_on_the_callback_too(
    client: TestClient, make_user: Callable[..., ApiUser]
) -> None:
    """The same key and body (callback included) is the same job; another callback URL under
    the same key is a conflict."""
    user = make_user()
    key = {"Idempotency-Key": "cb-replay"}
    body = {"workflow_id": WORKFLOW, "input_data": {"text": "hi"}}
    cb = {"on_finish": {"url": "https://93.184.215.14/a"}}
    first = client.post("/workflows/start", json={**body, **cb}, headers={**user.headers, **key})
    again = client.post("/workflows/start", json={**body, **cb}, headers={**user.headers, **key})
    other = client.post(
        "/workflows/start",
        json={**body, "on_finish": {"url": "https://93.184.215.14/b"}},
        headers={**user.headers, **key},
    )
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert first.json()["job_id"] == again.json()["job_id"]


def test_the_job_body_shows_its_callbacks_delivery(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """GET /jobs/{id} and GET /jobs carry `callback`: null until the job ends, then the latest
    callback's status, attempts and last error as the outbox holds them."""
    user = make_user()
    job_id = _start(client, user, on_finish={"url": "https://93.184.215.14/cb"}).json()["job_id"]
    read = lambda: client.get(f"/jobs/{job_id}", headers=user.headers).json()  # noqa: E731
    assert read()["callback"] is None

    db.execute("update public.jobs set status = 'completed' where id = %s", [job_id])
    db.execute(
        "update public.job_callbacks set attempts = 2, last_error = 'receiver answered HTTP 503',"
        " response_code = 503 where job_id = %s",
        [job_id],
    )
    callback = read()["callback"]
    assert callback["status"] == "pending" and callback["attempts"] == 2
    assert callback["last_error"] == "receiver answered HTTP 503"
    assert callback["response_code"] == 503 and callback["delivered_at"] is None
    listed = client.get("/jobs", headers=user.headers).json()["jobs"]
    assert listed[0]["callback"] == callback
