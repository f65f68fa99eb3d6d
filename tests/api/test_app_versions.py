"""Versions through the API: a start runs the default version or the one asked for; a missing
version is a 404 naming it; a disabled workflow is refused; jobs and workflows show their
versions."""

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


@pytest.fixture
def second_version(db: psycopg.Connection[Any]) -> dict[str, Any]:
    """demo_offline_v1 gets version 2, whose input schema also requires `lang`."""
    definition = db.execute(
        "select definition from public.workflows where id = %s", [WORKFLOW]
    ).fetchone()
    assert definition is not None
    v2 = dict(definition[0])
    v2["input_schema"] = {**v2["input_schema"], "required": ["text", "lang"]}
    db.execute("update public.workflows set definition = %s where id = %s", [Jsonb(v2), WORKFLOW])
    return v2


def _start(client: TestClient, user: ApiUser, **body: Any) -> Any:
    return client.post(
        "/workflows/start",
        json={"workflow_id": WORKFLOW, "input_data": {"text": "hi"}, **body},
        headers=user.headers,
    )


def test_start_runs_the_default_version_or_the_one_asked_for(
    client: TestClient,
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
    second_version: dict[str, Any],
) -> None:
    """By default the latest version (whose schema needs `lang`: 422 without it); version 1
    on request; GET /jobs/{id} says which; after default_version = 1, a plain start runs 1."""
    user = make_user()
    refused = _start(client, user)
    assert refused.status_code == 422 and "lang" in refused.text
    latest = _start(client, user, input_data={"text": "hi", "lang": "en"})
    pinned = _start(client, user, workflow_version=1)
    assert latest.status_code == pinned.status_code == 201, (latest.text, pinned.text)
    read = lambda body: client.get(f"/jobs/{body['job_id']}", headers=user.headers).json()  # noqa: E731
    assert read(latest.json())["workflow_version"] == 2
    assert read(pinned.json())["workflow_version"] == 1
    db.execute("update public.workflows set default_version = 1 where id = %s", [WORKFLOW])
    plain = _start(client, user)
    assert plain.status_code == 201 and read(plain.json())["workflow_version"] == 1


@pytest.mark.parametrize(
    ("version", "status", "text"),
    [
        (7, 404, "workflow 'demo_offline_v1' has no version 7"),
        (0, 422, "workflow_version"),
        ("two", 422, "workflow_version"),
    ],
)
def test_a_version_that_does_not_exist_is_named(
    client: TestClient,
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
    version: Any,
    status: int,
    text: str,
) -> None:
    """404 naming the workflow and version, or 422 naming the field; no row written."""
    before = db.execute("select count(*) from public.jobs").fetchone()
    answer = _start(client, make_user(), workflow_version=version)
    assert answer.status_code == status and text in answer.text, answer.text
    assert db.execute("select count(*) from public.jobs").fetchone() == before


def test_a_disabled_workflow_starts_no_job(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """409 workflow_disabled, naming the workflow; no row written."""
    db.execute("update public.workflows set enabled = false where id = %s", [WORKFLOW])
    answer = _start(client, make_user())
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["code"] == "workflow_disabled" and WORKFLOW in error["message"]
    assert db.execute("select count(*) from public.jobs").fetchone() == (0,)


def test_workflow_and_version_endpoints_show_every_version(
    client: TestClient, make_user: Callable[..., ApiUser], second_version: dict[str, Any]
) -> None:
    """GET /workflows/{id} lists both versions with their input schemas; a version's page has
    its definition; a missing one is a 404 naming it; a bad number is a 422 on the path."""
    user = make_user()
    detail = client.get(f"/workflows/{WORKFLOW}", headers=user.headers)
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert (body["default_version"], body["latest_version"], body["enabled"]) == (2, 2, True)
    assert [v["version"] for v in body["versions"]] == [1, 2]
    assert body["versions"][1]["input_schema"]["required"] == ["text", "lang"]
    assert body["input_schema"] == second_version["input_schema"]
    one = client.get(f"/workflows/{WORKFLOW}/versions/2", headers=user.headers).json()
    assert one["definition"] == second_version
    missing = client.get(f"/workflows/{WORKFLOW}/versions/3", headers=user.headers)
    assert missing.status_code == 404 and "has no version 3" in missing.text
    bad = client.get(f"/workflows/{WORKFLOW}/versions/0", headers=user.headers)
    assert bad.status_code == 422 and "version" in bad.text
    unknown = client.get("/workflows/nope", headers=user.headers)
    assert unknown.status_code == 404 and "workflow 'nope' does not exist" in unknown.text
    assert client.get(f"/workflows/{WORKFLOW}").status_code == 401
