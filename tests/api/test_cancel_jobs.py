"""POST /jobs/{id}/cancel on the real app, real PostgreSQL and the session's real Prefect: a
job mid-step stops at the next step boundary (its flow run ends Cancelled), a job with no live
step is failed at once (its flow run set Cancelled), a finished job is a 409, another user's a
404."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from control_helpers import WarmDeployment, event_kinds, last_entry, warm_deployment
from fastapi.testclient import TestClient
from flow_services import Scripted, add_workflow, held_first, http_transformer, serve
from pytest_httpserver import HTTPServer
from waiting import wait_until
from warm_workers import dispatch, read_flow_run, wait_for_jobs, wait_for_state, warm_worker

from engine.db.store import JobStore
from engine.settings import get_settings
from flows.run_workflow import run_workflow

if TYPE_CHECKING:
    from conftest import ApiUser

__all__ = ["warm_deployment"]  # the fixture, used by name


def two_steps(
    db: psycopg.Connection[Any], server: HTTPServer, first: Scripted, second: Scripted
) -> None:
    """Workflow `wf_two`: step `slow` calls `first`, then step `next` calls `second`."""
    http_transformer(db, "slow-api", serve(server, "/slow", first))
    http_transformer(db, "next-api", serve(server, "/next", second))
    add_workflow(
        db,
        "wf_two",
        {
            "steps": [
                {"id": "slow", "transformer": "slow-api"},
                {"id": "next", "transformer": "next-api"},
            ]
        },
    )


def step_started(store: JobStore, job_id: str, step_id: str) -> bool:
    """Whether the step's first attempt has started."""
    return any(
        e["kind"] == "step_started" and e["step_id"] == step_id for e in store.events(job_id)
    )


@pytest.mark.slow
def test_cancel_mid_step_lets_the_step_finish_and_starts_no_other(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    http_server: HTTPServer,
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    warm_deployment: WarmDeployment,
) -> None:
    """Cancel while step `slow` is in its call (held open until the cancel was answered): 202,
    and 202 again with the same request time; the call finishes and its output is stored, step
    `next` never starts, the job ends failed with error kind `cancelled`, and the flow run ends
    Cancelled in Prefect with a message naming who cancelled."""
    slow, release = held_first(body={"slow": True})
    after = Scripted([200])
    two_steps(db, http_server, slow, after)
    owner = make_user()
    client = make_client(starter=warm_deployment.starter)
    with warm_worker(warm_deployment.pool, limit=1, query_seconds=1, prefetch_seconds=0):
        job_id = flow_store.create_job(
            user_id=owner.user_id, workflow_id="wf_two", input_data={}
        ).id
        run_id = dispatch(flow_store, warm_deployment.deployment_id, job_id)
        wait_until(lambda: step_started(flow_store, job_id, "slow"), 60, "step slow to start")
        first = client.post(f"/jobs/{job_id}/cancel", headers=owner.headers)
        again = client.post(f"/jobs/{job_id}/cancel", headers=owner.headers)
        release.set()
        assert wait_for_jobs(flow_store, [job_id]) == {job_id: "failed"}
        run = wait_for_state(run_id, "CANCELLED")
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "running" and first.json()["error_kind"] is None
    assert (
        again.status_code == 202
        and again.json()["cancel_requested_at"] == first.json()["cancel_requested_at"]
    )
    assert slow.count == 1 and after.count == 0
    row = flow_store.get_job(job_id)
    assert set(row["step_data"]) == {"slow"} and row["step_data"]["slow"]["body"] == {"slow": True}
    assert last_entry(flow_store, job_id)["kind"] == "cancelled"
    assert owner.user_id in (row["error_message"] or "")
    assert run.state is not None and owner.user_id in (run.state.message or "")
    kinds = event_kinds(flow_store, job_id)
    assert kinds.count("cancel_requested") == 1  # the second ask changed nothing
    assert kinds.index("cancel_requested") < kinds.index("step_succeeded")
    assert [e["step_id"] for e in flow_store.events(job_id) if e["kind"] == "step_started"] == [
        "slow"
    ]
    body = client.get(f"/jobs/{job_id}", headers=owner.headers).json()
    assert body["status"] == "failed" and body["error_kind"] == "cancelled"


@pytest.mark.slow
def test_cancel_of_a_pending_job_fails_it_and_cancels_its_flow_run(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    http_server: HTTPServer,
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    warm_deployment: WarmDeployment,
) -> None:
    """A job whose flow run is Scheduled and not taken by any worker: 200, failed now (error
    kind `cancelled`, one `cancel_requested` and one status event), its flow run Cancelled;
    no step ever ran, and cancelling it again is a 409 naming its status."""
    first, second = Scripted([200]), Scripted([200])
    two_steps(db, http_server, first, second)
    owner = make_user()
    client = make_client(starter=warm_deployment.starter)
    job_id = flow_store.create_job(user_id=owner.user_id, workflow_id="wf_two", input_data={}).id
    run_id = dispatch(flow_store, warm_deployment.deployment_id, job_id)
    assert read_flow_run(run_id).state.type.value == "SCHEDULED"  # type: ignore[union-attr]

    answer = client.post(f"/jobs/{job_id}/cancel", headers=owner.headers)

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "failed" and answer.json()["error_kind"] == "cancelled"
    run = wait_for_state(run_id, "CANCELLED")
    assert run.state is not None and owner.user_id in (run.state.message or "")
    row = flow_store.get_job(job_id)
    assert row["status"] == "failed" and row["cancel_requested_at"] is not None
    entry = last_entry(flow_store, job_id)
    assert entry["kind"] == "cancelled" and entry["cancelled_by"] == owner.user_id
    assert event_kinds(flow_store, job_id)[-2:] == ["cancel_requested", "status"]
    again = client.post(f"/jobs/{job_id}/cancel", headers=owner.headers)
    assert again.status_code == 409
    assert again.json()["error"]["details"] == {"status": "failed"}
    assert "failed" in again.json()["error"]["message"]
    assert first.count == 0 and second.count == 0


def test_cancel_without_prefect_still_fails_a_pending_job(
    client: TestClient, make_user: Callable[..., ApiUser], job_store: JobStore
) -> None:
    """Prefect out of reach (the closed-port starter) changes nothing for a job that never got
    a flow run: 200 and failed, error kind `cancelled` in GET /jobs/{id}."""
    owner = make_user()
    job_id = job_store.create_job(
        user_id=owner.user_id, workflow_id="demo_offline_v1", input_data={"text": "x"}
    ).id
    answer = client.post(f"/jobs/{job_id}/cancel", headers=owner.headers)
    assert answer.status_code == 200, answer.text
    body = client.get(f"/jobs/{job_id}", headers=owner.headers).json()
    assert body["status"] == "failed" and body["error_kind"] == "cancelled"
    assert "cancelled by its owner" in body["error_message"]


def test_cancel_of_another_users_job_or_a_missing_one_is_404(
    client: TestClient, make_user: Callable[..., ApiUser], job_store: JobStore
) -> None:
    """Only the owner may cancel: another user's job is not found, like GET /jobs/{id}, and
    stays as it was; so is a job id that does not exist. No token: 401."""
    owner, other = make_user(), make_user()
    job_id = job_store.create_job(
        user_id=owner.user_id, workflow_id="demo_offline_v1", input_data={"text": "x"}
    ).id
    foreign = client.post(f"/jobs/{job_id}/cancel", headers=other.headers)
    missing = client.post(f"/jobs/{uuid.uuid4()}/cancel", headers=owner.headers)
    assert foreign.status_code == 404 and missing.status_code == 404
    assert foreign.json()["error"]["code"] == "not_found"
    assert job_store.get_job(job_id)["status"] == "pending"
    assert job_store.get_job(job_id)["cancel_requested_at"] is None
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 401
    assert client.post("/jobs/not-a-uuid/cancel", headers=owner.headers).status_code == 422


def test_cancel_of_a_completed_job_is_409(
    flow_store: JobStore,
    job_store: JobStore,
    client: TestClient,
    make_user: Callable[..., ApiUser],
    prefect_client_retries: None,
) -> None:
    """A job that completed cannot be cancelled: 409 naming `completed`; the job is unchanged."""
    owner = make_user()
    job_id = job_store.create_job(
        user_id=owner.user_id, workflow_id="demo_offline_v1", input_data={"text": "a b"}
    ).id
    run_workflow(job_id)
    answer = client.post(f"/jobs/{job_id}/cancel", headers=owner.headers)
    assert answer.status_code == 409
    assert answer.json()["error"]["details"] == {"status": "completed"}
    row = flow_store.get_job(job_id)
    assert row["status"] == "completed" and row["cancel_requested_at"] is None


@pytest.fixture
def reschedule_above_one_second(monkeypatch: pytest.MonkeyPatch, engine_env: str) -> Iterator[None]:
    """Retry delays above 1 s are rescheduled past the flow run (the default is 30 s)."""
    monkeypatch.setenv("RETRY_RESCHEDULE_SECONDS", "1")
    get_settings.cache_clear()
    yield


def parked(store: JobStore, job_id: str, run_id: str) -> bool:
    """The job awaiting_retry and its flow run ended AwaitingRetry (Scheduled for later)."""
    state = read_flow_run(run_id).state
    return store.get_job(job_id)["status"] == "awaiting_retry" and (
        state is not None and state.name == "AwaitingRetry"
    )


@pytest.mark.slow
def test_cancel_of_a_job_awaiting_a_rescheduled_retry_is_immediate(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    http_server: HTTPServer,
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    warm_deployment: WarmDeployment,
    reschedule_above_one_second: None,
) -> None:
    """A 503 with a 300-s backoff parks the job (awaiting_retry, its flow run AwaitingRetry):
    nothing is live, so the cancel fails it at once (200) and its flow run is Cancelled
    instead of waking up for the retry."""
    api = Scripted([503, 200])
    http_transformer(db, "later-api", serve(http_server, "/later", api))
    retry = {"max_retries": 2, "strategy": "fixed", "initial_delay_seconds": 300, "jitter": 0}
    add_workflow(
        db, "wf_later", {"retry": retry, "steps": [{"id": "fetch", "transformer": "later-api"}]}
    )
    owner = make_user()
    client = make_client(starter=warm_deployment.starter)
    with warm_worker(warm_deployment.pool, limit=1, query_seconds=1, prefetch_seconds=0):
        job_id = flow_store.create_job(
            user_id=owner.user_id, workflow_id="wf_later", input_data={}
        ).id
        run_id = dispatch(flow_store, warm_deployment.deployment_id, job_id)
        wait_until(lambda: parked(flow_store, job_id, run_id), 60, "the retry to be parked")
        answer = client.post(f"/jobs/{job_id}/cancel", headers=owner.headers)
        run = wait_for_state(run_id, "CANCELLED")
    assert answer.status_code == 200, answer.text
    assert flow_store.get_job(job_id)["status"] == "failed"
    assert last_entry(flow_store, job_id)["kind"] == "cancelled"
    assert run.state is not None and run.state.type.value == "CANCELLED"
    assert api.count == 1


@pytest.mark.slow
def test_cancel_of_a_job_waiting_for_an_approval_is_immediate(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    http_server: HTTPServer,
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    warm_deployment: WarmDeployment,
) -> None:
    """A job at an approval step (waiting_for set, its flow run Paused, no slot held) has no
    live step: the cancel fails it at once (200), clears waiting_for, and its flow run is
    Cancelled instead of waiting for a decision; the step after the approval never runs."""
    after = Scripted([200])
    http_transformer(db, "before-api", serve(http_server, "/before", Scripted([200])))
    http_transformer(db, "after-api", serve(http_server, "/after", after))
    steps = [
        {"id": "before", "transformer": "before-api"},
        {"id": "approve", "approval": {}},
        {"id": "after", "transformer": "after-api"},
    ]
    add_workflow(db, "wf_approve", {"steps": steps})
    owner = make_user()
    client = make_client(starter=warm_deployment.starter)
    with warm_worker(warm_deployment.pool, limit=1, query_seconds=1, prefetch_seconds=0):
        job_id = flow_store.create_job(
            user_id=owner.user_id, workflow_id="wf_approve", input_data={}
        ).id
        run_id = dispatch(flow_store, warm_deployment.deployment_id, job_id)
        wait_for_state(run_id, "PAUSED", timeout=60)
        assert flow_store.get_job(job_id)["waiting_for"]["kind"] == "approval"
        answer = client.post(f"/jobs/{job_id}/cancel", headers=owner.headers)
        run = wait_for_state(run_id, "CANCELLED")
    assert answer.status_code == 200, answer.text
    row = flow_store.get_job(job_id)
    assert row["status"] == "failed" and row["waiting_for"] is None
    assert last_entry(flow_store, job_id)["kind"] == "cancelled"
    assert run.state is not None and run.state.type.value == "CANCELLED"
    assert set(row["step_data"]) == {"before"} and after.count == 0


@pytest.mark.slow
def test_a_run_that_starts_after_its_job_was_cancelled_ends_cancelled(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    http_server: HTTPServer,
    client: TestClient,
    make_user: Callable[..., ApiUser],
    warm_deployment: WarmDeployment,
) -> None:
    """The API cannot reach Prefect (closed-port starter) when it cancels a pending job
    whose flow run is Scheduled: the job is failed all the same (200) and the run stays
    Scheduled; when a worker later takes that run, it finds the job cancelled, runs no step,
    and ends Cancelled (not Completed)."""
    first, second = Scripted([200]), Scripted([200])
    two_steps(db, http_server, first, second)
    owner = make_user()
    job_id = flow_store.create_job(user_id=owner.user_id, workflow_id="wf_two", input_data={}).id
    run_id = dispatch(flow_store, warm_deployment.deployment_id, job_id)
    answer = client.post(f"/jobs/{job_id}/cancel", headers=owner.headers)
    assert answer.status_code == 200, answer.text
    assert read_flow_run(run_id).state.type.value == "SCHEDULED"  # type: ignore[union-attr]
    with warm_worker(warm_deployment.pool, limit=1, query_seconds=1, prefetch_seconds=0):
        run = wait_for_state(run_id, "CANCELLED", timeout=60)
    assert run.state is not None and owner.user_id in (run.state.message or "")
    assert flow_store.get_job(job_id)["status"] == "failed"
    assert first.count == 0 and second.count == 0
