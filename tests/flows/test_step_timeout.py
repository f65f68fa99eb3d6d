"""A step's timeout_seconds, run through real Prefect: the engine keeps the deadline itself, so
a step past it fails as `timeout` when the deadline comes (not when a blocking call happens to
return), and no step logs Prefect's warning that a worker-thread task timeout cannot
interrupt blocking calls."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from flow_services import Scripted, add_workflow, delay_transformer, http_transformer, serve
from pytest_httpserver import HTTPServer

from engine.db.store import JobStore
from flows.run_step import StepFailedError
from flows.run_workflow import run_workflow

#: What Prefect logs for a task with timeout_seconds run in a worker thread.
WORKER_THREAD_WARNING = "but the task is running in a worker thread"
NO_RETRY = {"max_retries": 0}


class Records(logging.Handler):
    """Every record that reaches the loggers it is attached to."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        """The formatted message of each record."""
        return [record.getMessage() for record in self.records]


@contextmanager
def prefect_records() -> Iterator[Records]:
    """Collect what Prefect's loggers emit in the block (task-run loggers included, whether
    or not they propagate)."""
    handler = Records()
    loggers = [logging.getLogger(name) for name in ("prefect", "prefect.task_runs")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def step_failures(store: JobStore, job_id: str) -> list[dict[str, Any]]:
    """The `step_failed` events of the job, oldest first."""
    return [e for e in store.events(job_id) if e["kind"] == "step_failed"]


def test_steps_log_no_worker_thread_timeout_warning(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """A job whose steps have a timeout (every step has one) completes without any Prefect
    record about a timeout in a worker thread."""
    api = Scripted([200])
    http_transformer(db, "quick-api", serve(http_server, "/quick", api))
    delay_transformer(db, "short-wait", 0.05)
    add_workflow(
        db,
        "timed_wf",
        {
            "steps": [
                {"id": "call", "transformer": "quick-api", "timeout_seconds": 30},
                {"id": "wait", "transformer": "short-wait", "depends_on": ["call"]},
            ]
        },
    )
    job_id = flow_store.create_job(user_id=user_id, workflow_id="timed_wf", input_data={}).id

    with prefect_records() as logs:
        run_workflow(job_id)

    assert flow_store.get_job(job_id)["status"] == "completed"
    assert logs.records, "the handler saw none of Prefect's records"
    assert not [m for m in logs.messages() if WORKER_THREAD_WARNING in m]


def test_slow_upstream_fails_the_step_as_timeout_at_its_deadline(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """An upstream answering after 3 s, a step timeout of 0.5 s: the attempt ends at the
    deadline (well before the answer), is recorded as `timeout`, and the job fails naming the
    step, its transformer and the timeout; no worker-thread warning is logged."""
    api = Scripted([200], sleep_seconds=3)
    http_transformer(db, "slow-api", serve(http_server, "/slow", api))
    add_workflow(
        db,
        "slow_wf",
        {
            "retry": NO_RETRY,
            "steps": [{"id": "call", "transformer": "slow-api", "timeout_seconds": 0.5}],
        },
    )
    job_id = flow_store.create_job(user_id=user_id, workflow_id="slow_wf", input_data={}).id

    with prefect_records() as logs, pytest.raises(StepFailedError) as info:
        run_workflow(job_id)

    assert info.value.kind.value == "timeout"
    row = flow_store.get_job(job_id)
    assert row["status"] == "failed"
    message = row["error_message"]
    assert "'call'" in message and "'slow-api'" in message
    assert "timeout: " in message and "timed out after 0.5 second(s)" in message
    assert row["state_history"][-1]["kind"] == "timeout"
    [failed] = step_failures(flow_store, job_id)
    assert failed["detail"]["kind"] == "timeout"
    assert 450 <= failed["detail"]["duration_ms"] < 2500, failed["detail"]
    assert not [m for m in logs.messages() if WORKER_THREAD_WARNING in m]


def test_a_sleep_past_the_timeout_is_cut_and_retried_as_timeout(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """A delay of 5 s under a step timeout of 0.4 s: each attempt ends at its deadline, the
    timeout is retried as the retry policy says (timeout is retryable), and the job fails
    after both attempts."""
    delay_transformer(db, "long-wait", 5)
    add_workflow(
        db,
        "sleepy_wf",
        {
            "retry": {"max_retries": 1, "strategy": "fixed", "initial_delay_seconds": 0.05},
            "steps": [{"id": "wait", "transformer": "long-wait", "timeout_seconds": 0.4}],
        },
    )
    job_id = flow_store.create_job(user_id=user_id, workflow_id="sleepy_wf", input_data={}).id
    started = time.monotonic()

    with pytest.raises(StepFailedError):
        run_workflow(job_id)

    assert time.monotonic() - started < 5, "an attempt slept past its deadline"
    row = flow_store.get_job(job_id)
    assert "failed after 2 attempts: timeout" in row["error_message"]
    assert "awaiting_retry" in [e["status"] for e in row["state_history"]]
    failures = step_failures(flow_store, job_id)
    assert [f["detail"]["kind"] for f in failures] == ["timeout", "timeout"]
    assert all(f["detail"]["duration_ms"] < 1500 for f in failures), failures
