"""The /schedules endpoints on the real app, the real database and the session's real Prefect:
each row is one schedule of the fire-schedule deployment, created, paused, changed and deleted
with it; bad rules and inputs are 422s naming the field and write nothing; another user's
schedule is not found; with Prefect down the row is kept and the maintenance pass syncs it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import DeploymentSchedule, StateType
from prefect.client.schemas.schedules import CronSchedule
from waiting import wait_until

from api.app import create_app
from engine.db.schedules import ScheduleStore
from engine.db.store import JobStore
from engine.dispatch import RunStarter
from engine.schedule_sync import PrefectSchedules
from engine.settings import Settings
from flows.schedule_sync_pass import run_schedule_sync
from worker.schedule_deployment import ensure_schedule_deployment

if TYPE_CHECKING:
    from conftest import ApiUser

CLOSED_PREFECT_API_URL = "http://127.0.0.1:9/api"
CRON_BODY = {
    "workflow_id": "demo_offline_v1",
    "cron": "*/5 * * * *",
    "timezone": "Europe/Berlin",
    "input_data": {"text": "every five minutes"},
}


@pytest.fixture(scope="module")
def deployment(prefect_api_url: str) -> str:
    """The fire-schedule deployment on the session's Prefect (as a warm worker creates it)."""
    return ensure_schedule_deployment()


@pytest.fixture
def prefect(prefect_api_url: str) -> Iterator[SyncPrefectClient]:
    """A client of the session's Prefect, to read what the API wrote there."""
    with SyncPrefectClient(prefect_api_url) as client:
        yield client


@pytest.fixture
def make_app(
    make_settings: Callable[..., Settings],
    job_store: JobStore,
    closed_starter: RunStarter,
    deployment: str,
    prefect_api_url: str,
) -> Iterator[Callable[..., TestClient]]:
    """The real app whose schedules reach the session's Prefect (`prefect_url` another one)."""
    opened: list[tuple[TestClient, PrefectSchedules]] = []

    def build(prefect_url: str = prefect_api_url, **overrides: Any) -> TestClient:
        keeper = PrefectSchedules.own_client(deployment, api_url=prefect_url, fail_fast=True)
        app = create_app(
            make_settings(schedule_deployment=deployment, **overrides),
            store=job_store,
            starter=closed_starter,
            prefect_schedules=keeper,
        )
        client = TestClient(app)
        client.__enter__()
        opened.append((client, keeper))
        return client

    yield build
    for client, keeper in opened:
        client.__exit__(None, None, None)
        keeper.close()


def prefect_schedule(
    prefect: SyncPrefectClient, deployment: str, schedule_id: str
) -> DeploymentSchedule | None:
    """The deployment's schedule whose slug is the row id (None: there is none)."""
    found = prefect.read_deployment_schedules(prefect.read_deployment_by_name(deployment).id)
    return next((s for s in found if s.slug == schedule_id), None)


def scheduled_runs(prefect: SyncPrefectClient, deployment: str, schedule_id: str) -> list[str]:
    """Ids of the deployment's Scheduled flow runs for this schedule (its parameters)."""
    deployment_id = prefect.read_deployment_by_name(deployment).id
    runs = prefect.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        ),
    )
    return [str(r.id) for r in runs if r.parameters.get("schedule_id") == schedule_id]


def schedule_count(db: psycopg.Connection[Any]) -> int:
    """How many users' schedules exist (as the service; operator schedules are synced from
    definitions/schedules)."""
    row = db.execute("select count(*) from public.schedules where user_id is not null").fetchone()
    assert row is not None
    return int(row[0])


def test_create_list_get_pause_change_delete_keep_prefect_in_step(
    make_app: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    prefect: SyncPrefectClient,
    deployment: str,
) -> None:
    """POST creates the row and its Prefect schedule (parameters {"schedule_id": id}, slug the
    id, the cron in its timezone); GET lists and shows it with next_run_at; PATCH pauses it
    (Prefect's inactive, no next_run_at), resumes it, switches it to an interval; DELETE
    removes both."""
    client, user = make_app(), make_user()
    created = client.post("/schedules", json=CRON_BODY, headers=user.headers)
    assert created.status_code == 201, created.text
    body = created.json()
    schedule_id = body["id"]
    assert created.headers["Location"] == f"/schedules/{schedule_id}"
    assert body["kind"] == "cron" and body["cron"] == "*/5 * * * *"
    assert body["active"] is True and body["next_run_at"] is not None
    assert body["prefect_schedule_id"] is not None and body["last_status"] is None
    in_prefect = prefect_schedule(prefect, deployment, schedule_id)
    assert in_prefect is not None and str(in_prefect.id) == body["prefect_schedule_id"]
    assert in_prefect.parameters == {"schedule_id": schedule_id} and in_prefect.active
    assert isinstance(in_prefect.schedule, CronSchedule)
    assert in_prefect.schedule.cron == "*/5 * * * *"
    assert in_prefect.schedule.timezone == "Europe/Berlin"
    # Prefect's scheduler has the upcoming firings, each a run with the schedule's parameters.
    wait_until(
        lambda: scheduled_runs(prefect, deployment, schedule_id),
        timeout=60,
        what="Scheduled flow runs of the new schedule",
    )

    listed = client.get("/schedules", headers=user.headers).json()
    assert [s["id"] for s in listed["schedules"]] == [schedule_id]
    assert client.get(f"/schedules/{schedule_id}", headers=user.headers).json() == body

    paused = client.patch(f"/schedules/{schedule_id}", json={"active": False}, headers=user.headers)
    assert paused.status_code == 200, paused.text
    assert paused.json()["active"] is False and paused.json()["next_run_at"] is None
    in_prefect = prefect_schedule(prefect, deployment, schedule_id)
    assert in_prefect is not None and in_prefect.active is False
    wait_until(
        lambda: not scheduled_runs(prefect, deployment, schedule_id),
        timeout=60,
        what="the paused schedule's upcoming runs gone",
    )

    resumed = client.patch(
        f"/schedules/{schedule_id}",
        json={"active": True, "interval_seconds": 3600},
        headers=user.headers,
    ).json()
    assert resumed["kind"] == "interval" and resumed["cron"] is None
    assert resumed["interval_seconds"] == 3600 and resumed["next_run_at"] is not None
    in_prefect = prefect_schedule(prefect, deployment, schedule_id)
    assert in_prefect is not None and in_prefect.active is True
    assert getattr(in_prefect.schedule, "interval", None) is not None
    assert in_prefect.schedule.interval.total_seconds() == 3600  # type: ignore[union-attr]

    deleted = client.delete(f"/schedules/{schedule_id}", headers=user.headers)
    assert deleted.status_code == 204
    assert client.get(f"/schedules/{schedule_id}", headers=user.headers).status_code == 404
    assert prefect_schedule(prefect, deployment, schedule_id) is None


def test_another_users_schedule_is_not_found(
    make_app: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    prefect: SyncPrefectClient,
    deployment: str,
) -> None:
    """B neither sees, changes nor deletes A's schedule (404 as for a missing one)."""
    client, owner, other = make_app(), make_user(), make_user()
    schedule_id = client.post("/schedules", json=CRON_BODY, headers=owner.headers).json()["id"]
    path = f"/schedules/{schedule_id}"
    assert client.get(path, headers=other.headers).status_code == 404
    assert client.patch(path, json={"active": False}, headers=other.headers).status_code == 404
    assert client.delete(path, headers=other.headers).status_code == 404
    assert client.get("/schedules", headers=other.headers).json()["schedules"] == []
    assert client.get(path, headers=owner.headers).json()["active"] is True
    in_prefect = prefect_schedule(prefect, deployment, schedule_id)
    assert in_prefect is not None and in_prefect.active is True
    assert client.delete(path, headers=owner.headers).status_code == 204


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"cron": "not a cron"}, "body.cron"),
        ({"cron": "H * * * *"}, "body.cron"),
        ({"cron": None, "interval_seconds": 30}, "body.interval_seconds"),
        ({"cron": None, "rrule": "FREQ=SOMETIMES"}, "body.rrule"),
        ({"timezone": "Mars/Olympus_Mons"}, "body.timezone"),
        ({"input_data": {"text": 5}}, "body.input_data.text"),
        ({"cron": None}, "body.cron"),
        ({"interval_seconds": 3600}, "body.interval_seconds"),
    ],
)
def test_a_bad_schedule_is_422_naming_the_field_and_writes_nothing(
    make_app: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
    change: dict[str, Any],
    location: str,
) -> None:
    """A cron Prefect refuses, an interval below MIN_SCHEDULE_INTERVAL_SECONDS (60), an RRule
    that does not parse, an unknown timezone, input_data off the input_schema, no rule or two
    rules: 422 with a detail at that field, and no row."""
    client, user = make_app(), make_user()
    body = {k: v for k, v in {**CRON_BODY, **change}.items() if v is not None}
    answer = client.post("/schedules", json=body, headers=user.headers)
    assert answer.status_code == 422, answer.text
    assert location in [d["location"] for d in answer.json()["error"]["details"]]
    assert schedule_count(db) == 0


def test_a_refused_change_changes_nothing(
    make_app: Callable[..., TestClient], make_user: Callable[..., ApiUser]
) -> None:
    """PATCH with a bad cron, or two rules at once, is 422 naming the field; the schedule is
    as it was."""
    client, user = make_app(), make_user()
    before = client.post("/schedules", json=CRON_BODY, headers=user.headers).json()
    path = f"/schedules/{before['id']}"
    bad = client.patch(path, json={"cron": "61 * * * *", "active": False}, headers=user.headers)
    assert bad.status_code == 422
    assert [d["location"] for d in bad.json()["error"]["details"]] == ["body.cron"]
    both = client.patch(
        path, json={"cron": "0 * * * *", "rrule": "FREQ=DAILY"}, headers=user.headers
    )
    assert both.status_code == 422
    assert {d["location"] for d in both.json()["error"]["details"]} == {"body.cron", "body.rrule"}
    after = client.get(path, headers=user.headers).json()
    assert after == {**before, "next_run_at": after["next_run_at"]}
    assert client.delete(path, headers=user.headers).status_code == 204


def test_the_minimum_interval_is_a_setting(
    make_app: Callable[..., TestClient], make_user: Callable[..., ApiUser]
) -> None:
    """With MIN_SCHEDULE_INTERVAL_SECONDS=2 a 2-second interval is accepted, 1 is not."""
    client, user = make_app(min_schedule_interval_seconds=2), make_user()
    body = {"workflow_id": "demo_offline_v1", "interval_seconds": 2, "input_data": {"text": "x"}}
    created = client.post("/schedules", json=body, headers=user.headers)
    assert created.status_code == 201, created.text
    too_short = client.post(
        "/schedules", json={**body, "interval_seconds": 1}, headers=user.headers
    )
    assert too_short.status_code == 422
    assert (
        client.delete(f"/schedules/{created.json()['id']}", headers=user.headers).status_code == 204
    )


def test_unknown_workflow_is_404(
    make_app: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
) -> None:
    """A schedule of a workflow that does not exist is 404 and no row."""
    client, user = make_app(), make_user()
    answer = client.post(
        "/schedules", json={**CRON_BODY, "workflow_id": "no_such_workflow"}, headers=user.headers
    )
    assert answer.status_code == 404
    assert schedule_count(db) == 0


def test_with_prefect_down_the_row_is_kept_and_maintenance_syncs_it(
    make_app: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    prefect: SyncPrefectClient,
    deployment: str,
    job_store: JobStore,
    make_settings: Callable[..., Settings],
) -> None:
    """Prefect unreachable: POST still answers 201 with prefect_schedule_id null, DELETE 204.
    The maintenance pass then creates the missing Prefect schedule, records its id, deletes
    the orphan Prefect schedule of a row that no longer exists, and leaves the schedules
    already in step alone (a second pass changes nothing)."""
    down, user = make_app(prefect_url=CLOSED_PREFECT_API_URL), make_user()
    created = down.post("/schedules", json=CRON_BODY, headers=user.headers)
    assert created.status_code == 201, created.text
    kept = created.json()
    assert kept["prefect_schedule_id"] is None
    assert prefect_schedule(prefect, deployment, kept["id"]) is None
    deployment_id = prefect.read_deployment_by_name(deployment).id
    orphan_slug = str(uuid.uuid4())
    prefect.create_deployment_schedules(
        deployment_id,
        [
            DeploymentScheduleCreate(
                schedule=CronSchedule(cron="0 0 * * *"),
                parameters={"schedule_id": orphan_slug},
                slug=orphan_slug,
            )
        ],
    )

    # Rows Prefect already has, of each kind, are left as they are by the pass.
    up = make_app()
    for rule in ({"interval_seconds": 3600}, {"rrule": "FREQ=DAILY;BYHOUR=9"}):
        body = {**{k: v for k, v in CRON_BODY.items() if k != "cron"}, **rule}
        assert up.post("/schedules", json=body, headers=user.headers).status_code == 201

    settings = make_settings(schedule_deployment=deployment)
    outcome = run_schedule_sync(job_store, settings, prefect, log=logging.getLogger("test"))
    assert outcome["created"] >= 1 and outcome["deleted"] >= 1, outcome
    assert outcome["updated"] == 0 and outcome["failed"] == 0, outcome

    in_prefect = prefect_schedule(prefect, deployment, kept["id"])
    assert in_prefect is not None and in_prefect.parameters == {"schedule_id": kept["id"]}
    assert prefect_schedule(prefect, deployment, orphan_slug) is None
    row = ScheduleStore(job_store.pool).get(kept["id"])
    assert str(row["prefect_schedule_id"]) == str(in_prefect.id)
    again = run_schedule_sync(job_store, settings, prefect, log=logging.getLogger("test"))
    assert again == {"created": 0, "updated": 0, "deleted": 0, "failed": 0, "recorded": 0}

    # Paused and deleted while Prefect is down: the pass pauses, then deletes, Prefect's.
    path = f"/schedules/{kept['id']}"
    assert down.patch(path, json={"active": False}, headers=user.headers).status_code == 200
    run_schedule_sync(job_store, settings, prefect, log=logging.getLogger("test"))
    paused = prefect_schedule(prefect, deployment, kept["id"])
    assert paused is not None and paused.active is False
    assert down.delete(path, headers=user.headers).status_code == 204
    run_schedule_sync(job_store, settings, prefect, log=logging.getLogger("test"))
    assert prefect_schedule(prefect, deployment, kept["id"]) is None


def test_list_is_paged_newest_first(
    make_app: Callable[..., TestClient], make_user: Callable[..., ApiUser]
) -> None:
    """GET /schedules pages with limit and the next_cursor it returns, newest first."""
    client, user = make_app(), make_user()
    ids = [
        client.post("/schedules", json=CRON_BODY, headers=user.headers).json()["id"]
        for _ in range(3)
    ]
    first = client.get("/schedules?limit=2", headers=user.headers).json()
    assert [s["id"] for s in first["schedules"]] == ids[::-1][:2]
    cursor = first["next_cursor"]
    assert cursor is not None
    rest = client.get(f"/schedules?limit=2&cursor={cursor}", headers=user.headers).json()
    assert [s["id"] for s in rest["schedules"]] == ids[:1] and rest["next_cursor"] is None
    for schedule_id in ids:
        assert client.delete(f"/schedules/{schedule_id}", headers=user.headers).status_code == 204
