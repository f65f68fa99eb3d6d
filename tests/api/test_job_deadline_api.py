"""GET /jobs/{id} and GET /jobs show a job's deadline (`deadline_at`): its workflow's
timeout_seconds after it was created, or null when the workflow sets none."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from dbfixtures import insert_workflow
from fastapi.testclient import TestClient

if TYPE_CHECKING:
    # Annotation only: at run time several conftest modules share the name `conftest`.
    from conftest import ApiUser


def test_the_job_shows_its_deadline(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """A workflow with timeout_seconds 90: deadline_at is created_at + 90 s in the job and in
    the list; a job of a workflow without a timeout has deadline_at null."""
    insert_workflow(
        db,
        "timed_api_wf",
        {
            "timeout_seconds": 90,
            "input_schema": {"type": "object"},
            "steps": [{"id": "reshape", "transformer": "json-reshape"}],
        },
    )
    user = make_user()
    jobs = {}
    for workflow_id, input_data in (("timed_api_wf", {}), ("demo_offline_v1", {"text": "hi"})):
        response = client.post(
            "/workflows/start",
            json={"workflow_id": workflow_id, "input_data": input_data},
            headers=user.headers,
        )
        assert response.status_code == 201, response.text
        jobs[workflow_id] = response.json()["job_id"]

    timed = client.get(f"/jobs/{jobs['timed_api_wf']}", headers=user.headers).json()
    untimed = client.get(f"/jobs/{jobs['demo_offline_v1']}", headers=user.headers).json()

    created = datetime.fromisoformat(timed["created_at"])
    assert datetime.fromisoformat(timed["deadline_at"]) == created + timedelta(seconds=90)
    assert untimed["deadline_at"] is None
    listed = {j["job_id"]: j for j in client.get("/jobs", headers=user.headers).json()["jobs"]}
    assert listed[jobs["timed_api_wf"]]["deadline_at"] == timed["deadline_at"]
    assert listed[jobs["demo_offline_v1"]]["deadline_at"] is None
