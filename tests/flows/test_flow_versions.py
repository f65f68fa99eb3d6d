"""Every run of a job executes the versions it started with, whatever was synced since."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from flow_services import (
    Scripted,
    add_workflow,
    held_first,
    http_transformer,
    kill_flow_mid_step,
    serve,
)
from psycopg.types.json import Jsonb
from pytest_httpserver import HTTPServer

from engine.db.store import JobStore
from flows.run_workflow import run_workflow

V1 = {
    "steps": [
        {"id": "first", "transformer": "first-api"},
        {"id": "slow", "transformer": "slow-api", "depends_on": ["first"]},
    ]
}
V2 = {"steps": [*V1["steps"], {"id": "extra", "transformer": "extra-api", "depends_on": ["slow"]}]}


def test_a_job_killed_on_v1_and_resumed_after_v2_finishes_on_v1(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
    tmp_path: Path,
) -> None:
    """Killed mid-step on v1; then v2 is synced (both transformers point elsewhere, a third
    step). The rerun calls only v1's endpoints and runs only v1's steps; a new job runs v2;
    a start asking for version 1 runs v1."""
    first_v1, first_v2, slow_v2, extra = (Scripted([200]) for _ in range(4))
    slow_v1, release = held_first()
    http_transformer(db, "first-api", serve(http_server, "/v1/first", first_v1))
    http_transformer(db, "slow-api", serve(http_server, "/v1/slow", slow_v1))
    http_transformer(db, "extra-api", serve(http_server, "/v2/extra", extra))
    add_workflow(db, "wf_versions", V1)
    job_id = flow_store.create_job(user_id=user_id, workflow_id="wf_versions", input_data={}).id
    kill_flow_mid_step(flow_store, job_id, "slow", tmp_path / "killed.log")
    release.set()

    for tid, path, handler in (
        ("first-api", "/v2/first", first_v2),
        ("slow-api", "/v2/slow", slow_v2),
    ):
        db.execute(
            "update public.transformers set config = config || %s where id = %s",
            [Jsonb({"url_template": serve(http_server, path, handler)}), tid],
        )
    db.execute("update public.workflows set definition = %s where id = 'wf_versions'", [Jsonb(V2)])

    run_workflow(job_id)  # the resumption, as a resubmitted flow run would run it

    row = flow_store.get_job(job_id)
    assert row["status"] == "completed", row["error_message"]
    assert row["workflow_version"] == 1 and set(row["step_data"]) == {"first", "slow"}
    assert first_v1.count == 1 and slow_v1.count in (1, 2)
    assert first_v2.count == slow_v2.count == extra.count == 0

    new_id = flow_store.create_job(user_id=user_id, workflow_id="wf_versions", input_data={}).id
    run_workflow(new_id)
    new = flow_store.get_job(new_id)
    assert new["workflow_version"] == 2 and set(new["step_data"]) == {"first", "slow", "extra"}
    assert (first_v2.count, slow_v2.count, extra.count) == (1, 1, 1)

    old_id = flow_store.create_job(
        user_id=user_id, workflow_id="wf_versions", input_data={}, workflow_version=1
    ).id
    run_workflow(old_id)
    old = flow_store.get_job(old_id)
    assert old["workflow_version"] == 1 and set(old["step_data"]) == {"first", "slow"}
    # v1's steps, but the transformers as they are now: a job pins the workflow version it
    # asked for and the transformer versions current when it started.
    assert first_v1.count == 1 and (first_v2.count, slow_v2.count) == (2, 2)
