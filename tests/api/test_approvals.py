"""Approvals and events over the API, end to end: the real app, the real Prefect server and a
warm worker. A job waits at its wait step with its flow run Paused; a decision (or an event)
over the API resumes the same flow run and the job completes with it as the step's output.
Refusals: 403 for a user the rule does not allow (and the owner under forbid_self_approval),
404 for a caller who cannot see the job, 409 for a second decision, 422 naming a form field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from flow_services import Scripted, add_workflow, http_transformer, serve
from pytest_httpserver import HTTPServer
from waiting import wait_until
from warm_workers import read_flow_run, unique_pool, wait_for_jobs, wait_for_state, warm_worker

from engine.db.store import JobStore
from engine.dispatch import RunStarter
from worker.deployments import ensure_warm_deployment

if TYPE_CHECKING:
    from conftest import ApiUser

REVIEWERS = {"claim": "app_metadata.role", "in": ["reviewer"]}
FORM = {
    "type": "object",
    "required": ["score"],
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}},
}


@pytest.fixture
def stack(
    flow_store: JobStore,
    make_client: Callable[..., TestClient],
    prefect_api_url: str,
    prefect_client_retries: None,
) -> Iterator[TestClient]:
    """The app with a run starter on a warm pool's deployment, and a warm worker on it."""
    pool = unique_pool()
    name = ensure_warm_deployment(pool, f"warm-{pool}")
    starter = RunStarter.own_client(name, api_url=prefect_api_url, fail_fast=True)
    try:
        with warm_worker(pool, limit=2, query_seconds=1, prefetch_seconds=0):
            yield make_client(starter=starter)
    finally:
        starter.close()


def wait_workflow(
    db: psycopg.Connection[Any],
    http_server: HTTPServer,
    wait: dict[str, Any],
    workflow_id: str = "wf_review",
) -> Scripted:
    """Workflow `workflow_id`: the wait step `review`, then `after` posting its output."""
    after = Scripted([200])
    transformer = f"{workflow_id.replace('_', '-')}-after"
    http_transformer(db, transformer, serve(http_server, f"/{workflow_id}", after), method="POST")
    add_workflow(
        db,
        workflow_id,
        {
            "steps": [
                {"id": "review", **wait},
                {"id": "after", "transformer": transformer, "input": {"body.$": "$.steps.review"}},
            ]
        },
    )
    return after


def start_paused(
    client: TestClient,
    owner: ApiUser,
    workflow_id: str = "wf_review",
    input_data: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Start `workflow_id` as `owner`; (job id, job body) once its flow run is Paused."""
    body = {"workflow_id": workflow_id, "input_data": input_data or {}}
    started = client.post("/workflows/start", json=body, headers=owner.headers)
    assert started.status_code == 201, started.text
    job_id = started.json()["job_id"]

    def paused() -> dict[str, Any] | None:
        run_id = job_run(client, owner, job_id)
        run = read_flow_run(run_id) if run_id else None
        if not (run and run.state and run.state.type.value == "PAUSED"):
            return None
        return client.get(f"/jobs/{job_id}", headers=owner.headers).json()  # type: ignore[no-any-return]

    return job_id, wait_until(paused, 60, "the job to wait")


def job_run(client: TestClient, owner: ApiUser, job_id: str) -> str | None:
    """The job's flow run id (from the store: the API body does not show it)."""
    store: JobStore = client.app.state.store  # type: ignore[attr-defined]
    value = store.get_job(job_id)["prefect_flow_run_id"]
    return str(value) if value else None


def test_an_allowed_reviewer_approves_and_the_job_completes_with_the_decision(
    stack: TestClient,
    db: psycopg.Connection[Any],
    http_server: HTTPServer,
    make_user: Callable[..., ApiUser],
    flow_store: JobStore,
) -> None:
    """deciders app_metadata.role in [reviewer], forbid_self_approval, a form schema: the
    owner (a reviewer too) is refused 403, a viewer 403, a stranger sees 404 on the list;
    a bad form is 422 naming /form/score; the reviewer's approval resumes the run (same
    flow run) and the job completes with {decision, comment, form, decided_by, decided_at}
    as the step's output; a second decision is 409."""
    after = wait_workflow(
        db,
        http_server,
        {"approval": {"form_schema": FORM, "deciders": REVIEWERS, "forbid_self_approval": True}},
    )
    owner = make_user(app_metadata={"provider": "email", "role": "reviewer"})
    reviewer = make_user(app_metadata={"provider": "email", "role": "reviewer"})
    viewer = make_user(app_metadata={"provider": "email", "role": "viewer"})
    stranger = make_user()
    job_id, job = start_paused(stack, owner)
    run_id = str(job_run(stack, owner, job_id))
    assert job["status"] == "running" and job["waiting_for"]["kind"] == "approval"
    assert job["waiting_for"]["step"] == "review" and job["waiting_for"]["deadline"] is None
    [approval] = stack.get(f"/jobs/{job_id}/approvals", headers=owner.headers).json()["approvals"]
    assert approval["status"] == "pending" and approval["form_schema"] == FORM
    url = f"/approvals/{approval['approval_id']}"
    listed = stack.get(f"/jobs/{job_id}/approvals", headers=reviewer.headers)
    assert [a["approval_id"] for a in listed.json()["approvals"]] == [approval["approval_id"]]
    assert stack.get(f"/jobs/{job_id}/approvals", headers=stranger.headers).status_code == 404
    approve = {"decision": "approve", "comment": "fine", "form": {"score": 4}}
    self_approval = stack.post(url, json=approve, headers=owner.headers)
    assert self_approval.status_code == 403, self_approval.text
    assert "self-approval" in self_approval.json()["error"]["message"]
    assert stack.post(url, json=approve, headers=viewer.headers).status_code == 403
    bad = stack.post(url, json={**approve, "form": {"score": "high"}}, headers=reviewer.headers)
    assert bad.status_code == 422, bad.text
    assert [d["pointer"] for d in bad.json()["error"]["details"]] == ["/form/score"]
    decided = stack.post(url, json=approve, headers=reviewer.headers)
    assert decided.status_code == 200, decided.text
    assert decided.json()["resumed"] is True
    again = stack.post(url, json=approve, headers=reviewer.headers)
    assert again.status_code == 409, again.text
    assert wait_for_jobs(flow_store, [job_id]) == {job_id: "completed"}
    done = stack.get(f"/jobs/{job_id}", headers=owner.headers).json()
    output = done["step_data"]["review"]
    assert output["decision"] == "approved" and output["comment"] == "fine"
    assert output["form"] == {"score": 4} and output["decided_by"] == reviewer.user_id
    assert done["waiting_for"] is None and after.count == 1
    assert job_run(stack, owner, job_id) == run_id  # the same flow run, resumed
    assert wait_for_state(run_id, "COMPLETED")


def test_the_owner_rejects_by_default_and_others_see_nothing(
    stack: TestClient,
    db: psycopg.Connection[Any],
    http_server: HTTPServer,
    make_user: Callable[..., ApiUser],
    flow_store: JobStore,
) -> None:
    """No deciders: only the owner decides; another user gets 404 (as for the job), the
    owner's rejection is the step's output and the job goes on to completion."""
    wait_workflow(db, http_server, {"approval": {}})
    owner, stranger = make_user(), make_user()
    job_id, _job = start_paused(stack, owner)
    [approval] = stack.get(f"/jobs/{job_id}/approvals", headers=owner.headers).json()["approvals"]
    url = f"/approvals/{approval['approval_id']}"
    assert (
        stack.post(url, json={"decision": "approve"}, headers=stranger.headers).status_code == 404
    )
    rejected = stack.post(url, json={"decision": "reject", "comment": "no"}, headers=owner.headers)
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["approval"]["decision"] == "reject"
    assert wait_for_jobs(flow_store, [job_id]) == {job_id: "completed"}
    output = flow_store.get_job(job_id)["step_data"]["review"]
    assert output["decision"] == "rejected" and output["decided_by"] == owner.user_id
    kinds = [e["kind"] for e in flow_store.events(job_id) if e["kind"].startswith("wait_")]
    assert kinds == ["wait_started", "wait_decided", "wait_ended"]


def test_an_event_with_a_matching_payload_wakes_the_job(
    stack: TestClient,
    db: psycopg.Connection[Any],
    http_server: HTTPServer,
    make_user: Callable[..., ApiUser],
    flow_store: JobStore,
) -> None:
    """wait_for_event payment matching $.status == paid: a non-matching payload is 409 and
    wakes nothing, a stranger's event 404; the matching one wakes the step, whose output is
    the payload."""
    wait_workflow(
        db, http_server, {"wait_for_event": {"name": "payment", "match": {"$.status": "paid"}}}
    )
    owner, stranger = make_user(), make_user()
    job_id, job = start_paused(stack, owner)
    assert job["waiting_for"]["kind"] == "event"
    url = f"/jobs/{job_id}/events/payment"
    pending = stack.post(url, json={"payload": {"status": "pending"}}, headers=owner.headers)
    assert pending.status_code == 409, pending.text
    paid = {"status": "paid", "amount": 42}
    assert stack.post(url, json={"payload": paid}, headers=stranger.headers).status_code == 404
    other = stack.post(
        f"/jobs/{job_id}/events/refund", json={"payload": paid}, headers=owner.headers
    )
    assert other.status_code == 409
    woke = stack.post(url, json={"payload": paid}, headers=owner.headers)
    assert woke.status_code == 200, woke.text
    assert [w["step_id"] for w in woke.json()["woke"]] == ["review"]
    assert wait_for_jobs(flow_store, [job_id]) == {job_id: "completed"}
    assert flow_store.get_job(job_id)["step_data"]["review"] == paid


def test_deadlines_decide_or_fail_without_a_decision(
    stack: TestClient,
    db: psycopg.Connection[Any],
    http_server: HTTPServer,
    make_user: Callable[..., ApiUser],
    flow_store: JobStore,
) -> None:
    """timeout_seconds 1: with on_timeout reject, the maintenance pass decides it (decided_by
    null, reason timeout) and the job completes with the rejection; with on_timeout fail, it
    fails the job (error_kind timeout, naming the step) and sets the flow run Failed."""
    from flows.wait_deadlines import run_wait_deadlines

    owner = make_user()
    starter: RunStarter = stack.app.state.starter  # type: ignore[attr-defined]
    outcomes: dict[str, str] = {}
    for on_timeout in ("reject", "fail"):
        workflow_id = f"wf_timeout_{on_timeout}"
        spec = {"approval": {"timeout_seconds": 1, "on_timeout": on_timeout}}
        wait_workflow(db, http_server, spec, workflow_id)
        job_id, job = start_paused(stack, owner, workflow_id)
        deadline = datetime.fromisoformat(job["waiting_for"]["deadline"])
        wait_until(lambda: datetime.now(UTC) > deadline, 10, "the deadline")  # noqa: B023

        def acted() -> bool:
            out = run_wait_deadlines(flow_store, starter, grace_seconds=30, log=_log())
            return bool(out.decided or out.failed)

        wait_until(acted, 30, "the maintenance pass to act")
        outcomes[on_timeout] = wait_for_jobs(flow_store, [job_id])[job_id]
        body = stack.get(f"/jobs/{job_id}", headers=owner.headers).json()
        if on_timeout == "reject":
            output = body["step_data"]["review"]
            assert output["decision"] == "rejected" and output["decided_by"] is None
            [approval] = stack.get(f"/jobs/{job_id}/approvals", headers=owner.headers).json()[
                "approvals"
            ]
            assert approval["reason"] == "timeout"
        else:
            assert body["error_kind"] == "timeout" and "step 'review'" in body["error_message"]
            assert body["waiting_for"] is None
            assert wait_for_state(str(job_run(stack, owner, job_id)), "FAILED")
    assert outcomes == {"reject": "completed", "fail": "failed"}


def _log() -> Any:
    import logging

    return logging.getLogger("test.waits")


def test_the_shipped_review_demo_completes_with_its_owners_score(
    stack: TestClient, make_user: Callable[..., ApiUser], flow_store: JobStore
) -> None:
    """definitions/workflows/review_demo_v1.json: the owner approves with a score and the
    job's result carries the text, the decision and the form."""
    owner = make_user()
    job_id, job = start_paused(stack, owner, "review_demo_v1", {"text": "hello"})
    assert job["waiting_for"]["step"] == "review" and job["waiting_for"]["deadline"]
    [approval] = stack.get(f"/jobs/{job_id}/approvals", headers=owner.headers).json()["approvals"]
    decision = {"decision": "approve", "form": {"score": 5, "note": "great"}}
    url = f"/approvals/{approval['approval_id']}"
    assert stack.post(url, json=decision, headers=owner.headers).status_code == 200
    assert wait_for_jobs(flow_store, [job_id]) == {job_id: "completed"}
    result = flow_store.get_job(job_id)["final_result"]["result"]
    assert result["text"] == "hello" and result["decision"] == "approved"
    assert result["form"] == {"score": 5, "note": "great"}


def test_a_decision_made_while_prefect_is_down_is_resumed_by_maintenance(
    stack: TestClient,
    make_client: Callable[..., TestClient],
    db: psycopg.Connection[Any],
    http_server: HTTPServer,
    make_user: Callable[..., ApiUser],
    flow_store: JobStore,
) -> None:
    """An API whose Prefect is out of reach keeps the decision and answers resumed false;
    the job stays running at its wait until the maintenance pass resumes the flow run."""
    from flows.wait_deadlines import run_wait_deadlines

    wait_workflow(db, http_server, {"approval": {}})
    owner = make_user()
    job_id, _job = start_paused(stack, owner)
    [approval] = stack.get(f"/jobs/{job_id}/approvals", headers=owner.headers).json()["approvals"]
    offline = make_client()  # the closed-port starter
    url = f"/approvals/{approval['approval_id']}"
    decided = offline.post(url, json={"decision": "approve"}, headers=owner.headers)
    assert decided.status_code == 200 and decided.json()["resumed"] is False
    assert read_flow_run(str(job_run(stack, owner, job_id))).state.type.value == "PAUSED"  # type: ignore[union-attr]
    starter: RunStarter = stack.app.state.starter  # type: ignore[attr-defined]
    outcome = run_wait_deadlines(flow_store, starter, grace_seconds=0, log=_log())
    assert outcome.resumed == [job_run(stack, owner, job_id)]
    assert wait_for_jobs(flow_store, [job_id]) == {job_id: "completed"}
    assert flow_store.get_job(job_id)["step_data"]["review"]["decision"] == "approved"
