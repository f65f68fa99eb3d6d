"""Retries seen end to end: a step failing with 503 is retried after the policy's delays,
the job row passes through awaiting_retry and back, and a step-level policy wins."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
import pytest
from flow_services import Scripted, add_workflow, http_transformer, serve
from pytest_httpserver import HTTPServer

from engine.db.store import JobStore
from flows.run_step import StepFailedError
from flows.run_workflow import run_workflow

#: Below the policy's delay by no more than clock granularity and bookkeeping.
SLACK_SECONDS = 0.005


def test_503_twice_then_success_waits_the_policy_delays(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
) -> None:
    """Two 503s, then 200: the job goes running -> awaiting_retry (retry_count 1) -> running
    -> awaiting_retry (retry_count 2) -> running -> completed. Each retry starts no earlier
    than its delay (0.3 s, then 0.6 s, exponential, no jitter) after the failure;
    next_retry_at is the failure time plus that delay; while attempts 2 and 3 run, the job
    row says running with the retry_count of the failure before."""
    job_id = ""

    def job_row_now(number: int) -> dict[str, Any] | None:
        if number == 1:
            return None
        row = flow_store.get_job(job_id)
        return {k: row[k] for k in ("status", "retry_count", "current_step_id")}

    api = Scripted([503, 503, 200], body={"answer": 42}, on_request=job_row_now)
    http_transformer(db, "flaky-api", serve(http_server, "/flaky", api))
    add_workflow(
        db,
        "retry_wf",
        {
            "retry": {
                "max_retries": 3,
                "strategy": "exponential",
                "initial_delay_seconds": 0.3,
                "backoff_factor": 2,
                "jitter": 0,
            },
            "steps": [{"id": "fetch", "transformer": "flaky-api", "input": {}}],
        },
    )
    job_id = flow_store.create_job(user_id=user_id, workflow_id="retry_wf", input_data={}).id

    run_workflow(job_id)

    row = flow_store.get_job(job_id)
    assert row["status"] == "completed", row["error_message"]
    assert row["step_data"]["fetch"]["body"] == {"answer": 42}
    assert row["retry_count"] == 2
    assert row["next_retry_at"] is None and row["error_message"] is None
    assert api.count == 3

    # The row as the server saw it while attempts 2 and 3 were running.
    assert [h.seen for h in api.hits[1:]] == [
        {"status": "running", "retry_count": 1, "current_step_id": "fetch"},
        {"status": "running", "retry_count": 2, "current_step_id": "fetch"},
    ]

    delays = [0.3, 0.6]
    for before, after, delay in zip(api.hits[:-1], api.hits[1:], delays, strict=True):
        assert after.entered - before.left >= delay - SLACK_SECONDS

    history = row["state_history"]
    statuses = [e["status"] for e in history]
    assert statuses == [
        "pending",
        "running",
        "running",
        "awaiting_retry",
        "running",
        "awaiting_retry",
        "running",
        "completed",
    ]
    waits = [e for e in history if e["status"] == "awaiting_retry"]
    assert [e["retry_count"] for e in waits] == [1, 2]
    assert [e["delay_seconds"] for e in waits] == delays
    assert [e["kind"] for e in waits] == ["server_error", "server_error"]
    for entry, delay in zip(waits, delays, strict=True):
        failed_at = datetime.fromisoformat(entry["at"])
        next_at = datetime.fromisoformat(entry["next_retry_at"])
        # next_retry_at is computed just before the row is written at `at`.
        assert (next_at - failed_at).total_seconds() == pytest.approx(delay, abs=0.1)
        assert "503" in entry["error"]
    assert [e.get("attempt") for e in history if e["status"] == "running"] == [None, 1, 2, 3]

    events = flow_store.events(job_id)
    assert [e["attempt"] for e in events if e["kind"] == "step_started"] == [1, 2, 3]
    assert [e["attempt"] for e in events if e["kind"] == "step_failed"] == [1, 2]
    assert [e["attempt"] for e in events if e["kind"] == "step_succeeded"] == [3]
    waiting = [e for e in events if e["kind"] == "status" and e["status"] == "awaiting_retry"]
    assert [e["detail"]["retry_count"] for e in waiting] == [1, 2]
    assert all(e["detail"]["next_retry_at"] for e in waiting)


def test_step_retry_overrides_workflow_and_transformer_retry(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
) -> None:
    """Precedence end to end: the step says max_retries 1, the workflow 3 and the
    transformer 5, so an always-503 server sees exactly 2 attempts before the job fails."""
    api = Scripted([503])
    http_transformer(
        db,
        "down-api",
        serve(http_server, "/down", api),
        retry={"max_retries": 5, "initial_delay_seconds": 0.05, "jitter": 0},
    )
    add_workflow(
        db,
        "precedence_wf",
        {
            "retry": {
                "max_retries": 3,
                "strategy": "fixed",
                "initial_delay_seconds": 0.1,
                "jitter": 0,
            },
            "steps": [
                {
                    "id": "call",
                    "transformer": "down-api",
                    "input": {},
                    "retry": {"max_retries": 1},
                }
            ],
        },
    )
    job_id = flow_store.create_job(user_id=user_id, workflow_id="precedence_wf", input_data={}).id

    with pytest.raises(StepFailedError):
        run_workflow(job_id)

    assert api.count == 2
    row = flow_store.get_job(job_id)
    assert row["status"] == "failed"
    assert row["max_retries"] == 1
    assert row["retry_count"] == 1
    assert "after 2 attempts" in row["error_message"]
    waits = [e for e in row["state_history"] if e["status"] == "awaiting_retry"]
    # The delay comes from the workflow level (the step sets only max_retries).
    assert [e["delay_seconds"] for e in waits] == [0.1]
