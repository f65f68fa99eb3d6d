"""Failures that must not be retried: a client error, a mapping error, a missing
transformer. Each fails the job at once with an error_message that says where and why."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from flow_services import Scripted, add_workflow, http_transformer, serve
from pytest_httpserver import HTTPServer

from engine.db.store import JobStore
from engine.errors import DefinitionError
from flows.run_step import StepFailedError
from flows.run_workflow import run_workflow

#: Retries would be quick if they (wrongly) happened, so a test cannot pass by being slow.
QUICK_RETRY = {"max_retries": 3, "strategy": "fixed", "initial_delay_seconds": 0.05, "jitter": 0}


def test_client_error_fails_the_job_without_retrying(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
) -> None:
    """A 400 is the caller's fault: not in retry_on, so the server is called exactly once
    and the job fails naming the step, the transformer and the error kind."""
    api = Scripted([400])
    http_transformer(db, "strict-api", serve(http_server, "/strict", api))
    add_workflow(
        db,
        "strict_wf",
        {"retry": QUICK_RETRY, "steps": [{"id": "submit", "transformer": "strict-api"}]},
    )
    job_id = flow_store.create_job(user_id=user_id, workflow_id="strict_wf", input_data={}).id

    with pytest.raises(StepFailedError):
        run_workflow(job_id)

    assert api.count == 1
    row = flow_store.get_job(job_id)
    assert row["status"] == "failed"
    message = row["error_message"]
    assert "'submit'" in message and "'strict-api'" in message and "client_error" in message
    assert "400" in message
    assert row["retry_count"] == 0
    assert "awaiting_retry" not in [e["status"] for e in row["state_history"]]
    assert row["state_history"][-1]["kind"] == "client_error"
    kinds = [e["kind"] for e in flow_store.events(job_id)]
    assert kinds.count("step_started") == 1 and kinds.count("step_failed") == 1


def test_mapping_error_fails_the_job_without_retrying(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
) -> None:
    """A step input reading `$.input.missing` from input that lacks it fails the step before
    its transformer runs; mapping is not in the default retry_on, so there is one attempt,
    and error_message names the step and the path."""
    api = Scripted([200])
    http_transformer(db, "mapped-api", serve(http_server, "/mapped", api))
    add_workflow(
        db,
        "mapping_wf",
        {
            "retry": QUICK_RETRY,
            "steps": [
                {
                    "id": "send",
                    "transformer": "mapped-api",
                    "input": {"body": {"value.$": "$.input.missing"}},
                }
            ],
        },
    )
    job_id = flow_store.create_job(
        user_id=user_id, workflow_id="mapping_wf", input_data={"present": 1}
    ).id

    with pytest.raises(StepFailedError):
        run_workflow(job_id)

    assert api.count == 0
    row = flow_store.get_job(job_id)
    assert row["status"] == "failed"
    message = row["error_message"]
    assert "'send'" in message and "$.input.missing" in message and "mapping" in message
    assert "awaiting_retry" not in [e["status"] for e in row["state_history"]]
    kinds = [e["kind"] for e in flow_store.events(job_id)]
    assert kinds.count("step_started") == 1
    failed = [e for e in flow_store.events(job_id) if e["kind"] == "step_failed"]
    assert [e["detail"]["kind"] for e in failed] == ["mapping"]


def test_missing_transformer_fails_with_configuration_error(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
) -> None:
    """A job whose workflow names a transformer that was deleted from the table fails before
    any step runs: error_message says the configuration lookup failed and names the
    transformer, and a `config_error` event is recorded."""
    api = Scripted([200])
    http_transformer(db, "doomed-api", serve(http_server, "/doomed", api))
    add_workflow(db, "orphan_wf", {"steps": [{"id": "call", "transformer": "doomed-api"}]})
    db.execute("delete from public.transformers where id = 'doomed-api'")
    job_id = flow_store.create_job(user_id=user_id, workflow_id="orphan_wf", input_data={}).id

    with pytest.raises(DefinitionError):
        run_workflow(job_id)

    assert api.count == 0
    row = flow_store.get_job(job_id)
    assert row["status"] == "failed"
    assert "configuration lookup failed" in row["error_message"]
    assert "doomed-api" in row["error_message"]
    events = flow_store.events(job_id)
    config_errors = [e for e in events if e["kind"] == "config_error"]
    assert len(config_errors) == 1
    assert "doomed-api" in str(config_errors[0]["detail"])
    assert not [e for e in events if e["kind"] == "step_started"]
