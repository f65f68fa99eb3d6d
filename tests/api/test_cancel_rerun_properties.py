"""Property: whatever a caller sends to POST /jobs/{id}/cancel and POST /jobs/{id}/rerun, the
API answers below 500, with a status the OpenAPI document lists and the uniform error body;
a job moves only as the request allows (a cancel to failed, a rerun to pending)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
from fastapi.testclient import TestClient
from hypothesis import example, given
from hypothesis import strategies as st
from json_texts import any_value, strings
from test_input_properties import PROPERTY_SETTINGS, callers, headers_for, job_ids, make_probe

from engine.db.store import JobStore, Transition
from engine.jobs.transitions import JobStatus

if TYPE_CHECKING:
    from conftest import ApiUser

#: Rerun bodies: none, a real step, an unknown one, other JSON texts, any value.
rerun_bodies = st.one_of(
    st.none(),
    st.sampled_from(['{"from_step":"normalize"}', '{"from_step":"nope"}', '{"from_step":""}']),
    st.builds(lambda s: f'{{"from_step":{s}}}', strings),
    st.builds(lambda s: f'{{"step":{s}}}', strings),
    any_value,
)


def test_generated_control_requests_never_fail_the_server(
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
    job_store: JobStore,
) -> None:
    """Cancel and rerun with generated job ids (the caller's own failed job, its pending one,
    unknown ones, garbage), callers and bodies."""
    probe = make_probe(make_client, make_user, db)
    owner = probe.user.user_id
    seen: set[int] = set()

    def own_job(status: str) -> str:
        job = job_store.create_job(
            user_id=owner, workflow_id="demo_offline_v1", input_data={"text": "hi"}
        ).id
        if status == "failed":
            job_store.transition(job, Transition(status=JobStatus.FAILED, error_message="x"))
        return job

    @PROPERTY_SETTINGS
    @example(action="cancel", target="pending", caller="user", body=None)
    @example(action="rerun", target="failed", caller="user", body='{"from_step":"normalize"}')
    @given(
        action=st.sampled_from(["cancel", "rerun"]),
        target=st.one_of(st.sampled_from(["failed", "pending"]), job_ids),
        caller=callers,
        body=rerun_bodies,
    )
    def check(action: str, target: str, caller: str, body: str | None) -> None:
        job_id = own_job(target) if target in ("failed", "pending") else target
        headers = headers_for(caller, probe.user)
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = body.encode("utf-8", "surrogatepass")
        answer = probe.client.post(f"/jobs/{job_id}/{action}", headers=headers, content=content)
        status = answer.status_code
        seen.add(status)
        assert status < 500, (action, job_id, body, answer.text[:300])
        assert status in probe.documented[("POST", f"/jobs/{{job_id}}/{action}")], status
        if status >= 400:
            assert set(answer.json()) == {"error"}, answer.text[:200]
        if target in ("failed", "pending"):
            now = job_store.get_job(job_id)["status"]
            moved = {("cancel", "pending"): "failed", ("rerun", "failed"): "pending"}
            allowed = {target, moved.get((action, target), target)}
            assert now in allowed, (action, target, now)
            assert (now != target) == (status in (200, 202)), (action, target, status, now)

    check()
    assert {200, 202, 401, 404, 409, 422} <= seen, seen  # every kind of answer was reached
