"""Conditions (`when`) and switch steps through real Prefect: skipped steps have no output, are
recorded as `step_skipped` events and shown as task runs in a Completed state named "Skipped";
a switch takes exactly one branch, and a join takes the output of whichever branch ran."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

import psycopg
from flow_services import Scripted, add_workflow, http_transformer, serve
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import State, TaskRun
from pytest_httpserver import HTTPServer
from waiting import wait_until

from engine.db.store import JobStore
from flows.run_workflow import run_workflow


def endpoint(
    db: psycopg.Connection[Any], http_server: HTTPServer, name: str, body: Any
) -> Scripted:
    """An HTTP transformer `<name>-api` answering `body` (POST, so it takes a body)."""
    handler = Scripted([200], body=body)
    http_transformer(db, f"{name}-api", serve(http_server, f"/{name}", handler), method="POST")
    return handler


def task_runs(run_id: str, names: set[str]) -> dict[str, TaskRun]:
    """The flow run's task runs by name, once all of `names` are recorded in a final state
    (the server records task runs from their events, possibly after the flow run ended)."""

    def check() -> dict[str, TaskRun] | None:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)]))
            )
        found = {run.name: run for run in runs if run.state is not None and run.state.is_final()}
        return found if names <= found.keys() else None

    return wait_until(check, 60, f"task runs {sorted(names)}")  # type: ignore[no-any-return]


def skipped_events(store: JobStore, job_id: str) -> dict[str, dict[str, Any]]:
    """The detail of each `step_skipped` event written for a condition or a branch, by step."""
    events = [e for e in store.events(job_id) if e["kind"] == "step_skipped"]
    return {
        e["step_id"]: e["detail"]
        for e in events
        if e["detail"].get("reason") in ("condition", "branch", "needs")
    }


def test_a_false_condition_skips_the_step_and_dependents_go_on(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """`notify` has a false `when` (5 words, not over 100): it is never called and has no
    output. `audit` depends on it but reads nothing of it, so it runs; `report` maps
    `notify`'s output, so it is skipped too (reason `needs`); `after_report` depends on
    `report` only and runs. The approval `review` has a condition on an absent input: it is
    skipped too, so the job never waits. Each skipped step has one `step_skipped` event and
    one state_history entry with its reason, and a task run of its name Completed in a state
    named "Skipped"."""
    endpoint(db, http_server, "count", {"words": 5})
    notify = endpoint(db, http_server, "notify", {"sent": True})
    audit = endpoint(db, http_server, "audit", {"ok": True})
    report = endpoint(db, http_server, "report", {"ok": True})
    after = endpoint(db, http_server, "after", {"ok": True})
    add_workflow(
        db,
        "cond_wf",
        {
            "steps": [
                {"id": "count", "transformer": "count-api"},
                {
                    "id": "notify",
                    "transformer": "notify-api",
                    "when": "$.steps.count.body.words > 100 and exists($.input.webhook_url)",
                },
                {"id": "audit", "transformer": "audit-api", "depends_on": ["notify"]},
                {
                    "id": "report",
                    "transformer": "report-api",
                    "depends_on": ["notify"],
                    "input": {"body": {"sent.$": "$.steps.notify.body.sent"}},
                },
                {"id": "after_report", "transformer": "after-api", "depends_on": ["report"]},
                {"id": "review", "approval": {}, "when": "$.input.review", "depends_on": []},
            ]
        },
    )
    job_id = flow_store.create_job(
        user_id=user_id, workflow_id="cond_wf", input_data={"webhook_url": "https://x.test"}
    ).id

    result = cast("dict[str, Any]", run_workflow(job_id))

    row = flow_store.get_job(job_id)
    assert row["status"] == "completed", row["error_message"]
    assert set(row["step_data"]) == {"count", "audit", "after_report"}
    assert set(result) == {"count", "audit", "after_report"} == set(row["final_result"])
    assert (notify.count, report.count, audit.count, after.count) == (0, 0, 1, 1)
    skipped = skipped_events(flow_store, job_id)
    assert set(skipped) == {"notify", "report", "review"}
    assert row["waiting_for"] is None
    assert skipped["notify"]["reason"] == skipped["review"]["reason"] == "condition"
    assert "$.steps.count.body.words > 100" in skipped["notify"]["message"]
    assert skipped["report"]["reason"] == "needs" and skipped["report"]["steps"] == ["notify"]
    started = [e["step_id"] for e in flow_store.events(job_id) if e["kind"] == "step_started"]
    assert sorted(started) == ["after_report", "audit", "count"]
    history = {h["step_id"]: h["skipped"] for h in row["state_history"] if "skipped" in h}
    assert history == {"notify": "condition", "report": "needs", "review": "condition"}
    runs = task_runs(str(row["prefect_flow_run_id"]), {"notify", "report", "review", "audit"})
    for name in ("notify", "report", "review"):
        state = runs[name].state
        assert state is not None and state.is_completed() and state.name == "Skipped"
        assert state.message and skipped[name]["message"] in state.message
    audit_state = runs["audit"].state
    assert audit_state is not None and audit_state.name == "Completed"


def test_a_switch_takes_exactly_one_branch_and_a_join_takes_its_output(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """The language is 'fr': of the cases 'en' and 'fr'/'de' the second is taken, so only
    `european` runs; `english` and `other` (the default) are skipped (reason `branch`). The
    switch's output is {case: 1, steps: [european]}, it is a task run of its own, and `join`
    (after all three branches) takes the text of whichever ran through a coalesce."""
    endpoint(db, http_server, "detect", {"lang": "fr"})
    branches = {
        name: endpoint(db, http_server, name, {"text": f"from {name}"})
        for name in ("english", "european", "other")
    }
    join = endpoint(db, http_server, "join", {"ok": True})
    add_workflow(
        db,
        "switch_wf",
        {
            "steps": [
                {"id": "detect", "transformer": "detect-api"},
                {
                    "id": "route",
                    "switch": {
                        "cases": [
                            {"when": "$.steps.detect.body.lang == 'en'", "then": ["english"]},
                            {
                                "when": "$.steps.detect.body.lang in ['fr', 'de']",
                                "then": ["european"],
                            },
                        ],
                        "default": ["other"],
                    },
                },
                *(
                    {"id": name, "transformer": f"{name}-api", "depends_on": ["route"]}
                    for name in branches
                ),
                {
                    "id": "join",
                    "transformer": "join-api",
                    "depends_on": list(branches),
                    "input": {
                        "body": {
                            "text.$": [f"$.steps.{name}.body.text" for name in branches],
                        }
                    },
                },
            ]
        },
    )
    job_id = flow_store.create_job(user_id=user_id, workflow_id="switch_wf", input_data={}).id

    run_workflow(job_id)

    row = flow_store.get_job(job_id)
    assert row["status"] == "completed", row["error_message"]
    assert row["step_data"]["route"] == {"case": 1, "steps": ["european"]}
    assert set(row["step_data"]) == {"detect", "route", "european", "join"}
    assert {name: h.count for name, h in branches.items()} == {
        "english": 0,
        "european": 1,
        "other": 0,
    }
    assert [json.loads(hit.body) for hit in join.hits] == [{"text": "from european"}]
    skipped = skipped_events(flow_store, job_id)
    assert set(skipped) == {"english", "other"}
    assert all(d["reason"] == "branch" and d["switch"] == "route" for d in skipped.values())
    runs = task_runs(str(row["prefect_flow_run_id"]), {"route", "english", "european", "other"})
    names = {name: run.state.name for name, run in runs.items() if run.state is not None}
    assert names["route"] == "Completed" and names["european"] == "Completed"
    assert names["english"] == "Skipped" and names["other"] == "Skipped"


def test_a_resumed_run_decides_the_same_skips_and_records_them_once(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """A job skips its first step `maybe` and then sleeps: its first flow run ends at the
    sleep with no output stored. The next flow run decides again from the same data: `maybe`
    is skipped again (never called, a Skipped task run of that run too) but its
    `step_skipped` event and history entry are not written twice; the job completes with
    `last` run after the sleep."""
    maybe = endpoint(db, http_server, "maybe", {"ok": True})
    last = endpoint(db, http_server, "last", {"ok": True})
    add_workflow(
        db,
        "resume_cond_wf",
        {
            "steps": [
                {"id": "maybe", "transformer": "maybe-api", "when": "$.input.n == 2"},
                {"id": "pause", "sleep": {"seconds": 1}},
                {"id": "last", "transformer": "last-api"},
            ]
        },
    )
    job_id = flow_store.create_job(
        user_id=user_id, workflow_id="resume_cond_wf", input_data={"n": 1}
    ).id

    # The job sleeps: its flow run ends Scheduled, named "Sleeping".
    first_end = cast(State[Any], run_workflow(job_id, return_state=True))
    assert first_end.name == "Sleeping"
    parked = flow_store.get_job(job_id)
    assert parked["waiting_for"] is not None and parked["waiting_for"]["step"] == "pause"
    assert parked["step_data"] == {}
    wait_until(lambda: _past_deadline(parked), 30, "the sleep's deadline")
    run_workflow(job_id)

    row = flow_store.get_job(job_id)
    assert row["status"] == "completed", row["error_message"]
    assert set(row["step_data"]) == {"pause", "last"}
    assert (maybe.count, last.count) == (0, 1)
    events = [e for e in flow_store.events(job_id) if e["kind"] == "step_skipped"]
    assert [e["detail"]["reason"] for e in events if e["step_id"] == "maybe"] == ["condition"]
    assert [h["step_id"] for h in row["state_history"] if "skipped" in h] == ["maybe"]
    second_run = task_runs(str(row["prefect_flow_run_id"]), {"maybe", "last"})
    state = second_run["maybe"].state
    assert state is not None and state.name == "Skipped"


def _past_deadline(parked: dict[str, Any]) -> bool:
    """The parked job's sleep deadline has passed."""
    deadline = datetime.fromisoformat(parked["waiting_for"]["deadline"])
    return datetime.now(UTC) >= deadline
