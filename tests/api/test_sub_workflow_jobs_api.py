"""The API's job JSON on both sides of a sub-workflow: a child job shows its parent's job and
step ids (read under RLS: its owner only), and a parent waiting for a child shows the child's
id in waiting_for."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
from dbfixtures import insert_job, insert_workflow
from fastapi.testclient import TestClient

if TYPE_CHECKING:
    # Annotation only: at run time several conftest modules share the name `conftest`.
    from conftest import ApiUser


def test_a_child_job_names_its_parent_and_the_parent_its_child(
    client: TestClient, db: psycopg.Connection[Any], make_user: Callable[..., ApiUser]
) -> None:
    """GET /jobs/{id} of the child has parent_job_id and parent_step_id; the parent's
    waiting_for names the child (kind workflow); another user sees neither job; GET /jobs
    lists both for the owner, a job without a parent with nulls."""
    owner, stranger = make_user(), make_user()
    insert_workflow(db, "wf_kid", {"steps": [{"id": "a", "sleep": {"seconds": 1}}]})
    parent = insert_job(db, owner.user_id, "wf_kid", status="running")
    child = insert_job(db, owner.user_id, "wf_kid", parent_job_id=parent, parent_step_id="notify")
    waiting: dict[str, Any] = {
        "kind": "workflow",
        "step": "notify",
        "since": "2026-12-07T00:00:00Z",
    }
    waiting |= {"deadline": None, "child_job_id": child, "workflow_id": "wf_kid"}
    db.execute(
        "update public.jobs set waiting_for = %s where id = %s",
        (psycopg.types.json.Jsonb(waiting), parent),
    )

    got = client.get(f"/jobs/{child}", headers=owner.headers)
    assert got.status_code == 200
    assert (got.json()["parent_job_id"], got.json()["parent_step_id"]) == (parent, "notify")
    top = client.get(f"/jobs/{parent}", headers=owner.headers).json()
    assert (top["parent_job_id"], top["parent_step_id"]) == (None, None)
    assert top["waiting_for"]["child_job_id"] == child
    assert top["waiting_for"]["kind"] == "workflow"
    listed = {
        j["job_id"]: j["parent_job_id"]
        for j in client.get("/jobs", headers=owner.headers).json()["jobs"]
    }
    assert listed == {parent: None, child: parent}
    for job_id in (parent, child):
        assert client.get(f"/jobs/{job_id}", headers=stranger.headers).status_code == 404
