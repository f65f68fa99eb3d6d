"""Independent steps run at the same time and both land in step_data."""

from __future__ import annotations

from typing import Any

import psycopg
from flow_services import Scripted, add_workflow, http_transformer, serve
from pytest_httpserver import HTTPServer

from engine.db.store import JobStore
from flows.run_workflow import run_workflow


def test_independent_branches_overlap_and_both_land_in_step_data(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
) -> None:
    """Two steps with `depends_on: []` start together: each holds its request open for a
    moment and each request arrives before the other one has been answered; a join step
    then sees both outputs, and step_data holds all three."""
    left = Scripted([200], body={"side": "left"}, sleep_seconds=0.5)
    right = Scripted([200], body={"side": "right"}, sleep_seconds=0.5)
    http_transformer(db, "left-api", serve(http_server, "/left", left))
    http_transformer(db, "right-api", serve(http_server, "/right", right))
    http_transformer(db, "join-api", serve(http_server, "/join", Scripted([200])), method="POST")
    add_workflow(
        db,
        "parallel_wf",
        {
            "steps": [
                {"id": "left", "transformer": "left-api", "depends_on": []},
                {"id": "right", "transformer": "right-api", "depends_on": []},
                {
                    "id": "join",
                    "transformer": "join-api",
                    "depends_on": ["left", "right"],
                    "input": {
                        "body": {
                            "left.$": "$.steps.left.body.side",
                            "right.$": "$.steps.right.body.side",
                        }
                    },
                },
            ]
        },
    )
    job_id = flow_store.create_job(user_id=user_id, workflow_id="parallel_wf", input_data={}).id

    run_workflow(job_id)

    row = flow_store.get_job(job_id)
    assert row["status"] == "completed", row["error_message"]
    assert set(row["step_data"]) == {"left", "right", "join"}
    assert row["step_data"]["left"]["body"] == {"side": "left"}
    assert row["step_data"]["right"]["body"] == {"side": "right"}
    (a,), (b,) = left.hits, right.hits
    assert a.entered < b.left and b.entered < a.left, "the two branches did not overlap"
    join_hits = [h for h in http_server.log if h[0].path == "/join"]
    assert len(join_hits) == 1
    assert join_hits[0][0].get_json() == {"left": "left", "right": "right"}
