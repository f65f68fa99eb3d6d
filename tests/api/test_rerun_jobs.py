"""POST /jobs/{id}/rerun on the real app, real PostgreSQL and the session's real Prefect (a
warm worker runs the flow runs): a failed job runs again from its first unfinished step
without calling its finished steps again (counted on real local servers), `from_step` redoes
that step and its downstream ones, each rerun is a new flow run with its own key, and the
wrong requests are refused (409, 422, 404)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
import pytest
from control_helpers import WarmDeployment, event_kinds, last_entry, warm_deployment
from fastapi.testclient import TestClient
from flow_services import Scripted, add_workflow, http_transformer, serve
from prefect.client.orchestration import get_client
from pytest_httpserver import HTTPServer
from warm_workers import dispatch, wait_for_jobs, warm_worker

from engine.db.store import JobStore
from flows.job_control import dispatch_reruns

if TYPE_CHECKING:
    from conftest import ApiUser

__all__ = ["warm_deployment"]  # the fixture, used by name


def chain(db: psycopg.Connection[Any], server: HTTPServer, handlers: dict[str, Scripted]) -> None:
    """Workflow `wf_chain`: one HTTP step per handler, each after the previous one."""
    steps = []
    for step_id, handler in handlers.items():
        http_transformer(db, f"{step_id}-api", serve(server, f"/{step_id}", handler))
        steps.append({"id": step_id, "transformer": f"{step_id}-api"})
    add_workflow(db, "wf_chain", {"steps": steps})


def idempotency_key(run_id: str) -> str | None:
    """The idempotency key Prefect holds for a flow run."""
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id)).idempotency_key


def failed_once(store: JobStore, deployment: WarmDeployment, user: ApiUser) -> tuple[str, str]:
    """Run a `wf_chain` job with no retries on the warm worker until it fails; (job, run)."""
    job_id = store.create_job(
        user_id=user.user_id, workflow_id="wf_chain", input_data={}, max_retries=0
    ).id
    run_id = dispatch(store, deployment.deployment_id, job_id)
    with warm_worker(deployment.pool, limit=1, query_seconds=1, prefetch_seconds=0):
        assert wait_for_jobs(store, [job_id]) == {job_id: "failed"}
    return job_id, run_id


@pytest.mark.slow
def test_rerun_runs_from_the_first_unfinished_step(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    http_server: HTTPServer,
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    warm_deployment: WarmDeployment,
) -> None:
    """`a` succeeds, `b` fails (500) and the job fails. A rerun is 202 with rerun 1: the job
    is pending with retry_count 1, no error, and a new flow run keyed `<job>:rerun:1`; it
    completes without calling `a` again (1 call) while `b` is called a second time. The
    history records the rerun, and a job that completed cannot be rerun (409)."""
    a, b = Scripted([200], body={"a": 1}), Scripted([500, 200], body={"b": 2})
    chain(db, http_server, {"a": a, "b": b})
    owner = make_user()
    client = make_client(starter=warm_deployment.starter)
    job_id, first_run = failed_once(flow_store, warm_deployment, owner)
    assert (a.count, b.count) == (1, 1)

    answer = client.post(f"/jobs/{job_id}/rerun", headers=owner.headers)

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["rerun"] == 1 and body["retry_count"] == 1 and body["redo"] == []
    assert body["dispatched"] is True and answer.headers["location"] == f"/jobs/{job_id}"
    row = flow_store.get_job(job_id)
    assert row["status"] == "pending" and row["error_message"] is None and row["retry_count"] == 1
    run_id = str(row["prefect_flow_run_id"])
    assert run_id != first_run and idempotency_key(run_id) == f"{job_id}:rerun:1"
    assert last_entry(flow_store, job_id) | {"at": None} == {
        "status": "pending",
        "rerun": 1,
        "from_step": None,
        "at": None,
    }
    with warm_worker(warm_deployment.pool, limit=1, query_seconds=1, prefetch_seconds=0):
        assert wait_for_jobs(flow_store, [job_id]) == {job_id: "completed"}
    assert (a.count, b.count) == (1, 2)
    row = flow_store.get_job(job_id)
    assert row["step_data"]["a"]["body"] == {"a": 1} and row["step_data"]["b"]["body"] == {"b": 2}
    assert row["retry_count"] == 1 and str(row["prefect_flow_run_id"]) == run_id
    events = flow_store.events(job_id)
    assert [e["step_id"] for e in events if e["kind"] == "step_skipped"] == ["a"]
    [rerun] = [e for e in events if e["kind"] == "rerun"]
    assert rerun["detail"]["idempotency_key"] == f"{job_id}:rerun:1"
    assert rerun["detail"]["by"] == owner.user_id
    again = client.post(f"/jobs/{job_id}/rerun", headers=owner.headers)
    assert again.status_code == 409 and again.json()["error"]["details"] == {"status": "completed"}


@pytest.mark.slow
def test_rerun_from_step_redoes_it_and_its_downstream_steps(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    http_server: HTTPServer,
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    warm_deployment: WarmDeployment,
) -> None:
    """a -> b -> c, `c` fails twice. A `from_step` the pinned version does not have is a 422
    naming `from_step` (the job stays failed). `from_step: b` drops b's output (and c's, had
    it one): `a` is not called again, `b` and `c` are, and c fails again; a second rerun is
    number 2, with a key of its own, and runs only `c`."""
    a, b, c = Scripted([200]), Scripted([200]), Scripted([500, 500, 200])
    chain(db, http_server, {"a": a, "b": b, "c": c})
    owner = make_user()
    client = make_client(starter=warm_deployment.starter)
    job_id, _ = failed_once(flow_store, warm_deployment, owner)

    bad = client.post(f"/jobs/{job_id}/rerun", headers=owner.headers, json={"from_step": "zzz"})
    assert bad.status_code == 422, bad.text
    assert bad.json()["error"]["details"][0]["location"] == "body.from_step"
    assert "from_step" in bad.json()["error"]["message"]
    assert flow_store.get_job(job_id)["status"] == "failed"

    answer = client.post(f"/jobs/{job_id}/rerun", headers=owner.headers, json={"from_step": "b"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["redo"] == ["b", "c"] and answer.json()["from_step"] == "b"
    assert set(flow_store.get_job(job_id)["step_data"]) == {"a"}
    assert last_entry(flow_store, job_id)["from_step"] == "b"
    with warm_worker(warm_deployment.pool, limit=1, query_seconds=1, prefetch_seconds=0):
        assert wait_for_jobs(flow_store, [job_id]) == {job_id: "failed"}  # c's second call: 500
        assert (a.count, b.count, c.count) == (1, 2, 2)
        second = client.post(f"/jobs/{job_id}/rerun", headers=owner.headers)
        assert second.status_code == 202 and second.json()["rerun"] == 2
        assert second.json()["retry_count"] == 2
        assert wait_for_jobs(flow_store, [job_id]) == {job_id: "completed"}
    assert (a.count, b.count, c.count) == (1, 2, 3)  # from the first unfinished step: c
    run_id = str(flow_store.get_job(job_id)["prefect_flow_run_id"])
    assert idempotency_key(run_id) == f"{job_id}:rerun:2"
    assert event_kinds(flow_store, job_id).count("rerun") == 2


def test_rerun_refusals(
    client: TestClient, make_user: Callable[..., ApiUser], job_store: JobStore
) -> None:
    """A job that is not failed (pending) is a 409 naming its status; another user's job
    and a missing one are 404; an unknown body field is a 422."""
    owner, other = make_user(), make_user()
    job_id = job_store.create_job(
        user_id=owner.user_id, workflow_id="demo_offline_v1", input_data={"text": "x"}
    ).id
    pending = client.post(f"/jobs/{job_id}/rerun", headers=owner.headers)
    assert pending.status_code == 409 and pending.json()["error"]["details"] == {
        "status": "pending"
    }
    assert client.post(f"/jobs/{job_id}/rerun", headers=other.headers).status_code == 404
    assert client.post(f"/jobs/{uuid.uuid4()}/rerun", headers=owner.headers).status_code == 404
    extra = client.post(f"/jobs/{job_id}/rerun", headers=owner.headers, json={"step": "a"})
    assert extra.status_code == 422
    assert (
        client.post(
            f"/jobs/{job_id}/rerun", headers=owner.headers, json={"from_step": ""}
        ).status_code
        == 422
    )


@pytest.mark.slow
def test_rerun_while_prefect_is_unreachable_is_dispatched_by_maintenance(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    http_server: HTTPServer,
    client: TestClient,
    make_user: Callable[..., ApiUser],
    warm_deployment: WarmDeployment,
) -> None:
    """A cancelled job rerun while Prefect cannot be reached (the closed-port starter): 202
    with dispatched false, the job pending with no new flow run, which the ordinary pending
    dispatcher leaves alone (it would get the first run back); maintenance's rerun dispatch
    creates its flow run with the rerun's key, and the job completes."""
    a = Scripted([200])
    chain(db, http_server, {"a": a})
    owner = make_user()
    job_id = flow_store.create_job(user_id=owner.user_id, workflow_id="wf_chain", input_data={}).id
    assert client.post(f"/jobs/{job_id}/cancel", headers=owner.headers).status_code == 200

    answer = client.post(f"/jobs/{job_id}/rerun", headers=owner.headers)

    assert answer.status_code == 202 and answer.json()["dispatched"] is False
    row = flow_store.get_job(job_id)
    assert (
        row["status"] == "pending"
        and row["dispatched_at"] is None
        and row["cancel_requested_at"] is None
    )
    assert (
        flow_store.dispatch_pending(lambda j: pytest.fail(f"dispatched {j}"), grace_seconds=0) == []
    )
    [(dispatched, run_id)] = dispatch_reruns(flow_store, warm_deployment.starter, grace_seconds=0)
    assert dispatched == job_id and run_id is not None
    assert idempotency_key(run_id) == f"{job_id}:rerun:1"
    assert dispatch_reruns(flow_store, warm_deployment.starter, grace_seconds=0) == []
    with warm_worker(warm_deployment.pool, limit=1, query_seconds=1, prefetch_seconds=0):
        assert wait_for_jobs(flow_store, [job_id]) == {job_id: "completed"}
    assert a.count == 1 and str(flow_store.get_job(job_id)["prefect_flow_run_id"]) == run_id
